import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ScanScheduler, type ScanFn } from '../src/tune/schedule.js';
import type { VmInfo } from '../src/vm/discover.js';

const PAGE = 4096;
const vm = (pid: number, rssMiB: number, merging = 0): VmInfo => ({
  pid,
  vmm: 'qemu',
  name: `vm${pid}`,
  startTime: pid,
  rssBytes: rssMiB * 1024 * 1024,
  ksm: { rmapItems: 0, zeroPages: 0, mergingPages: merging, profitBytes: 0 },
});

function clockAndScan(costMsPerTarget: number, volatileOf: (pid: number) => number = () => 0) {
  let now = 0;
  const calls: number[][] = [];
  const scan: ScanFn = async (targets) => {
    const pids = targets.map((t) => (t as { pid: number }).pid);
    calls.push(pids);
    now += costMsPerTarget * pids.length;
    return {
      pages: pids.length * 1000,
      estimatedSavedBytes: pids.length * 400 * PAGE,
      targets: pids.map((pid) => ({ pid, pages: 1000, mergingPages: 500, volatilePages: volatileOf(pid) })),
    };
  };
  return { scan, calls, now: () => now, advance: (ms: number) => (now += ms) };
}

test('new VMs are scanned at once, most promising first; the estimate covers the VMs alive now', async () => {
  const c = clockAndScan(10);
  const s = new ScanScheduler({ scan: c.scan, scanCpuBudget: 0.05, pageSize: PAGE, now: c.now });
  const a = vm(1, 100);
  const b = vm(2, 400);
  assert.equal(s.estimate([a, b]), null);
  assert.deepEqual(s.due([a, b]).map((v) => v.pid), [2, 1], 'both new: the larger first');
  await s.run([b, a]);
  assert.deepEqual(s.estimate([a, b]), { at: 20, savedPages: 800, mergingPages: 1000, pages: 2000, volatility: 0, complete: true });
  assert.deepEqual(s.due([a, b]), [], 'nothing due right after a scan');
  const n = vm(3, 50);
  assert.deepEqual(s.due([a, b, n]).map((v) => v.pid)[0], 3, 'a new VM comes first');
  assert.equal(s.estimate([a, b, n])?.complete, false);
  s.prune([a, n]);
  assert.deepEqual([...s.records.keys()], [1]);
});

test('the scan budget: a burst, then rounds spaced so scan time stays within scanCpuBudget', async () => {
  const c = clockAndScan(1500);
  const s = new ScanScheduler({ scan: c.scan, scanCpuBudget: 0.1, pageSize: PAGE, now: c.now, rescanMs: 1000 });
  const a = vm(1, 100);
  await s.run(s.due([a]));
  c.advance(1000);
  assert.equal(s.due([a]).length, 1, 'within the 2 s burst');
  await s.run([a]);
  c.advance(1000);
  assert.deepEqual(s.due([a]), [], 'burst spent (3 s of scans): wait');
  c.advance(10_000);
  assert.equal(s.due([a]).length, 1, '1 s of budget back after 10 s more at 0.1 CPU');
});

test('priority grows with age, size, disagreement with merged pages and volatility; requested pids are due at once', async () => {
  const c = clockAndScan(1, (pid) => (pid === 3 ? 600 : 0));
  const s = new ScanScheduler({ scan: c.scan, scanCpuBudget: 1, pageSize: PAGE, now: c.now });
  const small = vm(1, 10, 500);
  const big = vm(2, 1000, 500);
  const vol = vm(3, 10, 500);
  const disagree = vm(4, 10, 0);
  await s.run([small, big, vol, disagree]);
  await s.run([small, big, vol, disagree]);
  c.advance(5000);
  const p = (v: VmInfo) => s.priority(v);
  assert.ok(p(big) > p(small), 'larger');
  assert.ok(p(vol) > p(small), 'volatile');
  assert.ok(p(disagree) > p(small), 'estimate and merged pages disagree');
  assert.equal(s.records.get(3)?.volatility, 0.3, 'first scan: unknown (0); second: 0.5·0 + 0.5·0.6 changed');
  assert.deepEqual(s.due([small, big], []), [], 'not stale yet');
  assert.deepEqual(s.due([small, big], [1]).map((v) => v.pid), [2, 1]);
});

test('on a huge host a round covers the most promising VMs up to maxRoundPages', async () => {
  const c = clockAndScan(1);
  const s = new ScanScheduler({ scan: c.scan, scanCpuBudget: 1, pageSize: PAGE, now: c.now, maxRoundPages: 300_000 });
  const vms = [vm(1, 1024), vm(2, 512), vm(3, 256)];
  assert.deepEqual(s.due(vms).map((v) => v.pid), [1]);
});

test('steady VMs are rescanned less and less often (15 s, 30 s, 60 s … up to 240 s); a change resets the pace', async () => {
  let merging = 500;
  let now = 0;
  const scan: ScanFn = async (targets) => ({
    pages: 1000,
    estimatedSavedBytes: 400 * PAGE,
    targets: targets.map((t) => ({ pid: (t as { pid: number }).pid, pages: 1000, mergingPages: merging })),
  });
  const s = new ScanScheduler({ scan, scanCpuBudget: 1, pageSize: PAGE, now: () => now });
  const a = vm(1, 4);
  const waits: number[] = [];
  let last = 0;
  for (let i = 0; i < 7; i++) {
    while (s.due([a]).length === 0) now += 1000;
    waits.push((now - last) / 1000);
    last = now;
    await s.run([a]);
  }
  assert.deepEqual(waits, [0, 15, 30, 60, 120, 240, 240]);
  merging = 900;
  now += 240_000;
  await s.run([a]);
  assert.equal(s.records.get(1)?.steadyScans, 0);
});
