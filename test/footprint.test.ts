// readFootprint on a fake /proc: the page-level savings figures from smaps, pagemap, kpageflags, kpagecount.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSmaps, readFootprint } from '../src/ksm/footprint.js';

const PID = 4242;
const BASE = 0x40000000; // 2 MiB-aligned start of the mergeable area
const CHUNK_PAGES = 512;
const ZERO_PFN = 50;
const KSM_PFN = 100;

/** Writes 8-byte entries { index: value } into a sparse file. */
function table(path: string, entries: Map<number, bigint>): void {
  const last = Math.max(...entries.keys());
  const buf = Buffer.alloc((last + 1) * 8);
  for (const [i, v] of entries) buf.writeBigUInt64LE(v, i * 8);
  writeFileSync(path, buf);
}

/** A process whose mergeable area is three 2 MiB chunks; `pages` maps page index → [pfn, exclusively mapped]. */
function fakeProc(pages: Map<number, [number, boolean]>): string {
  const root = mkdtempSync(join(tmpdir(), 'pf-footprint-'));
  mkdirSync(join(root, String(PID)));
  const end = BASE + 3 * CHUNK_PAGES * 4096;
  writeFileSync(
    join(root, String(PID), 'smaps'),
    `${BASE.toString(16)}-${end.toString(16)} rw-p 00000000 00:00 0\nPss:                4096 kB\nVmFlags: rd wr mr mw me ac mg\n`,
  );
  const present = 1n << 63n;
  const map = new Map<number, bigint>();
  for (const [i, [pfn, exclusive]] of pages) map.set(BASE / 4096 + i, present | (exclusive ? 1n << 56n : 0n) | BigInt(pfn));
  table(join(root, String(PID), 'pagemap'), map);
  table(join(root, 'kpageflags'), new Map([[ZERO_PFN, 1n << 24n], [KSM_PFN, 1n << 21n]]));
  table(join(root, 'kpagecount'), new Map([[ZERO_PFN, 0n], [KSM_PFN, 2n]]));
  return root;
}

test('zero-page mappings count as THP-split savings only in fully present 2 MiB chunks', async () => {
  const pages = new Map<number, [number, boolean]>();
  const fill = (chunk: number, ksm: number, zero: number, own: number): void => {
    let at = chunk * CHUNK_PAGES;
    for (let i = 0; i < ksm; i++) pages.set(at++, [KSM_PFN, false]);
    for (let i = 0; i < zero; i++) pages.set(at++, [ZERO_PFN, false]);
    for (let i = 0; i < own; i++) pages.set(at++, [1000 + at, true]);
  };
  fill(0, 1, 9, CHUNK_PAGES - 10); // a huge page ksmd split: every subpage present, one merged
  fill(1, 1, 5, 100); // memory partly touched: 5 pages only ever read, one page merged
  fill(2, 0, CHUNK_PAGES, 0); // a huge page of zeros ksmd split: every subpage maps the zero page
  const root = fakeProc(pages);
  try {
    const fp = await readFootprint(PID, { procRoot: root });
    assert.equal(fp?.zeroMappedPages, 9 + CHUNK_PAGES);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('parseSmaps gives the Pss of the areas KSM may merge apart from the whole Pss', () => {
  const smaps = [
    '7f0000000000-7f0000200000 rw-p 00000000 00:00 0',
    'Pss:                 100 kB',
    'SwapPss:               7 kB',
    'VmFlags: rd wr mr mw me ac mg',
    '7f0000200000-7f0000400000 rw-p 00000000 00:00 0',
    'Pss:                  40 kB',
    'VmFlags: rd wr mr mw me ac',
    '',
  ].join('\n');
  assert.deepEqual(parseSmaps(smaps), { pssBytes: 140 * 1024, mergeable: [[0x7f0000000000, 0x7f0000200000]], mergeablePssBytes: 100 * 1024 });
});
