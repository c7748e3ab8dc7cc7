import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KSMTUNED_DEFAULTS } from '../src/tune/config.js';
import { committedKiB, ksmtuned, initialKsmtunedState, type KsmtunedState } from '../src/tune/policies/ksmtuned.js';
import { adaptive, batchSleepMs, initialAdaptiveState, paceFor, repace, type AdaptiveConfig, type AdaptiveState, type PaceSample } from '../src/tune/policies/adaptive.js';
import { kernelAdvisor, advisorMaxCpu } from '../src/tune/policies/kernel-advisor.js';
import type { Observation } from '../src/tune/types.js';
import type { VmInfo } from '../src/vm/discover.js';

const KiB = 1024;
const GiB_KiB = 1024 * 1024;
const GiB = GiB_KiB * KiB;
const MiB_PAGES = 256;

function vm(pid: number, vmm: VmInfo['vmm'], rssKiB: number): VmInfo {
  return { pid, vmm, name: `vm${pid}`, startTime: pid, rssBytes: rssKiB * KiB, ksm: null };
}

type Over = Omit<Partial<Observation>, 'memory' | 'counters'> & { memory?: Partial<Observation['memory']>; counters?: Partial<Observation['counters']> };

/** A 16 GiB host; every field overridable. */
function obs(o: Over = {}): Observation {
  return {
    time: o.time ?? 0,
    memory: { memTotal: 16 * GiB, memFree: 8 * GiB, memAvailable: 12 * GiB, buffers: 0, cached: 0, swapTotal: 0, swapFree: 0, ...o.memory },
    pressure: o.pressure ?? { someAvg10: 0, fullAvg10: 0 },
    vms: o.vms ?? [],
    knobs: o.knobs ?? { run: 0, pages_to_scan: 100, sleep_millisecs: 20, advisor_mode: 'none', advisor_max_cpu: 70 },
    counters: { pages_shared: 0, pages_sharing: 0, pages_unshared: 0, pages_volatile: 0, full_scans: 0, pages_scanned: 0, ksm_zero_pages: 0, ...o.counters },
    ksmdCpuSeconds: o.ksmdCpuSeconds ?? 0,
    estimate: o.estimate === undefined ? null : o.estimate,
    cpus: 2,
    pageSize: 4096,
  };
}

test('ksmtuned: stop when memory is ample, start with decay to the minimum, boost under pressure up to the max, decay back, stop', () => {
  const s = KSMTUNED_DEFAULTS;
  let state: KsmtunedState = initialKsmtunedState();
  const step = (vms: VmInfo[], freeKiB: number) => {
    const r = ksmtuned(obs({ vms, memory: { memFree: freeKiB * KiB, buffers: 0, cached: 0 } }), state, s);
    state = r.nextState;
    return r;
  };
  const small = [vm(1, 'qemu', 2 * GiB_KiB)];
  const big = [vm(1, 'qemu', 7 * GiB_KiB), vm(2, 'firecracker', 4 * GiB_KiB), vm(3, 'cloud-hypervisor', 3 * GiB_KiB)];

  // 16 GiB: sleep = 10 × 16 GiB / 16 GiB = 10 ms; thres = 20 % of 16777216 KiB.
  let r = step(small, 12 * GiB_KiB);
  assert.deepEqual([state.total, state.sleep, state.thres], [16777216, 10, 3355443]);
  assert.deepEqual(r.decision.knobs, { run: 0 });
  assert.equal(r.reasons.at(-1), 'committed + threshold 5.2 GiB < total 16.0 GiB and free 12.0 GiB > threshold 3.2 GiB: stop ksm');
  assert.equal(state.npages, 0);

  // 14 GiB committed across three VMMs (the script would have seen only qemu), free above thres: decay to MIN.
  r = step(big, 4 * GiB_KiB);
  assert.ok(r.reasons.includes('committed 14.0 GiB, free 4.0 GiB (3 VMM processes)'), r.reasons.join('\n'));
  assert.deepEqual(r.decision.knobs, { pages_to_scan: 64, sleep_millisecs: 10, run: 1 });
  assert.ok(r.reasons.includes('free 4.0 GiB ≥ threshold 3.2 GiB: decay pages_to_scan by 50'), r.reasons.join('\n'));

  // Free below thres: boost by 300 each interval, clamped at 1250 on the fifth.
  const boosts = [364, 664, 964, 1250, 1250].map(() => step(big, 2 * GiB_KiB).decision.knobs.pages_to_scan);
  assert.deepEqual(boosts, [364, 664, 964, 1250, 1250]);
  assert.ok(step(big, 2 * GiB_KiB).reasons.includes('free 2.0 GiB < threshold 3.2 GiB: boost pages_to_scan by 300'));

  // Free at exactly thres is not below it: decay by 50.
  assert.equal(step(big, 3355443).decision.knobs.pages_to_scan, 1200);
  assert.equal(step(big, 4 * GiB_KiB).decision.knobs.pages_to_scan, 1150);

  // VMs gone and memory ample: stop; npages is kept for the next start.
  r = step([], 12 * GiB_KiB);
  assert.deepEqual(r.decision.knobs, { run: 0 });
  assert.equal(state.npages, 1150);
  assert.equal(step(big, 2 * GiB_KiB).decision.knobs.pages_to_scan, 1250);
});

const firstKsmtuned = (memTotalKiB: number, over: Over = {}, s = KSMTUNED_DEFAULTS) =>
  ksmtuned(obs({ ...over, memory: { memTotal: memTotalKiB * KiB, ...over.memory } }), initialKsmtunedState(), s);

test("ksmtuned: sleep is KSM_SLEEP_MSEC scaled by 16 GiB / MemTotal, floored at 10 ms", () => {
  assert.equal(firstKsmtuned(8 * GiB_KiB).nextState.sleep, 20);
  assert.equal(firstKsmtuned(4 * GiB_KiB).nextState.sleep, 40);
  assert.equal(firstKsmtuned(64 * GiB_KiB).nextState.sleep, 10);
  assert.equal(firstKsmtuned(64 * GiB_KiB, {}, { ...KSMTUNED_DEFAULTS, KSM_SLEEP_MSEC: 100 }).nextState.sleep, 25);
});

test('ksmtuned: thres floors at KSM_THRES_CONST', () => {
  assert.equal(firstKsmtuned(8000, { memory: { memFree: 1000 * KiB } }).nextState.thres, 2048);
});

test('ksmtuned: sleep and thres are computed once, from the first MemTotal', () => {
  const st = firstKsmtuned(8 * GiB_KiB).nextState;
  assert.equal(ksmtuned(obs({ memory: { memTotal: 64 * GiB_KiB * KiB } }), st, KSMTUNED_DEFAULTS).nextState.sleep, 20);
});

test('ksmtuned: free memory counts Buffers and Cached', () => {
  const s = KSMTUNED_DEFAULTS;
  // free = MemFree + Buffers + Cached: 1 + 1 + 2 GiB is above thres (3.2 GiB) → decay, not boost.
  const r = ksmtuned(obs({ vms: [vm(1, 'qemu', 15 * GiB_KiB)], memory: { memFree: GiB_KiB * KiB, buffers: GiB_KiB * KiB, cached: 2 * GiB_KiB * KiB } }), initialKsmtunedState(), s);
  assert.ok(r.reasons.includes('free 4.0 GiB ≥ threshold 3.2 GiB: decay pages_to_scan by 50'), r.reasons.join('\n'));
});

test('ksmtuned: exact sums on a 4 TiB host with 3.5 TiB of VMs (the script overflowed past 2 TiB)', () => {
  const total = 4 * 1024 * GiB_KiB;
  const vms = Array.from({ length: 7 }, (_, i) => vm(10 + i, i % 2 ? 'qemu' : 'crosvm', 512 * GiB_KiB));
  const o = obs({ vms, memory: { memTotal: total * KiB, memFree: 200 * GiB_KiB * KiB } });
  const r = ksmtuned(o, initialKsmtunedState(), KSMTUNED_DEFAULTS);
  assert.equal(committedKiB(o), 3758096384);
  assert.ok(r.reasons.includes('committed 3.5 TiB, free 200 GiB (7 VMM processes)'), r.reasons.join('\n'));
  assert.equal(r.nextState.thres, 858993459);
  assert.deepEqual(r.decision.knobs, { pages_to_scan: 300, sleep_millisecs: 10, run: 1 });
});

const CFG: AdaptiveConfig = { cpuBudget: 0.25, minSavingsBytes: 64 * 1024 * 1024, availablePercent: 20, pressureAvg10: 10 };
const VMS = [vm(1, 'qemu', 512 * 1024), vm(2, 'qemu', 512 * 1024)];
const est = (savedMiB: number, at = 0) => ({ at, savedPages: savedMiB * MiB_PAGES, mergingPages: 2 * savedMiB * MiB_PAGES, pages: 1024 * MiB_PAGES, volatility: 0, complete: true });

test('adaptive: with no VMs and memory not tight, ksmd stays stopped', () => {
  const r = adaptive(obs(), initialAdaptiveState(), CFG);
  assert.deepEqual([r.decision.knobs, r.reasons.at(-1)], [{ run: 0 }, 'no VMs (nor registered processes) found and memory is not tight: ksmd stays stopped']);
});

test('adaptive: without an estimate, ksmd stays stopped and every VM is to be scanned', () => {
  const r = adaptive(obs({ vms: VMS }), initialAdaptiveState(), CFG);
  assert.deepEqual([r.decision.knobs, r.decision.rescan], [{ run: 0 }, [1, 2]]);
  assert.equal(r.reasons.at(-1), 'no scan estimate yet: scan first, merge second');
});

test('adaptive: with little to save and memory not tight, ksmd stays stopped', () => {
  const r = adaptive(obs({ vms: VMS, estimate: est(10) }), initialAdaptiveState(), CFG);
  assert.deepEqual(r.decision.knobs, { run: 0 });
  assert.match(r.reasons.at(-1)!, /little to save \(< 64 MiB\) and memory is not tight/);
});

test("adaptive: zero subpages of huge pages that ksmd splits one per full scan, as much as the bar to start ksmd, are named beside the estimate, with use_zero_pages=1 as the way to free them", () => {
  const slowSplit = { hugePages: 375, zeroPages: 192000 };
  const r = adaptive(obs({ vms: VMS, estimate: { ...est(10), thpSlowSplit: slowSplit } }), initialAdaptiveState(), CFG);
  assert.deepEqual(r.reasons.slice(-2), [
    'not in it: 750.0 MiB of zero subpages in 375 huge pages, which ksmd splits only one per full scan with use_zero_pages=0 (use_zero_pages=1 frees them in its first scans)',
    'little to save (< 64 MiB) and memory is not tight: ksmd stays stopped',
  ]);
});

test('adaptive: fewer such zero subpages than the bar to start ksmd are not named', () => {
  const slowSplit = { hugePages: 2, zeroPages: 1024 };
  const r = adaptive(obs({ vms: VMS, estimate: { ...est(10), thpSlowSplit: slowSplit } }), initialAdaptiveState(), CFG);
  assert.equal(r.reasons.some((x) => x.startsWith('not in it')), false);
});

test('adaptive: little MemAvailable runs ksmd even before any estimate', () => {
  const r = adaptive(obs({ vms: VMS, memory: { memAvailable: GiB_KiB * KiB } }), initialAdaptiveState(), CFG);
  assert.equal(r.decision.knobs.run, 1);
  assert.match(r.reasons[0], /MemAvailable is 6\.3% of MemTotal \(< 20%\); no scan estimate yet, so merge anyway/);
});

test('adaptive: memory pressure (PSI) runs ksmd even with little to save', () => {
  const r = adaptive(obs({ vms: VMS, estimate: est(10), pressure: { someAvg10: 12.5, fullAvg10: 1 } }), initialAdaptiveState(), CFG);
  assert.equal(r.decision.knobs.run, 1);
  assert.ok(r.reasons.some((x) => x === 'memory pressure some avg10=12.50 (>= 10)'));
});

test('adaptive: runs at the budgeted pace, learns ksmd throughput, stops when merging flattens, restarts when the gap grows', () => {
  let state: AdaptiveState = initialAdaptiveState();
  const step = (o: Over) => {
    const r = adaptive(obs({ vms: VMS, estimate: est(400), ...o }), state, CFG);
    state = r.nextState;
    return r;
  };
  // 400 MiB saveable: start at 0.25 CPU with the initial guess of 400 k pages per CPU-second, 48 ms asleep.
  let r = step({ time: 0, counters: { full_scans: 10, pages_scanned: 1_000_000 }, ksmdCpuSeconds: 5 });
  assert.deepEqual(r.decision.knobs, { pages_to_scan: 6400, sleep_millisecs: 48, run: 1 });
  assert.match(r.reasons.at(-2)!, /400\.0 MiB left to merge: ksmd started/);
  assert.match(r.reasons.at(-1)!, /initial guess/);
  // 1 M pages in 2 CPU-seconds: 500 k pages per CPU-second, learnt.
  r = step({ time: 2000, counters: { full_scans: 11, pages_scanned: 2_000_000, pages_sharing: 10 * MiB_PAGES }, ksmdCpuSeconds: 7 });
  assert.equal(state.pagesPerCpuSecond, 500_000);
  assert.deepEqual(r.decision.knobs, { pages_to_scan: 8000, sleep_millisecs: 48, run: 1 });
  assert.match(r.reasons.at(-1)!, /500000 pages per CPU-second \(learnt\)/);
  // Merging during the second and third passes.
  r = step({ time: 4000, counters: { full_scans: 12, pages_scanned: 3_000_000, pages_sharing: 300 * MiB_PAGES }, ksmdCpuSeconds: 9 });
  assert.equal(r.decision.knobs.run, 1);
  r = step({ time: 6000, counters: { full_scans: 13, pages_scanned: 4_000_000, pages_sharing: 396 * MiB_PAGES }, ksmdCpuSeconds: 11 });
  assert.equal(r.decision.knobs.run, 1, 'still gaining');
  // A pass that adds nothing (< 0.5 % of the estimate): flattened, stop.
  r = step({ time: 8000, counters: { full_scans: 14, pages_scanned: 5_000_000, pages_sharing: 397 * MiB_PAGES }, ksmdCpuSeconds: 13 });
  assert.deepEqual(r.decision.knobs, { run: 0 });
  assert.match(r.reasons.at(-1)!, /merging flattened: the last pass added 1\.0 MiB, saved is 99\.3% of the estimate: ksmd stopped/);
  // The same estimate later: nothing new, stays stopped.
  r = step({ time: 20000, counters: { full_scans: 14, pages_sharing: 397 * MiB_PAGES }, ksmdCpuSeconds: 13 });
  assert.deepEqual(r.decision.knobs, { run: 0 });
  assert.match(r.reasons.at(-1)!, /nothing new to merge \(3\.0 MiB left, 3\.0 MiB left when ksmd last stopped\)/);
  // A new VM brings 200 MiB more: the gap grew past the margin, start again.
  r = step({ time: 21000, estimate: est(600, 21000), counters: { full_scans: 14, pages_sharing: 397 * MiB_PAGES }, ksmdCpuSeconds: 13 });
  assert.equal(r.decision.knobs.run, 1);
  assert.match(r.reasons.at(-2)!, /203\.0 MiB left to merge: ksmd started/);
});

test("adaptive: progress is the VMs' own merged pages (ksm_stat), not the host-wide count other KSM users inflate", () => {
  const withStat = (merging: number): VmInfo[] => VMS.map((v) => ({ ...v, ksm: { rmapItems: 0, zeroPages: 0, mergingPages: merging, profitBytes: 0 } }));
  // Another process has 500 MiB merged host-wide; our VMs have merged nothing yet: 400 MiB left.
  let r = adaptive(obs({ vms: withStat(0), estimate: est(400), counters: { pages_sharing: 500 * MiB_PAGES } }), initialAdaptiveState(), CFG);
  assert.equal(r.decision.knobs.run, 1);
  assert.match(r.reasons[0], /^estimate 400\.0 MiB saveable, 0\.0 MiB saved/);
  // Each VM merged 300 MiB of pages; the estimate predicts 800 MiB merging for 400 MiB saved: 300 MiB saved.
  r = adaptive(obs({ vms: withStat(300 * MiB_PAGES), estimate: est(400), counters: { pages_sharing: 500 * MiB_PAGES } }), initialAdaptiveState(), CFG);
  assert.match(r.reasons[0], /^estimate 400\.0 MiB saveable, 300\.0 MiB saved/);
});

test('adaptive: volatile pages dominating back off for a while, then ksmd is tried again', () => {
  let state: AdaptiveState = initialAdaptiveState();
  const step = (o: Over) => {
    const r = adaptive(obs({ vms: VMS, estimate: est(400), ...o }), state, CFG);
    state = r.nextState;
    return r;
  };
  step({ time: 0, counters: { full_scans: 0 } });
  step({ time: 1000, counters: { full_scans: 1 } });
  // Still merging: volatile pages alone are no reason to stop.
  assert.equal(step({ time: 2000, counters: { full_scans: 2, pages_volatile: 100_000, pages_shared: 1000, pages_sharing: 5000 } }).decision.knobs.run, 1);
  // Far from the estimate, flatness must last three passes.
  for (const fs of [3, 4]) {
    assert.equal(step({ time: fs * 1000, counters: { full_scans: fs, pages_volatile: 100_000, pages_shared: 1000, pages_sharing: 5000 } }).decision.knobs.run, 1);
  }
  const r = step({ time: 5000, counters: { full_scans: 5, pages_volatile: 100_000, pages_shared: 1000, pages_sharing: 5000 } });
  assert.deepEqual(r.decision.knobs, { run: 0 });
  assert.match(r.reasons.at(-1)!, /pages_volatile \(100000\) dominates while merging is flat after 5 passes: backing off for 30 s/);
  assert.match(step({ time: 15000, counters: { full_scans: 5, pages_sharing: 5000 } }).reasons.at(-1)!, /holding off .* 20 s left/);
  assert.equal(step({ time: 36000, counters: { full_scans: 5, pages_sharing: 5000 } }).decision.knobs.run, 1);
});

/** A run started at t=0 (ksmd CPU clock 5 s), then one 2 s interval at 6400 pages / 48 ms with `scanned` pages and `cpu` CPU-seconds. */
function afterOneInterval(scanned: number, cpu: number) {
  const knobs = { run: 1, pages_to_scan: 6400, sleep_millisecs: 48, advisor_mode: 'none', advisor_max_cpu: 70 } as const;
  const first = adaptive(obs({ vms: VMS, estimate: est(400), time: 0, counters: { full_scans: 10, pages_scanned: 1_000_000 }, ksmdCpuSeconds: 5 }), initialAdaptiveState(), CFG);
  return adaptive(
    obs({ vms: VMS, estimate: est(400), time: 2000, knobs, counters: { full_scans: 10, pages_scanned: 1_000_000 + scanned }, ksmdCpuSeconds: 5 + cpu }),
    first.nextState,
    CFG,
  );
}

test('adaptive pace: a run over its CPU budget so far gets smaller batches, to bring its average back to the budget', () => {
  // 1 CPU-second in 2 s is 0.5 CPU against 0.25: aim at 0.25 − 0.5 / 4 = 0.125 CPU at the learnt 1 M pages per
  // CPU-second, 48 ms off the CPU per batch: 1000000 × 0.125 × 0.048 / 0.875 pages.
  const r = afterOneInterval(1_000_000, 1);
  assert.deepEqual(r.decision.knobs, { pages_to_scan: 6857, sleep_millisecs: 48, run: 1 });
  assert.match(r.reasons.at(-1)!, /for 0\.125 CPU \(budget 0\.25, 0\.500 CPU so far this run\)/);
});

test('adaptive pace: a run under its CPU budget so far gets larger batches, to bring its average up to the budget', () => {
  // 0.25 CPU-s in 2 s is 0.125 CPU: aim at 0.25 + 0.25 / 4 = 0.3125 CPU at 4 M pages per CPU-second, 48 ms
  // off the CPU per batch: 4000000 × 0.3125 × 0.048 / 0.6875 pages.
  const r = afterOneInterval(1_000_000, 0.25);
  assert.deepEqual(r.decision.knobs, { pages_to_scan: 87273, sleep_millisecs: 48, run: 1 });
});

test("adaptive pace: ksmd's time off the CPU per batch is learnt from the interval (sleep rounded to jiffies, waiting for a CPU)", () => {
  // 25 batches of 6400 pages took 2 s of wall time and 0.5 CPU-s: 60 ms off the CPU per batch, not 48.
  const r = afterOneInterval(25 * 6400, 0.5);
  assert.equal(r.nextState.offSecondsPerBatch, 0.06);
  assert.match(r.reasons.at(-1)!, /, 60\.0 ms off the CPU per batch/);
});

test('adaptive pace: duty cycle within the budget, unthrottled from one CPU up', () => {
  assert.deepEqual(paceFor(0.25, 480_000), { pages_to_scan: 7680, sleep_millisecs: 48, pagesPerSecond: 120_000 });
  assert.deepEqual(paceFor(0.5, 480_000).pages_to_scan, 9600);
  assert.deepEqual(paceFor(2, 480_000), { pages_to_scan: 24_000, sleep_millisecs: 0, pagesPerSecond: 480_000 });
  const r = adaptive(obs({ vms: VMS, estimate: est(400) }), initialAdaptiveState(), { ...CFG, cpuBudget: 1 });
  assert.deepEqual(r.decision.knobs, { pages_to_scan: 20_000, sleep_millisecs: 0, run: 1 });
});

/** A running adaptive state whose run started at time 0 with ksmd's clock at 5 CPU-s, learnt at 1.3 M pages per CPU-second. */
function runningState(): AdaptiveState {
  const start = { time: 0, fullScans: 10, saved: 0, pagesScanned: 1_000_000, cpuSeconds: 5 };
  return { ...initialAdaptiveState(), pagesPerCpuSecond: 1_300_000, learnt: true, running: true, runStart: start, passes: [start], prev: start };
}
const sample = (time: number, pagesScanned: number, ksmdCpuSeconds: number, pages_to_scan: number): PaceSample => ({
  time,
  pagesScanned,
  ksmdCpuSeconds,
  knobs: { run: 1, pages_to_scan, sleep_millisecs: 48 },
});

test('adaptive pace: a throttled ksmd sleeps long enough between batches that each takes 4 ms ÷ its budget of CPU, 10 to 40 ms', () => {
  // 40 ms at 0.1 CPU and under (at most 1 s asleep), 16 at 0.25, 13.3 at 0.3, 10 from 0.4 up (at least 20 ms asleep).
  assert.deepEqual([0.01, 0.05, 0.1, 0.25, 0.3, 0.5, 0.95, 1].map(batchSleepMs), [1000, 760, 360, 48, 31, 20, 20, 0]);
});

test('adaptive pacer: when ksmd turns from checksumming to merging, its tenfold lower pages per CPU-second cut pages_to_scan at once', () => {
  // 250 ms in which ksmd spent 0.0625 CPU-s on 6250 pages (under one batch of 8667: too few to learn the off
  // time): 100 k pages per CPU-second, taken as measured, so 0.25 CPU at 48 ms off is 100000 × 0.25 × 0.048 / 0.75.
  const r = repace(runningState(), sample(500, 1_200_000, 5.125, 8667), sample(750, 1_206_250, 5.1875, 8667), 0.25);
  assert.equal(r.used, true);
  assert.equal(r.nextState.pagesPerCpuSecond, 100_000);
  assert.deepEqual(r.pace, { pages_to_scan: 1600, sleep_millisecs: 48, pagesPerSecond: 25_000 });
});

test("adaptive pacer: past the run's first second, it aims at the budget plus the run's shortfall, as decisions do", () => {
  // 2 s into the run ksmd has spent 0.3125 CPU-s: aim at 0.25 + (0.5 − 0.3125) / 2 = 0.34375 CPU, at 200 k
  // pages per CPU-second (12500 pages in 0.0625 CPU-s) and 60 ms off the CPU per batch, learnt from the window
  // (3.125 batches of 4000 in 250 ms, 62.5 ms of it on the CPU): 200000 × 0.34375 × 0.06 / 0.65625 pages.
  const r = repace(runningState(), sample(1750, 1_200_000, 5.25, 4000), sample(2000, 1_212_500, 5.3125, 4000), 0.25);
  assert.equal(r.duty, 0.34375);
  assert.equal(r.nextState.offSecondsPerBatch!.toFixed(9), '0.060000000');
  assert.deepEqual(r.pace, { pages_to_scan: 6286, sleep_millisecs: 48, pagesPerSecond: 68_752 });
});

test('adaptive pacer: a window in which ksmd ran under 20 ms of CPU is not used', () => {
  const r = repace(runningState(), sample(500, 1_200_000, 5.125, 8667), sample(750, 1_201_000, 5.140625, 8667), 0.25);
  assert.equal(r.used, false);
  assert.equal(r.pace, undefined);
});

test('adaptive pacer: from one CPU up it leaves the pace alone', () => {
  const r = repace(runningState(), sample(500, 1_200_000, 5.125, 20000), sample(750, 1_206_250, 5.1875, 20000), 1);
  assert.equal(r.used, false);
});

test('kernel-advisor: scan-time with advisor_max_cpu from the budget, the same run/stop judgement, ENOTSUP without an advisor', () => {
  assert.equal(advisorMaxCpu(0.25), 25);
  assert.equal(advisorMaxCpu(0.001), 1);
  assert.equal(advisorMaxCpu(2), 100);
  let r = kernelAdvisor(obs({ vms: VMS, estimate: est(400) }), initialAdaptiveState(), CFG);
  assert.deepEqual(r.decision.knobs, { advisor_mode: 'scan-time', advisor_max_cpu: 25, run: 1 });
  r = kernelAdvisor(obs({ vms: VMS, estimate: est(1) }), initialAdaptiveState(), CFG);
  assert.deepEqual(r.decision.knobs, { run: 0 });
  assert.throws(() => kernelAdvisor(obs({ knobs: { run: 0, pages_to_scan: 100, sleep_millisecs: 20 } }), initialAdaptiveState(), CFG), {
    code: 'ENOTSUP',
    message: /advisor_mode needs Linux 6\.8\+/,
  });
});
