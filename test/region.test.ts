import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Region, PAGE_SIZE } from '../src/index.js';

test('alloc rounds up to whole pages and hands out a zero-filled ArrayBuffer over the mapping', () => {
  const r = Region.alloc(PAGE_SIZE + 1);
  assert.equal(r.byteLength, 2 * PAGE_SIZE);
  const view = new Uint8Array(r.buffer);
  assert.equal(view.length, 2 * PAGE_SIZE);
  assert.equal(view.every((b) => b === 0), true);
  view.fill(0xab);
  assert.equal(new Uint8Array(r.buffer)[2 * PAGE_SIZE - 1], 0xab);
  r.dispose();
});

test('dispose detaches every view, is idempotent, and later use throws ERR_REGION_DISPOSED', () => {
  const r = Region.alloc(4 * PAGE_SIZE);
  const view = new Uint8Array(r.buffer);
  view[0] = 1;
  r.dispose();
  r.dispose();
  assert.equal(r.disposed, true);
  assert.equal(r.byteLength, 0);
  assert.equal(view.length, 0, 'the view is detached, not dangling');
  assert.equal(view[0], undefined);
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

test('advise covers the whole region or a page-aligned part, and refuses bad ranges', () => {
  const r = Region.alloc(8 * PAGE_SIZE, { hugepages: 'never' });
  for (const a of ['mergeable', 'unmergeable', 'hugepage', 'nohugepage', 'cold', 'pageout', 'dontneed'] as const) {
    r.advise(a);
    r.advise(a, { offset: PAGE_SIZE, length: 2 * PAGE_SIZE });
  }
  assert.throws(() => r.advise('mergeable', { offset: 100 }), { name: 'RangeError', message: /offset 100/ });
  assert.throws(() => r.advise('mergeable', { length: PAGE_SIZE + 1 }), { name: 'RangeError', message: /length 4097/ });
  assert.throws(() => r.advise('mergeable', { offset: 8 * PAGE_SIZE, length: PAGE_SIZE }), {
    name: 'RangeError',
    message: /outside the region/,
  });
  assert.throws(() => r.advise('mergeable', { offset: -PAGE_SIZE }), { name: 'RangeError' });
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

test('an undisposed region is unmapped by the garbage collector and its memory is given back', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const external = () => process.memoryUsage().external;
  gc();
  const before = external();
  let kept: Uint8Array[] | null = [];
  for (let i = 0; i < 64; i++) kept.push(new Uint8Array(Region.alloc(1 << 20).buffer).fill(1));
  assert.ok(external() >= before + 60 * (1 << 20), `mapped bytes are reported to V8: ${before} → ${external()}`);
  assert.equal(kept.length, 64);
  kept = null;
  for (let i = 0; i < 5 && external() > before + (8 << 20); i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.ok(external() < before + (8 << 20), `external memory back near ${before}, got ${external()}`);
});
