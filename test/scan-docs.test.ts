// What docs/scan.md promises about a scan's result, checked point by point (issue 13 item 6).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PAGE_SIZE, Region, scan } from '../src/index.js';

/** A pid no process has: above pid_max's largest default and never handed out. */
async function unusedPid(): Promise<number> {
  const { readFileSync } = await import('node:fs');
  const max = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  for (let pid = max - 1; pid > 1; pid--) {
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return pid;
    }
  }
  throw new Error('no free pid');
}

test('skipMissing: a pid that never existed is an empty target with vanished: true', async () => {
  const pid = await unusedPid();
  const r = await scan({ pid }, { skipMissing: true });
  assert.equal(r.targets[0].vanished, true);
  assert.equal(r.targets[0].pages, 0);
});

test("per-target mergingPages counts the target's zero pages without use_zero_pages, and the targets add up to the result", async () => {
  const a = new Uint8Array(8 * PAGE_SIZE); // all zero
  const b = new Uint8Array(4 * PAGE_SIZE).fill(7); // 4 equal pages
  const r = await scan([a, b], { useZeroPages: false });
  assert.deepEqual(
    r.targets.map((t) => t.mergingPages),
    [8, 4],
  );
  assert.equal(r.mergingPages, 12);
  const z = await scan([a, b], { useZeroPages: true });
  assert.deepEqual(
    z.targets.map((t) => t.mergingPages),
    [0, 4],
  );
  assert.equal(z.zeroMergedPages, 8);
});

test('a buffer of a disposed Region is ERR_REGION_DISPOSED, a transferred ArrayBuffer an ERR_INVALID_ARG_TYPE TypeError', async () => {
  const region = Region.alloc(PAGE_SIZE);
  const view = new Uint8Array(region.buffer);
  region.dispose();
  await assert.rejects(scan(view), { code: 'ERR_REGION_DISPOSED' });
  const buffer = new ArrayBuffer(PAGE_SIZE);
  structuredClone(buffer, { transfer: [buffer] });
  await assert.rejects(scan(buffer), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: /detached/ });
});

test('a result serializes to JSON with density as plain arrays of numbers', async () => {
  const r = await scan(new Uint8Array(PAGE_SIZE * 2).fill(1));
  const json = JSON.parse(JSON.stringify(r)) as { targets: { density: Record<string, unknown> }[] };
  assert.deepEqual(json.targets[0].density, {
    chunkBytes: 2 * 1024 * 1024,
    address: [0],
    pages: [2],
    duplicatePages: [2],
    thpPages: [0],
    thpZeroPages: [0],
    thpDuplicatePages: [0],
  });
});
