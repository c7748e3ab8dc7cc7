// The kernel's 8-byte-per-page tables (/proc/<pid>/pagemap, /proc/kpageflags, /proc/kpagecount), read in
// windows: the one reader the per-node KSM pages and the savings footprint share.
import type { FileHandle } from 'node:fs/promises';

/** Reads `count` 8-byte entries from entry `firstEntry` as (low, high) 32-bit word pairs; short at EOF. */
export async function readPageEntries(fh: FileHandle, firstEntry: number, count: number): Promise<Uint32Array> {
  const buf = Buffer.alloc(count * 8);
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, firstEntry * 8 + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return new Uint32Array(buf.buffer, buf.byteOffset, Math.floor(done / 8) * 2);
}
