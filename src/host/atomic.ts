// Files written whole or not at all: a temp file beside the target, fsync, then rename over it.
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { explain } from '../errors.js';

let tempSerial = 0;

/** A temp name no other write can hold: the pid keeps processes apart, the serial keeps this one's writes apart. */
function tempBeside(path: string): string {
  tempSerial += 1;
  return join(dirname(path), `.${basename(path)}.${process.pid}.${tempSerial.toString(36)}.tmp`);
}

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
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
