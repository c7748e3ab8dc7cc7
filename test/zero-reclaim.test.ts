import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { Region, PAGE_SIZE } from '../src/index.js';
import { reclaimZeroPages, ownedPages, type ZeroReclaimResult } from '../src/safety/zero.js';
import { readFaultMapsZeroPage } from './helpers/zero-page.js';

/**
 * 96 pages: 0..31 random data; 32..63 written then zeroed (resident zero pages); 64..79 data with one
 * non-zero byte at the very end; 80..95 never touched.
 */
function mixedRegion(): { r: Region; v: Uint8Array; before: Buffer } {
  const r = Region.alloc(96 * PAGE_SIZE, { hugepages: 'never' });
  const v = new Uint8Array(r.buffer);
  randomFillSync(v, 0, 32 * PAGE_SIZE);
  v.fill(0xff, 32 * PAGE_SIZE, 64 * PAGE_SIZE);
  v.fill(0, 32 * PAGE_SIZE, 64 * PAGE_SIZE);
  for (let p = 64; p < 80; p++) v[(p + 1) * PAGE_SIZE - 1] = p;
  return { r, v, before: Buffer.from(v.subarray(0, 80 * PAGE_SIZE)) };
}

async function reclaimed(): Promise<{ r: Region; v: Uint8Array; before: Buffer; res: ZeroReclaimResult; progress: number[] }> {
  const m = mixedRegion();
  const progress: number[] = [];
  const res = await reclaimZeroPages(m.r, { chunkBytes: 16 * PAGE_SIZE, onProgress: (p) => progress.push(p.bytesDone) });
  return { ...m, res, progress };
}

test('a region owns the pages it wrote: zeroed ones included, never-touched ones not', () => {
  const { r } = mixedRegion();
  assert.equal(ownedPages(r), 80);
  r.dispose();
});

test('zero reclaim counts every zero page and drops the resident ones', async () => {
  const { r, res } = await reclaimed();
  // 32 written-then-zeroed pages and 16 never touched read as zero; only the 32 are resident.
  assert.deepEqual(res, { zeroPages: 48, reclaimedPages: 32, reclaimedBytes: 32 * PAGE_SIZE });
  r.dispose();
});

test('zero reclaim lowers the pages a region owns by exactly the pages it dropped', async () => {
  const { r } = await reclaimed();
  assert.equal(ownedPages(r), 48);
  r.dispose();
});

test('zero reclaim changes no byte', async () => {
  const { r, v, before } = await reclaimed();
  assert.equal(Buffer.compare(Buffer.from(v.subarray(0, 80 * PAGE_SIZE)), before), 0);
  assert.equal(v.subarray(80 * PAGE_SIZE).every((b) => b === 0), true);
  r.dispose();
});

test('reading reclaimed pages costs memory only where read faults allocate', async () => {
  const { r, v } = await reclaimed();
  assert.equal(v.subarray(32 * PAGE_SIZE, 64 * PAGE_SIZE).every((b) => b === 0), true);
  // The shared zero page, or 32 fresh pages on kernels that allocate on read faults (docs/kernel.md).
  assert.equal(ownedPages(r), readFaultMapsZeroPage() ? 48 : 80);
  r.dispose();
});

test('zero reclaim reports progress after each chunk', async () => {
  const { r, progress } = await reclaimed();
  assert.deepEqual(progress, [1, 2, 3, 4, 5, 6].map((i) => i * 16 * PAGE_SIZE));
  r.dispose();
});

test('zero reclaim refuses a chunk size that is not a whole number of pages', async () => {
  const r = Region.alloc(4 * PAGE_SIZE);
  await assert.rejects(reclaimZeroPages(r, { chunkBytes: 100 }), RangeError);
  r.dispose();
});

test('zero reclaim stops on an aborted signal with an AbortError', async () => {
  const r = Region.alloc(4 * PAGE_SIZE);
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(reclaimZeroPages(r, { signal: ac.signal }), { name: 'AbortError' });
  r.dispose();
});

test('zero reclaim refuses a disposed region with ERR_REGION_DISPOSED', async () => {
  const r = Region.alloc(4 * PAGE_SIZE);
  r.dispose();
  await assert.rejects(reclaimZeroPages(r), { code: 'ERR_REGION_DISPOSED' });
});
