// Files written whole or not at all: a temp file beside the target, fsync, then rename over it.
import { closeSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, statSync, unlinkSync, writeSync, Stats } from 'node:fs';
import { lstat, mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PagefuseError, explain } from '../errors.js';
import { processAlive } from './procfs.js';
import { unreplaceable } from './regular-file.js';

let tempSerial = 0;

/** A temp name no other write can hold: the pid keeps processes apart, the serial keeps this one's writes apart. */
function tempBeside(path: string): string {
  tempSerial += 1;
  return join(dirname(path), `.${basename(path)}.${process.pid}.${tempSerial.toString(36)}.tmp`);
}

/**
 * Refuses a path where something other than a regular file is: the rename would replace a device, a FIFO or a
 * symbolic link (`--html /dev/stdout` as root replaced the host's /dev/stdout link) with a plain file.
 */
function checkReplaceable(path: string, st: Stats | undefined): void {
  const what = unreplaceable(st);
  if (what !== undefined) throw new PagefuseError('EINVAL', `cannot write ${path}: it is ${what}; give the path of a regular file`, { path });
}

/**
 * Checks, before work whose result goes there, that writeFileAtomic could put a file at `path`. Nothing there,
 * or nothing lstat could see, passes: the write that follows says why it cannot create the file.
 */
export async function assertWritableTarget(path: string): Promise<void> {
  checkReplaceable(path, await lstat(path).catch(() => undefined));
}

const TEMP_NAME = /^\..+\.(\d+)\.[0-9a-z]+\.tmp$/;
/** How old a dead writer's temp file must be before it is removed: a write takes milliseconds. */
export const STALE_TEMP_MS = 60_000;

/**
 * Removes from `dir` the temp files (tempBeside's names) of writes whose writer died between creating and
 * renaming them: a SIGKILL or an OOM kill leaves one behind, and a state directory under /run kept them until
 * the next boot. Only regular files whose writer pid is gone and that are over a minute old: the age spares a
 * write in flight by a process this one cannot see (another PID namespace). `names`: the directory's listing,
 * when the caller has just read it. Best effort; returns how many.
 */
export function removeStaleTempsSync(dir: string, names?: readonly string[]): number {
  let listed = names;
  if (listed === undefined) {
    try {
      listed = readdirSync(dir);
    } catch {
      return 0;
    }
  }
  const now = Date.now();
  let removed = 0;
  for (const name of listed) {
    const m = TEMP_NAME.exec(name);
    if (m === null || processAlive(Number(m[1]))) continue;
    const file = join(dir, name);
    try {
      const st = lstatSync(file);
      if (!st.isFile() || now - st.mtimeMs < STALE_TEMP_MS) continue;
      unlinkSync(file);
      removed += 1;
    } catch {
      // gone meanwhile, or not ours to remove
    }
  }
  return removed;
}

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await assertWritableTarget(path);
  const tmp = tempBeside(path);
  let handle;
  try {
    handle = await open(tmp, 'wx', 0o644);
  } catch (err) {
    throw explain(err, `cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'} creating a file in ${dirname(path)}`);
  }
  try {
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(tmp, path);
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw explain(err, `cannot write ${path}: ${(err as Error).message.split('\n')[0]}`);
  }
}

/** The same, synchronously: for callers that must have the file in place before they return. */
export function writeFileAtomicSync(path: string, data: string | Uint8Array): void {
  let st: Stats | undefined;
  try {
    st = lstatSync(path);
  } catch {
    // as assertWritableTarget: the write below says why
  }
  checkReplaceable(path, st);
  const tmp = tempBeside(path);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', 0o644);
  } catch (err) {
    throw explain(err, `cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'} creating a file in ${dirname(path)}`);
  }
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // never created, or already renamed
    }
    throw explain(err, `cannot write ${path}: ${(err as Error).message.split('\n')[0]}`);
  }
}

/**
 * mkdir -p, without Node's recursive mkdir: under /proc or /sys a mkdir answers ENOENT with the parent there,
 * and Node 20's `{ recursive: true }` then retries for ever at 100 % of a CPU (PAGEFUSE_STATE_DIR=/proc hung
 * `pagefuse exec`). Here a directory that still cannot be made once its parent exists is an error.
 */
export function ensureDirSync(path: string, mode = 0o755): void {
  if (makeDirSync(path, mode)) return;
  const parent = dirname(path);
  if (parent !== path) ensureDirSync(parent, mode);
  if (!makeDirSync(path, mode)) throw cannotCreate(path);
}

/** ensureDirSync, without blocking the event loop. */
export async function ensureDir(path: string, mode = 0o755): Promise<void> {
  if (await makeDir(path, mode)) return;
  const parent = dirname(path);
  if (parent !== path) await ensureDir(parent, mode);
  if (!(await makeDir(path, mode))) throw cannotCreate(path);
}

/**
 * The mode of a state directory pagefuse makes: 0755 for root (/run/pagefuse, as systemd's RuntimeDirectory
 * makes it: other users' `status` reads the registry), 0700 for any other user, whose directory is its own.
 */
export function stateDirMode(): number {
  return process.getuid?.() === 0 ? 0o755 : 0o700;
}

/**
 * Why a file or directory (its lstat) is not one this process may take state from: a symbolic link, not of the
 * kind expected, owned by a user other than this one or root, or writable by group or others (whoever could
 * write it could remove this user's registrations or plant entries). Undefined when it may be trusted.
 */
export function distrustReason(st: Stats, kind: 'directory' | 'file'): string | undefined {
  if (st.isSymbolicLink()) return 'it is a symbolic link';
  if (kind === 'directory' ? !st.isDirectory() : !st.isFile()) return `it is not a ${kind === 'directory' ? 'directory' : 'regular file'}`;
  const me = process.getuid?.();
  if (me !== undefined && st.uid !== me && st.uid !== 0) return `it is owned by uid ${st.uid}, not by ${me === 0 ? 'root' : `uid ${me} or root`}`;
  if ((st.mode & 0o022) !== 0) {
    const who = (st.mode & 0o020) !== 0 ? ((st.mode & 0o002) !== 0 ? 'group and others' : 'group') : 'others';
    return `it is writable by ${who} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`;
  }
  return undefined;
}

function untrustedStateDir(path: string, why: string): PagefuseError {
  return new PagefuseError('EPERM', `refusing the state directory ${path}: ${why}`, { path });
}

/** The verdict on a state directory from its lstat, or the error that reading it gave: see checkStateDirSync. */
function stateDirVerdict(path: string, st: Stats | NodeJS.ErrnoException): boolean {
  if (!(st instanceof Stats)) {
    if (st.code === 'ENOENT') return false;
    throw explain(st, `cannot read the state directory ${path}: ${st.code ?? 'error'}`);
  }
  const why = distrustReason(st, 'directory');
  if (why !== undefined) throw untrustedStateDir(path, why);
  return true;
}

/**
 * Checks a state directory before anything in it is read or written: false when it does not exist; throws
 * (EPERM, naming the path and why) when distrustReason finds one.
 */
export function checkStateDirSync(path: string): boolean {
  let st: Stats | NodeJS.ErrnoException;
  try {
    st = lstatSync(path);
  } catch (err) {
    st = err as NodeJS.ErrnoException;
  }
  return stateDirVerdict(path, st);
}

/** checkStateDirSync, without blocking the event loop. */
export async function checkStateDir(path: string): Promise<boolean> {
  return stateDirVerdict(path, await lstat(path).catch((err: NodeJS.ErrnoException) => err));
}

/**
 * Makes a state directory (and its missing parents) with stateDirMode(), or takes the one there once
 * checkStateDirSync trusts it: without root and without XDG_RUNTIME_DIR it is /tmp/pagefuse-UID, a name
 * any local user can make first.
 */
export function ensureStateDirSync(path: string): void {
  ensureDirSync(path, stateDirMode());
  checkStateDirSync(path);
}

/** ensureStateDirSync, without blocking the event loop. */
export async function ensureStateDir(path: string): Promise<void> {
  await ensureDir(path, stateDirMode());
  await checkStateDir(path);
}

/** Its parent is there, and still the directory cannot be made (a path under /proc or /sys). */
function cannotCreate(path: string): PagefuseError {
  return new PagefuseError('ENOENT', `cannot create the directory ${path}: ENOENT (its parent is there, but takes no new directory)`, { path });
}

/** Makes one directory: true when it is there now, false when its parent is missing (ENOENT). */
function makeDirSync(path: string, mode: number): boolean {
  try {
    mkdirSync(path, { mode });
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && statSync(path).isDirectory()) return true;
    if (code === 'ENOENT') return false;
    throw err;
  }
}

async function makeDir(path: string, mode: number): Promise<boolean> {
  try {
    await mkdir(path, { mode });
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && (await stat(path)).isDirectory()) return true;
    if (code === 'ENOENT') return false;
    throw err;
  }
}
