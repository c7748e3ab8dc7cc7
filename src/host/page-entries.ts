// The kernel's 8-byte-per-page tables (/proc/<pid>/pagemap, /proc/kpageflags, /proc/kpagecount), read in
// windows: the one reader the per-node KSM pages and the savings footprint share.
import type { FileHandle } from 'node:fs/promises';
import { native } from '../native.js';

/** Present pages a PAGEMAP_SCAN call may list before it returns (1 GiB of 4 KiB pages): one call's work is bounded. */
const SCAN_MAX_PAGES = 262_144;

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

/**
 * The spans of `ranges` ([start, end) byte addresses) whose pagemap entries are worth reading: where pages
 * are present, as PAGEMAP_SCAN (Linux 6.7) lists them, spans closer than 2 MiB joined; each range whole where
 * the kernel (or a fixture's plain file) has no PAGEMAP_SCAN. Address space with nothing in it then costs a
 * walk of page tables, not 8 bytes read per page: a process may map tens of TiB it never touches
 * (0.75 s per TiB read entry by entry), and any local user may run one named like a VMM.
 */
export async function* presentSpans(pagemap: FileHandle, ranges: Iterable<[number, number]>): AsyncGenerator<[number, number]> {
  for (const [start, end] of ranges) {
    for (let at = start; at < end; ) {
      const found = native.pagemapPresent(pagemap.fd, at, end, SCAN_MAX_PAGES);
      if (found === null) {
        yield [at, end];
        break;
      }
      for (let i = 0; i < found.spans.length; i += 2) yield [found.spans[i], found.spans[i + 1]];
      at = found.walkEnd;
    }
  }
}
