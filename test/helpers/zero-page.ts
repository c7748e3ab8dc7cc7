// Whether this kernel maps the shared zero page on a read fault of never-written anonymous memory.
// Mainline Linux does; the 6.18 kernel of our development machines allocates a fresh exclusive page
// instead (docs/kernel.md). Tests that count pages after read-only touches ask this probe first.
import { readFileSync } from 'node:fs';
import { Region, PAGE_SIZE } from '../../src/index.js';

function rssAnonBytes(): number {
  const m = /^RssAnon:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  if (m === null) throw new Error('/proc/self/status has no RssAnon line');
  return Number(m[1]) * 1024;
}

let answer: boolean | undefined;

/**
 * Reads one byte of each page of a fresh 16 MiB region (no huge pages) and watches this process's
 * RssAnon: the zero page is counted in no process's RSS, fresh pages are. Independent of pagemap and of
 * the addon's own page counting, which the tests check.
 */
export function readFaultMapsZeroPage(): boolean {
  if (answer !== undefined) return answer;
  const pages = 4096;
  const r = Region.alloc(pages * PAGE_SIZE, { hugepages: 'never' });
  try {
    const v = new Uint8Array(r.buffer);
    const before = rssAnonBytes();
    let sum = 0;
    for (let p = 0; p < pages; p++) sum += v[p * PAGE_SIZE];
    const grown = rssAnonBytes() - before;
    if (sum !== 0) throw new Error('a fresh anonymous mapping read non-zero');
    // Fresh pages grow RssAnon by the whole 16 MiB; the zero page by nothing (the V8 heap moves by far less).
    answer = grown < (pages * PAGE_SIZE) / 2;
    return answer;
  } finally {
    r.dispose();
  }
}
