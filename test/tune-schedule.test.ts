import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { ScanScheduler, UNCHANGED_RESCAN_MS, scanThreadsFor, type ScanFn } from '../src/tune/schedule.js';
import { createTunerScan } from '../src/tune/scan-adapter.js';
import type { VmInfo } from '../src/vm/discover.js';
import { scan as scanEngine } from '../src/scan/scan.js';
import { Workload } from '../src/workload/workload.js';
import { requireRoot } from './helpers/root.js';
import { withKsm } from './helpers/ksm.js';
import { processKsm } from '../src/ksm/process.js';
import type { Ksm } from '../src/index.js';
import { HostSource } from '../src/report/source.js';
import { readProcStat } from '../src/host/procfs.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PAGE = 4096;
/** A process's ksm_stat as VM discovery gives it. */
const merged = (k: { zeroPages: number; mergingPages: number }): VmInfo['ksm'] => ({ rmapItems: 0, zeroPages: k.zeroPages, mergingPages: k.mergingPages, profitBytes: 0 });
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

/** A scheduler that has scanned VM 1 (100 MiB) and VM 2 (400 MiB) once, 10 ms each. */
async function scannedTwo() {
  const c = clockAndScan(10);
  const s = new ScanScheduler({ scan: c.scan, scanCpuBudget: 0.05, pageSize: PAGE, now: c.now });
  const a = vm(1, 100);
  const b = vm(2, 400);
  await s.run([b, a]);
  return { s, a, b };
}

test('a round that fails is charged to the budget like one that ends, so it is not retried at once', async () => {
  let now = 0;
  const s = new ScanScheduler({
    scan: async () => {
      now += 2_500; // more than the whole burst
      throw new Error('EOVERFLOW');
    },
    scanCpuBudget: 0.05,
    pageSize: PAGE,
    now: () => now,
  });
  const a = vm(1, 100);
  await assert.rejects(s.run([a]), /EOVERFLOW/);
  assert.deepEqual(s.due([a]), []);
});

test('before any scan there is no estimate', () => {
  const c = clockAndScan(10);
  const s = new ScanScheduler({ scan: c.scan, scanCpuBudget: 0.05, pageSize: PAGE, now: c.now });
  assert.equal(s.estimate([vm(1, 100)]), null);
});

test('new VMs are due at once, the larger first', () => {
  const c = clockAndScan(10);
  const s = new ScanScheduler({ scan: c.scan, scanCpuBudget: 0.05, pageSize: PAGE, now: c.now });
  assert.deepEqual(s.due([vm(1, 100), vm(2, 400)]).map((v) => v.pid), [2, 1]);
});

test('the estimate adds up what the scans of the VMs alive now found', async () => {
  const { s, a, b } = await scannedTwo();
  assert.deepEqual(s.estimate([a, b]), { at: 20, savedPages: 800, mergingPages: 1000, pages: 2000, volatility: 0, complete: true });
});

/** A scan that finds, in VM pid, pid huge pages ksmd splits one per full scan holding 100 × pid zero subpages; none known for `unknown`. */
function slowSplitScan(unknown: readonly number[] = []): ScanFn {
  return async (targets) => {
    const pids = targets.map((t) => (t as { pid: number }).pid);
    return {
      pages: pids.length * 1000,
      estimatedSavedBytes: pids.length * 400 * PAGE,
      targets: pids.map((pid) => ({
        pid,
        pages: 1000,
        mergingPages: 500,
        ...(unknown.includes(pid) ? {} : { thpSlowSplit: { hugePages: pid, zeroPages: 100 * pid } }),
      })),
    };
  };
}

test('the estimate keeps the huge pages ksmd splits one per full scan apart, summed over the VMs alive now', async () => {
  const s = new ScanScheduler({ scan: slowSplitScan(), scanCpuBudget: 1, pageSize: PAGE });
  const [a, b] = [vm(1, 100), vm(2, 400)];
  await s.run([a, b]);
  const both = s.estimate([a, b]);
  const onlyB = s.estimate([b]);
  assert.deepEqual(
    [both?.savedPages, both?.thpSlowSplit, onlyB?.savedPages, onlyB?.thpSlowSplit],
    [800, { hugePages: 3, zeroPages: 300 }, 400, { hugePages: 2, zeroPages: 200 }],
  );
});

test('an estimate covering a VM whose scan could not read page flags has no slow-split figure', async () => {
  const s = new ScanScheduler({ scan: slowSplitScan([2]), scanCpuBudget: 1, pageSize: PAGE });
  const [a, b] = [vm(1, 100), vm(2, 400)];
  await s.run([a, b]);
  assert.deepEqual([s.estimate([a])?.thpSlowSplit, 'thpSlowSplit' in s.estimate([a, b])!], [{ hugePages: 1, zeroPages: 100 }, false]);
});

test("the tuner's scan passes on each VM's huge pages that ksmd splits one per full scan", async (t) => {
  if (!requireRoot(t, 'reads /proc/kpageflags to tell huge pages apart')) return;
  // scan-pid's layout: every zero page of this 16 MiB MADV_HUGEPAGE mapping sits in a huge page with no duplicate.
  const w = await Workload.start({ processes: 1, imagePages: 1024, zeroPages: 2048, uniquePages: 1024, hugepages: 'always', seed: 13 });
  try {
    const outcome = await createTunerScan()([{ pid: w.pids[0] }], {});
    // The same scan as the tuner's (exact, one thread, the live use_zero_pages knob: 0 by default).
    const r = await scanEngine({ pid: w.pids[0] }, { mode: 'exact', threads: 1 });
    assert.ok(r.thpSlowSplitPages > 0, `${r.thpSlowSplitPages} slow huge pages (use_zero_pages=${r.useZeroPages ? 1 : 0})`);
    assert.deepEqual(outcome.targets[0].thpSlowSplit, { hugePages: r.thpSlowSplitPages, zeroPages: r.thpSlowSplitZeroPages });
  } finally {
    await w.stop();
  }
});

for (const hugepages of ['never', 'always'] as const) {
  test(`a rescan after ksmd merged keeps the estimate: the zero pages it freed count as saved (use_zero_pages=1, THP ${hugepages})`, async (t) => {
    if (!requireRoot(t, 'reads /proc/<pid>/pagemap, where pages mapped to the zero page are told apart')) return;
    await withKsm(
      t,
      async (ksm) => {
        const w = await Workload.start({ processes: 2, imagePages: 1024, zeroPages: 4096, uniquePages: 512, hugepages, seed: 17 });
        try {
          const vms = w.pids.map((pid) => ({ ...vm(pid, 0), startTime: 1 }));
          const s = new ScanScheduler({ scan: createTunerScan(), scanCpuBudget: 1, pageSize: PAGE });
          await s.run(vms);
          const before = s.estimate(vms)!;
          await converged(ksm, w.pids);
          await s.run(vms);
          const after = s.estimate(vms)!;
          // Before the fix: the zero pages ksmd had mapped to the zero page (or freed by splitting their huge
          // pages) left both figures, the saved one by 4096 × 2 pages.
          assert.deepEqual([after.savedPages, after.mergingPages], [before.savedPages, before.mergingPages]);
        } finally {
          await w.stop();
        }
      },
      { settings: { use_zero_pages: 1 } },
    );
  });
}

test('a scheduler that first scans VMs after ksmd merged them keeps the zero pages ksmd freed, from the baselines a reader shared before (THP always, use_zero_pages=1)', async (t) => {
  if (!requireRoot(t, 'reads /proc/<pid>/pagemap, where pages mapped to the zero page are told apart')) return;
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-baselines-'));
  const file = join(dir, 'zero-baselines.json');
  const reader = () => new HostSource({ zeroBaselines: file, tunerStatePath: join(dir, 'none.json'), nodes: async () => undefined, footprintMaxAgeMs: 0 });
  try {
    await withKsm(
      t,
      async (ksm) => {
        const w = await Workload.start({ processes: 2, imagePages: 1024, zeroPages: 4096, uniquePages: 512, hugepages: 'always', seed: 19 });
        try {
          const vmsNow = async () =>
            Promise.all(w.pids.map(async (pid) => ({ ...vm(pid, 0), startTime: (await readProcStat('/proc', pid))!.startTime, ksm: merged(await processKsm(pid)) })));
          const first = new ScanScheduler({ scan: createTunerScan(), scanCpuBudget: 1, pageSize: PAGE });
          const before = await vmsNow();
          await first.run(before);
          await reader().read(); // status, top, serve or the tuner's own reading, before ksmd merged them
          await converged(ksm, w.pids);
          const after = await vmsNow();
          const own = reader();
          const restarted = new ScanScheduler({ scan: createTunerScan(), scanCpuBudget: 1, pageSize: PAGE, zeroBaselines: (vs) => own.zeroBaselinesOf(vs.map((v) => ({ pid: v.pid, start: v.startTime }))) });
          await restarted.run(after);
          // Before the fix: its first scan's count of zero-page mappings, ksmd's splits among them, was the baseline.
          assert.deepEqual([restarted.estimate(after)!.savedPages, restarted.estimate(after)!.mergingPages], [first.estimate(before)!.savedPages, first.estimate(before)!.mergingPages]);
        } finally {
          await w.stop();
        }
      },
      { settings: { use_zero_pages: 1 } },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a VM first scanned with nothing merged takes its own count of zero-page mappings as its baseline, not a shared one', async () => {
  const scan: ScanFn = async () => ({ pages: 1000, estimatedSavedBytes: 0, targets: [{ pid: 1, pages: 1000, mergingPages: 0, zeroMappedPages: 300, ksmZeroMappedPages: 0 }] });
  const s = new ScanScheduler({ scan, scanCpuBudget: 1, pageSize: PAGE, zeroBaselines: async (vs) => new Map(vs.map((v) => [v.pid, 100])) });
  await s.run([vm(1, 4)]);
  assert.deepEqual([s.records.get(1)?.zeroBaseline, s.records.get(1)?.savedPages], [300, 0]);
});

test("firstBaselines gives the zero-page counts of the VMs a round first scanned with nothing merged, not of merged ones nor on a rescan", async () => {
  const scan: ScanFn = async (targets) => ({
    pages: 2000,
    estimatedSavedBytes: 0,
    targets: targets.map((t) => ({ pid: (t as { pid: number }).pid, pages: 1000, mergingPages: 0, zeroMappedPages: 300, ksmZeroMappedPages: 0 })),
  });
  const s = new ScanScheduler({ scan, scanCpuBudget: 1, pageSize: PAGE });
  const vms = [vm(1, 4), vm(2, 4, 5)];
  await s.run(vms);
  const first = s.firstBaselines(vms);
  await s.run(vms);
  assert.deepEqual([first, s.firstBaselines(vms)], [[{ pid: 1, start: 1, zeroMappedPages: 300 }], []]);
});

/** Runs ksmd until a full scan changes the processes' merged and zero pages no more. */
async function converged(ksm: Ksm, pids: number[]): Promise<void> {
  await ksm.start();
  let last = -1;
  for (let i = 0; i < 40; i++) {
    await ksm.waitForFullScans(1, { timeoutMs: 30_000 });
    const stats = await Promise.all(pids.map((pid) => processKsm(pid)));
    const now = stats.reduce((a, x) => a + x.mergingPages + x.zeroPages, 0);
    if (now === last && now > 0) break;
    last = now;
  }
  await ksm.stop();
}

test('nothing is due right after a scan', async () => {
  const { s, a, b } = await scannedTwo();
  assert.deepEqual(s.due([a, b]), []);
});

test('a new VM is due before the ones already scanned', async () => {
  const { s, a, b } = await scannedTwo();
  assert.equal(s.due([a, b, vm(3, 50)]).map((v) => v.pid)[0], 3);
});

test('an estimate that misses a VM alive now is marked incomplete', async () => {
  const { s, a, b } = await scannedTwo();
  assert.equal(s.estimate([a, b, vm(3, 50)])?.complete, false);
});

test('prune forgets the VMs that are gone', async () => {
  const { s, a } = await scannedTwo();
  s.prune([a, vm(3, 50)]);
  assert.deepEqual([...s.records.keys()], [1]);
});

test('prune gives the VMs left that were scanned with one that is gone, to scan again', async () => {
  const { s, a } = await scannedTwo();
  assert.deepEqual(s.prune([a, vm(3, 50)]), [1]);
});

test('prune gives none when no scanned VM is gone', async () => {
  const { s, a, b } = await scannedTwo();
  assert.deepEqual(s.prune([a, b, vm(3, 50)]), []);
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

test('a round on two threads asks the scan engine for two', async () => {
  const c = clockAndScan(10);
  const asked: (number | undefined)[] = [];
  const scan: ScanFn = (targets, o) => {
    asked.push(o.threads);
    return c.scan(targets, o);
  };
  const s = new ScanScheduler({ scan, scanCpuBudget: 0.1, pageSize: PAGE, now: c.now });
  await s.run([vm(1, 100)], [], undefined, 2);
  await s.run([vm(2, 100)]);
  assert.deepEqual(asked, [2, undefined]);
});

test('a round on two threads counts its scan time twice against the budget', async () => {
  const c = clockAndScan(1500);
  const s = new ScanScheduler({ scan: c.scan, scanCpuBudget: 0.1, pageSize: PAGE, now: c.now, rescanMs: 1000 });
  const a = vm(1, 100);
  await s.run([a], [], undefined, 2);
  c.advance(1000);
  assert.deepEqual(s.due([a]), [], '1.5 s on two threads is 3 s of the 2 s burst: wait (on one thread, 0.5 s would be left)');
  c.advance(9500);
  assert.equal(s.due([a]).length, 1, 'the 1 s overdrawn is back after 10 s at 0.1 CPU');
});

test("a first look at a VM while ksmd is stopped hashes on one thread plus ksmd's whole CPUs, up to the CPUs there are", () => {
  const first = { ksmdRuns: false, firstLook: true };
  assert.deepEqual(
    [0.25, 1, 1.5, 3, 16].map((cpuBudget) => scanThreadsFor({ ...first, cpuBudget, cpus: 4 })),
    [1, 2, 2, 4, 4],
  );
});

test('a scan round hashes on one thread while ksmd runs, and for rescans of VMs already scanned', () => {
  assert.deepEqual(
    [scanThreadsFor({ ksmdRuns: true, firstLook: true, cpuBudget: 2, cpus: 4 }), scanThreadsFor({ ksmdRuns: false, firstLook: false, cpuBudget: 2, cpus: 4 })],
    [1, 1],
  );
});

/** Four VMs scanned twice, 5 s ago: small; big; vol (60 % of its pages change); disagree (no merged pages). */
async function fourScanned() {
  const c = clockAndScan(1, (pid) => (pid === 3 ? 600 : 0));
  const s = new ScanScheduler({ scan: c.scan, scanCpuBudget: 1, pageSize: PAGE, now: c.now });
  const v = { small: vm(1, 10, 500), big: vm(2, 1000, 500), vol: vm(3, 10, 500), disagree: vm(4, 10, 0) };
  await s.run(Object.values(v));
  await s.run(Object.values(v));
  c.advance(5000);
  return { s, ...v };
}

test('a larger VM has the higher priority', async () => {
  const { s, small, big } = await fourScanned();
  assert.ok(s.priority(big) > s.priority(small));
});

test('a volatile VM has the higher priority', async () => {
  const { s, small, vol } = await fourScanned();
  assert.ok(s.priority(vol) > s.priority(small));
});

test('a VM whose estimate and merged pages disagree has the higher priority', async () => {
  const { s, small, disagree } = await fourScanned();
  assert.ok(s.priority(disagree) > s.priority(small));
});

test("volatility is an average of the share of changed pages over a VM's scans", async () => {
  const { s } = await fourScanned();
  // First scan: unknown (0); second: 0.5 · 0 + 0.5 · 0.6 changed.
  assert.equal(s.records.get(3)?.volatility, 0.3);
});

test('a VM scanned 5 s ago is not due yet', async () => {
  const { s, small, big } = await fourScanned();
  assert.deepEqual(s.due([small, big], []), []);
});

test('a pid asked for is due at once, with the other VMs due in priority order', async () => {
  const { s, small, big } = await fourScanned();
  assert.deepEqual(s.due([small, big], [1]).map((v) => v.pid), [2, 1]);
});

test('on a huge host a round covers the most promising VMs up to maxRoundPages', async () => {
  const c = clockAndScan(1);
  const s = new ScanScheduler({ scan: c.scan, scanCpuBudget: 1, pageSize: PAGE, now: c.now, maxRoundPages: 300_000 });
  const vms = [vm(1, 1024), vm(2, 512), vm(3, 256)];
  assert.deepEqual(s.due(vms).map((v) => v.pid), [1]);
});

/** A scheduler over one VM whose scans find `merging()` merging pages, scanned whenever due, 7 times. */
async function steadyScans(merging: () => number) {
  let now = 0;
  const scan: ScanFn = async (targets) => ({
    pages: 1000,
    estimatedSavedBytes: 400 * PAGE,
    targets: targets.map((t) => ({ pid: (t as { pid: number }).pid, pages: 1000, mergingPages: merging() })),
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
  return { s, a, waits, advance: (ms: number) => (now += ms) };
}

test('a steady VM is rescanned less and less often: 15 s, 30 s, 60 s … up to 240 s', async () => {
  const { waits } = await steadyScans(() => 500);
  assert.deepEqual(waits, [0, 15, 30, 60, 120, 240, 240]);
});

test('a scan that finds something else resets the pace', async () => {
  let merging = 500;
  const { s, a, advance } = await steadyScans(() => merging);
  merging = 900;
  advance(240_000);
  await s.run([a]);
  assert.equal(s.records.get(1)?.steadyScans, 0);
});

test('a VM that took no page fault and kept its RSS since its last scan is rescanned only after 30 minutes', async () => {
  let now = 0;
  const scan: ScanFn = async (targets) => ({
    pages: 1000,
    estimatedSavedBytes: 400 * PAGE,
    targets: targets.map((t) => ({ pid: (t as { pid: number }).pid, pages: 1000, mergingPages: 500 })),
  });
  const s = new ScanScheduler({ scan, scanCpuBudget: 1, pageSize: PAGE, now: () => now });
  const idle = { ...vm(1, 4), faults: 5000 };
  await s.run([idle]);
  now = UNCHANGED_RESCAN_MS - 1000;
  assert.deepEqual(s.due([idle]), [], 'unchanged: not due at 15 s nor at any doubling up to 30 min');
  assert.deepEqual(s.due([{ ...idle, faults: 5001 }]).map((v) => v.pid), [1], 'one fault more: due');
  assert.deepEqual(s.due([{ ...idle, rssBytes: idle.rssBytes + PAGE }]).map((v) => v.pid), [1], 'RSS moved: due');
  now = UNCHANGED_RESCAN_MS;
  assert.deepEqual(s.due([idle]).map((v) => v.pid), [1], 'unchanged, 30 min later: due');
});

test('a VM that exited before the scan read it leaves the round without figures, not an error', async () => {
  // Its exit is the watcher's vm_removed; the tuner used to log 'scan: process N does not exist'.
  const gone = spawnSync('true').pid!;
  const s = new ScanScheduler({ scan: createTunerScan(), scanCpuBudget: 1, pageSize: PAGE });
  const outcome = await s.run([vm(gone, 1)]);
  assert.deepEqual(
    outcome.targets.map((t) => ({ pid: t.pid, pages: t.pages, vanished: t.vanished })),
    [{ pid: gone, pages: 0, vanished: true }],
  );
  assert.equal(s.records.has(gone), false);
});
