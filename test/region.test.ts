import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Region, PAGE_SIZE } from '../src/index.js';

test('alloc rounds the size up to whole pages', () => {
  const r = Region.alloc(PAGE_SIZE + 1);
  assert.equal(r.byteLength, 2 * PAGE_SIZE);
  assert.equal(r.buffer.byteLength, 2 * PAGE_SIZE);
  r.dispose();
});

test('a new region reads as zeros', () => {
  const r = Region.alloc(2 * PAGE_SIZE);
  assert.equal(new Uint8Array(r.buffer).every((b) => b === 0), true);
  r.dispose();
});

test('every view of the buffer shows the same mapping', () => {
  const r = Region.alloc(2 * PAGE_SIZE);
  new Uint8Array(r.buffer).fill(0xab);
  assert.equal(new Uint8Array(r.buffer)[2 * PAGE_SIZE - 1], 0xab);
  r.dispose();
});

test('dispose detaches every view instead of leaving it dangling', () => {
  const r = Region.alloc(4 * PAGE_SIZE);
  const view = new Uint8Array(r.buffer);
  view[0] = 1;
  r.dispose();
  assert.equal(r.disposed, true);
  assert.equal(r.byteLength, 0);
  assert.equal(view.length, 0);
  assert.equal(view[0], undefined);
});

test('disposing twice is a no-op', () => {
  const r = Region.alloc(PAGE_SIZE);
  r.dispose();
  r.dispose();
  assert.equal(r.disposed, true);
});

test('a disposed region refuses use with ERR_REGION_DISPOSED', () => {
  const r = Region.alloc(PAGE_SIZE);
  r.dispose();
  assert.throws(() => r.buffer, { code: 'ERR_REGION_DISPOSED' });
  assert.throws(() => r.advise('mergeable'), { code: 'ERR_REGION_DISPOSED', message: /disposed/ });
});

test('Symbol.dispose unmaps at the end of a using-like scope', () => {
  const r = Region.alloc(PAGE_SIZE);
  r[Symbol.dispose]();
  assert.equal(r.disposed, true);
});

test('bad sizes are refused with the value named', () => {
  assert.throws(() => Region.alloc(0), { name: 'RangeError', message: /got 0/ });
  assert.throws(() => Region.alloc(-4096), { name: 'RangeError', message: /got -4096/ });
  assert.throws(() => Region.alloc(1.5), { name: 'RangeError', message: /got 1\.5/ });
  assert.throws(() => Region.alloc(Number.NaN), { name: 'RangeError', message: /got NaN/ });
  assert.throws(() => Region.alloc(2 ** 48), { name: 'RangeError', message: /address space/ });
  assert.throws(() => Region.alloc('4096' as unknown as number), { name: 'TypeError', message: /string "4096"/ });
  assert.throws(() => Region.alloc(PAGE_SIZE, { hugepages: 'sometimes' as 'never' }), {
    name: 'RangeError',
    message: /"sometimes"/,
  });
});

test('advise takes every advice on the whole region and on a page-aligned part', () => {
  const r = Region.alloc(8 * PAGE_SIZE, { hugepages: 'never' });
  for (const a of ['mergeable', 'unmergeable', 'hugepage', 'nohugepage', 'cold', 'pageout', 'dontneed'] as const) {
    assert.equal(r.advise(a), undefined);
    assert.equal(r.advise(a, { offset: PAGE_SIZE, length: 2 * PAGE_SIZE }), undefined);
  }
  r.dispose();
});

test('advise refuses a range that is not page-aligned or not inside the region, naming it', () => {
  const r = Region.alloc(8 * PAGE_SIZE, { hugepages: 'never' });
  assert.throws(() => r.advise('mergeable', { offset: 100 }), { name: 'RangeError', message: /offset 100/ });
  assert.throws(() => r.advise('mergeable', { length: PAGE_SIZE + 1 }), { name: 'RangeError', message: /length 4097/ });
  assert.throws(() => r.advise('mergeable', { offset: 8 * PAGE_SIZE, length: PAGE_SIZE }), {
    name: 'RangeError',
    message: /outside the region/,
  });
  assert.throws(() => r.advise('mergeable', { offset: -PAGE_SIZE }), { name: 'RangeError' });
  r.dispose();
});

test('advise refuses an advice it does not know, naming it', () => {
  const r = Region.alloc(PAGE_SIZE);
  assert.throws(() => r.advise('squash' as 'cold'), { name: 'RangeError', message: /"squash"/ });
  r.dispose();
});

test('dontneed drops the contents of the advised pages only', () => {
  const r = Region.alloc(2 * PAGE_SIZE);
  const v = new Uint8Array(r.buffer);
  v.fill(7);
  r.advise('dontneed', { offset: PAGE_SIZE, length: PAGE_SIZE });
  assert.equal(v[0], 7);
  assert.equal(v[PAGE_SIZE], 0);
  r.dispose();
});

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const external = () => process.memoryUsage().external;

test("a region's mapped bytes count in V8's external memory", () => {
  gc();
  const before = external();
  const r = Region.alloc(64 << 20);
  // external also moves with Node's own buffers (by about 0.1 MiB here between two readings).
  const grown = external() - before;
  assert.ok(Math.abs(grown - (64 << 20)) < 1 << 20, `external grew by ${grown} B for a 64 MiB region`);
  r.dispose();
  const after = external() - before;
  assert.ok(Math.abs(after) < 1 << 20, `external is ${after} B off where it started after dispose()`);
});

test('an undisposed region is unmapped by the garbage collector', async () => {
  gc();
  const before = external();
  let kept: Uint8Array[] | null = [];
  for (let i = 0; i < 64; i++) kept.push(new Uint8Array(Region.alloc(1 << 20).buffer).fill(1));
  assert.equal(kept.length, 64);
  kept = null;
  for (let i = 0; i < 5 && external() > before + (8 << 20); i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.ok(external() < before + (8 << 20), `external memory back near ${before}, got ${external()}`);
});
