// The bench's read baseline (native.readMemory): every word read once, however the memory is split
// between threads and streams.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { native } from '../src/native.js';

const PAGE = 4096;

/** 5 MiB and 3 pages of random words (two whole 2 MiB items and a short one) and their sum, as the addon reports it (53 bits). */
function memory(): { buffer: ArrayBuffer; sum: number } {
  const buffer = new ArrayBuffer(5 * 1024 * 1024 + 3 * PAGE);
  randomFillSync(new Uint8Array(buffer));
  let sum = 0n;
  for (const w of new BigUint64Array(buffer)) sum += w;
  return { buffer, sum: Number(sum & ((1n << 53n) - 1n)) };
}

test('a read in 2 MiB items taken by two threads reads every word once, in 1 and 4 streams', async () => {
  const { buffer, sum } = memory();
  const sums = [];
  for (const streams of [1, 4] as const) sums.push(await native.readMemory({ kind: 'buffer', buffer }, { threads: 2, streams, items: true }));
  assert.deepEqual(sums, [sum, sum]);
});

test('a read in a fixed share a thread reads every word once, at one and two threads', async () => {
  const { buffer, sum } = memory();
  const sums = [];
  for (const threads of [1, 2]) sums.push(await native.readMemory({ kind: 'buffer', buffer }, { threads, streams: 4 }));
  assert.deepEqual(sums, [sum, sum]);
});

test('readMemory refuses an items option that is not a boolean', () => {
  assert.throws(() => native.readMemory({ kind: 'buffer', buffer: new ArrayBuffer(PAGE) }, { items: 1 as unknown as boolean }), {
    name: 'TypeError',
    message: 'items must be a boolean',
  });
});
