// Files written whole or not at all: a temp file beside the target, fsync, then rename over it.
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { explain } from '../errors.js';

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now().toString(36)}.tmp`);
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
