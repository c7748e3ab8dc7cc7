import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { Region, PAGE_SIZE } from '../src/index.js';
import { reclaimZeroPages, ownedPages } from '../src/safety/zero.js';
import { readFaultMapsZeroPage } from './helpers/zero-page.js';

test('zero-only reclaim: resident zero pages are dropped, every other byte is unchanged', async () => {
  const pages = 96;
  const r = Region.alloc(pages * PAGE_SIZE, { hugepages: 'never' });
  const v = new Uint8Array(r.buffer);
  // 0..31 random data; 32..63 written then zeroed (resident zero pages); 64..79 data with one non-zero
  // byte at the very end; 80..95 never touched.
  randomFillSync(v, 0, 32 * PAGE_SIZE);
  v.fill(0xff, 32 * PAGE_SIZE, 64 * PAGE_SIZE);
  v.fill(0, 32 * PAGE_SIZE, 64 * PAGE_SIZE);
  for (let p = 64; p < 80; p++) v[(p + 1) * PAGE_SIZE - 1] = p;
  const before = Buffer.from(v.subarray(0, 80 * PAGE_SIZE));
  assert.equal(ownedPages(r), 80);

  const progress: number[] = [];
  const res = await reclaimZeroPages(r, { chunkBytes: 16 * PAGE_SIZE, onProgress: (p) => progress.push(p.bytesDone) });
  assert.deepEqual(res, { zeroPages: 48, reclaimedPages: 32, reclaimedBytes: 32 * PAGE_SIZE });
  assert.equal(ownedPages(r), 48, 'RSS fell by exactly the resident zero pages');
  assert.equal(Buffer.compare(Buffer.from(v.subarray(0, 80 * PAGE_SIZE)), before), 0, 'no byte changed');
  assert.equal(v.subarray(32 * PAGE_SIZE, 64 * PAGE_SIZE).every((b) => b === 0), true);
  // Reading the dropped pages maps the shared zero page, or, on kernels that allocate on read faults,
  // 32 fresh pages (docs/kernel.md).
  assert.equal(ownedPages(r), readFaultMapsZeroPage() ? 48 : 80);
  assert.deepEqual(progress, [1, 2, 3, 4, 5, 6].map((i) => i * 16 * PAGE_SIZE));
  r.dispose();
});

test('zero reclaim refuses a disposed region, a bad chunk size, and stops on abort', async () => {
  const r = Region.alloc(4 * PAGE_SIZE);
  await assert.rejects(reclaimZeroPages(r, { chunkBytes: 100 }), RangeError);
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(reclaimZeroPages(r, { signal: ac.signal }), { name: 'AbortError' });
  r.dispose();
  await assert.rejects(reclaimZeroPages(r), { code: 'ERR_REGION_DISPOSED' });
});
