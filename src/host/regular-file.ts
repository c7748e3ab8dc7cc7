// Files read from paths an operator or the environment gives (config files, keys, host lists, saved
// histories). pagefuse runs as root, so such a path may name anything: a FIFO, whose open or read waits for a
// writer for ever (and a blocked synchronous read is one no signal ends), a device, /proc/kcore. Each is opened
// without blocking, refused unless it is a regular file, and read up to a bound.
import { closeSync, constants, fstatSync, openSync, readSync, writeSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { PagefuseError, explain } from '../errors.js';

const FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

/** The most a file read this way may hold unless the caller says otherwise. */
export const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

export interface RegularFileOptions {
  /** What the file is, for the error ("the config"): "cannot read the config PATH: …". */
  what: string;
  maxBytes?: number;
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

function notRegular(path: string, what: string, st: Stats): PagefuseError {
  return new PagefuseError('EINVAL', `cannot read ${what} ${path}: it is ${kindOf(st)}, not a regular file`, { path });
}

function tooLarge(path: string, what: string, max: number): PagefuseError {
  return new PagefuseError('EFBIG', `cannot read ${what} ${path}: it holds more than ${max} bytes`, { path });
}

/** A system error's code and what it means, without Node's repeat of the call and the path: "ENOENT (no such file or directory)". */
function systemReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === undefined) return (err as Error)?.message ?? String(err);
  const m = /^[A-Z0-9_]+: ([^,]+)/.exec(e.message);
  return m === null ? e.code : `${e.code} (${m[1]})`;
}

function readError(path: string, what: string, err: unknown): PagefuseError {
  return explain(err, `cannot read ${what} ${path}: ${systemReason(err)}`, (err as NodeJS.ErrnoException).code ?? 'EIO');
}

/** The file's bytes and its fstat (taken on the open file: what was read is what was checked). */
export async function readRegularFileBytes(path: string, options: RegularFileOptions): Promise<{ bytes: Buffer; stats: Stats }> {
  const max = options.maxBytes ?? DEFAULT_MAX_BYTES;
  let handle;
  try {
    handle = await open(path, FLAGS);
  } catch (err) {
    throw readError(path, options.what, err);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw notRegular(path, options.what, stats);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const { bytesRead, buffer } = await handle.read(Buffer.alloc(Math.min(max + 1 - total, 1 << 20)), 0, undefined, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > max) throw tooLarge(path, options.what, max);
      chunks.push(buffer.subarray(0, bytesRead));
    }
    return { bytes: Buffer.concat(chunks), stats };
  } catch (err) {
    throw err instanceof PagefuseError ? err : readError(path, options.what, err);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** The file's text (UTF-8). Errors are PagefuseErrors that name `what` and the path, with the system's code (ENOENT…). */
export async function readRegularFile(path: string, options: RegularFileOptions): Promise<string> {
  return (await readRegularFileBytes(path, options)).bytes.toString('utf8');
}

/** Reads an open file from its offset to its end, or null when it holds more than `max` bytes (it reads max + 1 at most). */
export function readUpToSync(fd: number, max: number): Buffer | null {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const buffer = Buffer.alloc(Math.min(max + 1 - total, 1 << 20));
    const n = readSync(fd, buffer, 0, buffer.length, null);
    if (n === 0) break;
    total += n;
    if (total > max) return null;
    chunks.push(buffer.subarray(0, n));
  }
  return Buffer.concat(chunks);
}

/** readRegularFile, synchronously: for callers that must not yield (a setting read at construction). */
export function readRegularFileSync(path: string, options: RegularFileOptions): string {
  const max = options.maxBytes ?? DEFAULT_MAX_BYTES;
  let fd: number;
  try {
    fd = openSync(path, FLAGS);
  } catch (err) {
    throw readError(path, options.what, err);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw notRegular(path, options.what, st);
    const bytes = readUpToSync(fd, max);
    if (bytes === null) throw tooLarge(path, options.what, max);
    return bytes.toString('utf8');
  } catch (err) {
    throw err instanceof PagefuseError ? err : readError(path, options.what, err);
  } finally {
    closeSync(fd);
  }
}

/**
 * Appends `text` to the file at `path`, created if missing (0644), without blocking: the open and the write
 * never wait (a FIFO with no reader would block a plain open, and with it every signal handler: its write
 * fails instead, and says so). A directory or a block device is refused; a character device (/dev/null)
 * takes the text.
 */
export function appendRegularFileSync(path: string, text: string, what: string): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NONBLOCK | constants.O_NOCTTY, 0o644);
  } catch (err) {
    throw explain(err, `cannot append to ${what} ${path}: ${systemReason(err)}`, (err as NodeJS.ErrnoException).code ?? 'EIO');
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory() || st.isBlockDevice()) throw new PagefuseError('EINVAL', `cannot append to ${what} ${path}: it is ${kindOf(st)}`, { path });
    const buffer = Buffer.from(text);
    // A regular file takes the whole write; the loop only covers a short one.
    for (let done = 0; done < buffer.length; ) {
      const n = writeSync(fd, buffer, done, buffer.length - done);
      if (n <= 0) throw new PagefuseError('EIO', `cannot append to ${what} ${path}: a write took nothing`, { path });
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** What is at `path` now, when it is something a file written there must not replace; undefined for a regular file or nothing. */
export function unreplaceable(st: Stats | undefined): string | undefined {
  if (st === undefined || st.isFile()) return undefined;
  if (st.isSymbolicLink()) return 'a symbolic link';
  return kindOf(st);
}
