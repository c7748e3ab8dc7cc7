// Scan first, merge second. ksmd runs only when the scan engine's estimate says enough can be saved (or
// memory is tight), then as fast as the CPU budget allows, and stops once merging flattens out or
// volatile pages dominate. ksmd's cost per page is learnt on this host from pages_scanned and its CPU time.
import type { KsmKnobs, Observation, PolicyFn, PolicyResult } from '../types.js';
import { vmSavedPages } from '../types.js';

export interface AdaptiveConfig {
  /** ksmd's CPU allowance in CPUs; ksmd is one thread, so anything from 1 up means unthrottled. */
  cpuBudget: number;
  minSavingsBytes: number;
  availablePercent: number;
  pressureAvg10: number;
}

interface Mark {
  time: number;
  fullScans: number;
  /** The VMs' saved pages (vmSavedPages). */
  saved: number;
  pagesScanned?: number;
  cpuSeconds: number | null;
}

export interface AdaptiveState {
  /** ksmd's throughput on this host, pages per CPU-second: a guess until learnt. */
  pagesPerCpuSecond: number;
  learnt: boolean;
  /**
   * ksmd's time off the CPU per batch while throttled, in seconds: its sleep as the kernel rounds it to
   * jiffies, plus time waiting for a CPU on a busy host. Learnt like the throughput; sleep_millisecs until then.
   */
  offSecondsPerBatch?: number;
  prev?: Mark;
  running: boolean;
  /** Where the current run started, and the last time full_scans moved during it. */
  runStart?: Mark;
  /** Marks taken when full_scans had moved, newest last (a few). */
  passes?: Mark[];
  /** Estimate minus saved pages when ksmd was last stopped: a restart needs the gap to have grown. */
  gapAtStop: number;
  holdUntil?: number;
  backoffs: number;
}

/** Unthrottled ksmd merged ≈480 k pages per CPU-second on our machines (docs/kernel.md, Cost); start a bit below. */
export const DEFAULT_PAGES_PER_CPU_SECOND = 400_000;
/** ksmd sleeps at least this long between batches when the budget is under one CPU. */
export const BATCH_SLEEP_MS = 20;
/**
 * The CPU a throttled ksmd's batch takes at a budget: 4 ms ÷ the budget, from 10 ms (at 0.4 CPU and up)
 * to 40 ms (at 0.1 CPU and under). Each batch after a sleep starts with ksmd's working set out of the
 * cache, so fewer, longer batches cost less CPU for the same merging: on the tuner bench at 0.1 CPU,
 * ksmd took a median 1.66 CPU-seconds to 95 % with 40 ms batches, 1.76 with 20 and 1.91 with 10 (9, 6
 * and 12 runs, load 0.8-4.7, 2026-12-01). At 0.25 CPU, where a run lasts 6 s, 40 ms batches overran
 * the budget by up to 13.6 %: the pacer's corrections come every 250 ms, and each mis-sized batch is
 * bigger. So the batch is long only where runs are long (docs/kernel.md, Cost).
 */
export function batchCpuMs(budget: number): number {
  return Math.min(40, Math.max(10, 4 / budget));
}

/** ksmd never sleeps longer than this between batches: the learnt time off per batch is capped at MAX_OFF_SECONDS. */
const MAX_BATCH_SLEEP_MS = 1000;

/** ksmd's sleep between batches for a budget under one CPU: long enough that a batch at that duty takes batchCpuMs(budget). */
export function batchSleepMs(budget: number): number {
  if (budget >= 1) return 0;
  return Math.min(MAX_BATCH_SLEEP_MS, Math.max(BATCH_SLEEP_MS, Math.round((batchCpuMs(budget) * (1 - budget)) / budget)));
}
/** Passes that added less than this share of the estimate mean merging has flattened out. */
const FLAT_SHARE = 0.005;
/** Savings this close to the estimate count as reached. */
const REACHED_SHARE = 0.95;
const MAX_MARKS = 8;
const MIN_CPU_SAMPLE_SECONDS = 0.02;
const HOLD_MS = 30_000;
/** A throttled ksmd never runs more than this share of a CPU, nor longer than MAX_BATCH_SECONDS a batch. */
const MAX_DUTY = 0.95;
const MAX_BATCH_SECONDS = 0.25;
const MAX_OFF_SECONDS = 1;
/** The run's average is judged from this long into it. */
const MIN_RUN_SECONDS = 1;
const MAX_HOLD_MS = 600_000;

export function initialAdaptiveState(): AdaptiveState {
  return { pagesPerCpuSecond: DEFAULT_PAGES_PER_CPU_SECOND, learnt: false, running: false, gapAtStop: 0, backoffs: 0 };
}

function mark(o: Observation): Mark {
  const m: Mark = { time: o.time, fullScans: o.counters.full_scans, saved: vmSavedPages(o), cpuSeconds: o.ksmdCpuSeconds };
  if (o.counters.pages_scanned !== undefined) m.pagesScanned = o.counters.pages_scanned;
  return m;
}

/** Where ksmd's clocks stood: a decision's mark, or the pacer's sample between decisions. */
interface Clocks {
  time: number;
  pagesScanned?: number;
  cpuSeconds: number | null;
}

/** ksmd's pages per CPU-second between two readings, clamped to what is plausible; undefined when too little ran. */
function rateSample(prev: Clocks | undefined, now: Clocks): number | undefined {
  if (prev?.pagesScanned === undefined || now.pagesScanned === undefined || prev.cpuSeconds === null || now.cpuSeconds === null) return undefined;
  const cpu = now.cpuSeconds - prev.cpuSeconds;
  const pages = now.pagesScanned - prev.pagesScanned;
  if (cpu < MIN_CPU_SAMPLE_SECONDS || pages <= 0) return undefined;
  return Math.min(Math.max(pages / cpu, 10_000), 20_000_000);
}

/**
 * ksmd's time off the CPU per batch between two readings: wall time minus CPU time over the batches
 * (pages_scanned ÷ pages_to_scan, at the knobs in force). Only while throttled (run=1, a sleep, a batch).
 */
function offSample(prev: Clocks | undefined, now: Clocks, k: KsmKnobs): number | undefined {
  if (prev?.pagesScanned === undefined || now.pagesScanned === undefined || prev.cpuSeconds === null || now.cpuSeconds === null) return undefined;
  if (k.run !== 1 || !(k.sleep_millisecs > 0) || !(k.pages_to_scan > 0)) return undefined;
  const cpu = now.cpuSeconds - prev.cpuSeconds;
  const wall = (now.time - prev.time) / 1000;
  const batches = (now.pagesScanned - prev.pagesScanned) / k.pages_to_scan;
  if (cpu < MIN_CPU_SAMPLE_SECONDS || batches < 2 || !(wall > cpu)) return undefined;
  return Math.min(Math.max((wall - cpu) / batches, k.sleep_millisecs / 1000), MAX_OFF_SECONDS);
}

/**
 * Folds the last interval's wall time, ksmd CPU time and batches into ksmd's learnt time off the CPU per
 * batch. Only while running.
 */
function learnOff(state: AdaptiveState, now: Mark, o: Observation): number | undefined {
  if (!state.running) return state.offSecondsPerBatch;
  const sample = offSample(state.prev, now, o.knobs);
  if (sample === undefined) return state.offSecondsPerBatch;
  return state.offSecondsPerBatch === undefined ? sample : 0.5 * state.offSecondsPerBatch + 0.5 * sample;
}

/**
 * The share of a CPU ksmd should use over the next interval so that its average over the whole run comes
 * back to the budget: the budget, plus what the run is short of it (or minus what it is over), made up
 * over two intervals; within [budget ÷ 4, min(3 × budget, 0.95)]. The budget itself at the start of a
 * run, when ksmd was not running as set (run=0 in sysfs) or its CPU clock is unreadable.
 */
export function dutyFor(budget: number, o: Pick<Observation, 'time' | 'ksmdCpuSeconds' | 'knobs'>, state: AdaptiveState, prevTime: number | undefined): { duty: number; runAverage?: number } {
  if (budget >= 1) return { duty: 1 };
  const start = state.running ? state.runStart : undefined;
  const cpu = o.ksmdCpuSeconds;
  if (start === undefined || start.cpuSeconds === null || cpu === null || o.knobs.run !== 1) return { duty: budget };
  const elapsed = (o.time - start.time) / 1000;
  if (!(elapsed >= MIN_RUN_SECONDS)) return { duty: budget };
  const spent = cpu - start.cpuSeconds;
  const horizon = 2 * Math.max(1, prevTime === undefined ? 2 : (o.time - prevTime) / 1000);
  const duty = budget + (budget * elapsed - spent) / horizon;
  return { duty: Math.min(Math.max(duty, budget / 4), Math.min(3 * budget, MAX_DUTY)), runAverage: spent / elapsed };
}

/** What the pacer reads between decisions (Observer.paceSample): ksmd's clocks and the knobs in force. */
export interface PaceSample {
  /** The observer's monotonic ms clock, as Observation.time. */
  time: number;
  pagesScanned: number | undefined;
  ksmdCpuSeconds: number | null;
  knobs: KsmKnobs;
}

/** How often the Tuner's pacer corrects the pace between decisions while ksmd runs under a budget below one CPU. */
export const PACE_MS = 250;

/**
 * The pacer's step between decisions, while a run goes on under a budget below one CPU. ksmd's pages per
 * CPU-second change by an order of magnitude from a pass that only checksums pages to one that merges them
 * (1.3 M against 50–150 k measured here; docs/kernel.md), faster than decisions every 2 s follow: a batch
 * sized for the first pass then runs ksmd at two or three times its budget for seconds. So over each
 * PACE_MS window the throughput is taken as measured (not smoothed), the time off the CPU per batch is
 * learnt as at a decision, and pages_to_scan is set for the duty that brings the run's average back to the
 * budget. `used` is false when the window held too little CPU time to learn from: the caller keeps its
 * earlier sample and tries again with a longer window.
 */
export function repace(state: AdaptiveState, prev: PaceSample, now: PaceSample, budget: number): { used: boolean; nextState: AdaptiveState; pace?: Pace; duty?: number } {
  if (!state.running || budget >= 1 || now.knobs.run !== 1) return { used: false, nextState: state };
  const p = { time: prev.time, pagesScanned: prev.pagesScanned, cpuSeconds: prev.ksmdCpuSeconds };
  const n = { time: now.time, pagesScanned: now.pagesScanned, cpuSeconds: now.ksmdCpuSeconds };
  const rate = rateSample(p, n);
  if (rate === undefined) return { used: false, nextState: state };
  const next: AdaptiveState = { ...state, pagesPerCpuSecond: rate, learnt: true };
  const off = offSample(p, n, prev.knobs);
  if (off !== undefined) next.offSecondsPerBatch = state.offSecondsPerBatch === undefined ? off : 0.5 * state.offSecondsPerBatch + 0.5 * off;
  const { duty } = dutyFor(budget, now, next, prev.time);
  return { used: true, nextState: next, pace: paceFor(duty, rate, next.offSecondsPerBatch, batchSleepMs(budget)), duty };
}

/** Folds the latest pages_scanned / CPU-time delta into the learnt throughput. */
function learn(state: AdaptiveState, now: Mark): { rate: number; learnt: boolean } {
  const sample = rateSample(state.prev, now);
  if (sample === undefined) return { rate: state.pagesPerCpuSecond, learnt: state.learnt };
  const rate = state.learnt ? 0.5 * state.pagesPerCpuSecond + 0.5 * sample : sample;
  return { rate, learnt: true };
}

/** Memory is tight when little is available or tasks stall on memory (PSI). */
export function memoryTight(o: Pick<Observation, 'memory' | 'pressure'>, c: Pick<AdaptiveConfig, 'availablePercent' | 'pressureAvg10'>): string | undefined {
  const availablePct = (100 * o.memory.memAvailable) / o.memory.memTotal;
  if (availablePct < c.availablePercent) return `MemAvailable is ${availablePct.toFixed(1)}% of MemTotal (< ${c.availablePercent}%)`;
  if (o.pressure !== null && o.pressure.someAvg10 >= c.pressureAvg10) {
    return `memory pressure some avg10=${o.pressure.someAvg10.toFixed(2)} (>= ${c.pressureAvg10})`;
  }
  return undefined;
}

export interface Pace {
  pages_to_scan: number;
  sleep_millisecs: number;
  /** Pages per wall-clock second this pace gives. */
  pagesPerSecond: number;
}

/**
 * pages_to_scan / sleep_millisecs that keep ksmd at `duty` CPUs given its throughput and its time off
 * the CPU per batch (the sleep until learnt). The sleep is the budget's (batchSleepMs), not the duty's:
 * the time off learnt is the time off at that sleep, and a changed sleep wakes ksmd at once.
 */
export function paceFor(duty: number, pagesPerCpuSecond: number, offSecondsPerBatch?: number, sleepMs = batchSleepMs(duty)): Pace {
  if (duty >= 1) {
    const pages = Math.max(100, Math.round(pagesPerCpuSecond * 0.05));
    return { pages_to_scan: pages, sleep_millisecs: 0, pagesPerSecond: pagesPerCpuSecond };
  }
  // A batch of n pages costs n/P CPU-seconds, then ksmd is off the CPU for s: duty = (n/P) / (n/P + s).
  const off = offSecondsPerBatch ?? sleepMs / 1000;
  const wanted = Math.round((pagesPerCpuSecond * duty * off) / (1 - duty));
  const pages = Math.max(1, Math.min(wanted, Math.round(pagesPerCpuSecond * MAX_BATCH_SECONDS)));
  return { pages_to_scan: pages, sleep_millisecs: sleepMs, pagesPerSecond: Math.round(pages / (pages / pagesPerCpuSecond + off)) };
}

const MiB = 1024 * 1024;
const fmtMiB = (pages: number, pageSize: number) => `${((pages * pageSize) / MiB).toFixed(1)} MiB`;

export interface Gate {
  run: boolean;
  reasons: string[];
  rescan: number[];
  nextState: AdaptiveState;
}

/** The run/stop half of the adaptive policy, shared with kernel-advisor (which leaves the pace to the kernel). */
export function gate(o: Observation, state: AdaptiveState, c: AdaptiveConfig): Gate {
  const now = mark(o);
  const { rate, learnt } = learn(state, now);
  const off = learnOff(state, now, o);
  const base: AdaptiveState = { ...state, pagesPerCpuSecond: rate, learnt, prev: now };
  if (off !== undefined) base.offSecondsPerBatch = off;
  const reasons: string[] = [];
  const tight = memoryTight(o, c);
  const est = o.estimate;
  const ps = o.pageSize;

  const stop = (why: string, extra: Partial<AdaptiveState> = {}, rescan: number[] = []): Gate => {
    reasons.push(why);
    const next: AdaptiveState = { ...base, running: false, ...extra };
    delete next.runStart;
    delete next.passes;
    return { run: false, reasons, rescan, nextState: next };
  };
  const go = (why: string): Gate => {
    reasons.push(why);
    if (state.running && state.runStart !== undefined) {
      const marks = state.passes ?? [];
      const moved = marks.length === 0 || marks[marks.length - 1].fullScans !== now.fullScans;
      const passes = moved ? [...marks, now].slice(-MAX_MARKS) : marks;
      return { run: true, reasons, rescan: [], nextState: { ...base, running: true, runStart: state.runStart, passes } };
    }
    const next: AdaptiveState = { ...base, running: true, runStart: now, passes: [now] };
    delete next.holdUntil;
    return { run: true, reasons, rescan: [], nextState: next };
  };

  if (est === null) {
    if (o.vms.length === 0 && !tight) return stop('no VMs (nor registered processes) found and memory is not tight: ksmd stays stopped');
    if (tight) return go(`${tight}; no scan estimate yet, so merge anyway`);
    return stop('no scan estimate yet: scan first, merge second', {}, o.vms.map((vm) => vm.pid));
  }
  const saved = now.saved;
  const gap = Math.max(0, est.savedPages - saved);
  reasons.push(`estimate ${fmtMiB(est.savedPages, ps)} saveable, ${fmtMiB(saved, ps)} saved (${est.complete ? 'all VMs scanned' : 'scans pending'})`);
  // Not in the estimate, and worth saying when it is as much as the estimate could start ksmd for: fresh
  // VMs' untouched RAM in huge pages of zeros (docs/savings.md).
  const slow = est.thpSlowSplit;
  if (slow !== undefined && slow.zeroPages * ps >= c.minSavingsBytes) {
    reasons.push(
      `not in it: ${fmtMiB(slow.zeroPages, ps)} of zero subpages in ${slow.hugePages} huge pages, which ksmd splits only one per full scan with use_zero_pages=0 (use_zero_pages=1 frees them in its first scans)`,
    );
  }
  if (!tight && est.savedPages * ps < c.minSavingsBytes) {
    return stop(`little to save (< ${(c.minSavingsBytes / MiB).toFixed(0)} MiB) and memory is not tight: ksmd stays stopped`, { gapAtStop: gap });
  }
  if (tight) reasons.push(tight);

  if (state.running && state.runStart !== undefined) {
    const passes = now.fullScans - state.runStart.fullScans;
    // The first full_scans tick may end a partial pass, and merges start in the second real pass, so
    // gains are judged from two ticks into the run. Near the estimate one flat pass is enough; short
    // of it, three (smart_scan may skip pages for a pass or two before merging resumes: docs/kernel.md).
    const need = saved >= REACHED_SHARE * est.savedPages ? 1 : 3;
    const ref = (state.passes ?? [])
      .filter((m) => m.fullScans - state.runStart!.fullScans >= 2 && now.fullScans - m.fullScans >= need)
      .at(-1);
    if (ref !== undefined) {
      const gained = saved - ref.saved;
      if (gained <= FLAT_SHARE * est.savedPages) {
        const k = o.counters;
        // Flat because pages keep changing under ksmd (its counter, or the scans' own count): try later.
        const volatileDominates =
          (k.pages_volatile > k.pages_shared + k.pages_sharing && k.pages_volatile * ps >= c.minSavingsBytes / 4) || est.volatility > 0.5;
        if (volatileDominates) {
          const hold = Math.min(HOLD_MS * 2 ** state.backoffs, MAX_HOLD_MS);
          // After the hold, any sizeable gap is worth another try: the pages may have settled.
          return stop(`pages_volatile (${k.pages_volatile}) dominates while merging is flat after ${passes} passes: backing off for ${hold / 1000} s`, {
            gapAtStop: 0,
            holdUntil: o.time + hold,
            backoffs: state.backoffs + 1,
          });
        }
        const share = est.savedPages > 0 ? (100 * saved) / est.savedPages : 100;
        const span = now.fullScans - ref.fullScans === 1 ? 'the last pass' : `the last ${now.fullScans - ref.fullScans} passes`;
        return stop(`merging flattened: ${span} added ${fmtMiB(Math.max(0, gained), ps)}, saved is ${share.toFixed(1)}% of the estimate: ksmd stopped (merged pages stay merged)`, {
          gapAtStop: gap,
          backoffs: 0,
        });
      }
    }
    return go(`ksmd working: ${passes} full passes so far this run`);
  }

  if (state.holdUntil !== undefined && o.time < state.holdUntil && !tight) {
    return stop(`holding off after volatile pages dominated, ${Math.ceil((state.holdUntil - o.time) / 1000)} s left`, { holdUntil: state.holdUntil });
  }
  const margin = Math.max(c.minSavingsBytes / ps / 4, 0.02 * est.savedPages);
  if (tight || gap > state.gapAtStop + margin) {
    return go(`${fmtMiB(gap, ps)} left to merge: ksmd started`);
  }
  return stop(`nothing new to merge (${fmtMiB(gap, ps)} left, ${fmtMiB(state.gapAtStop, ps)} left when ksmd last stopped): ksmd stays stopped`, { gapAtStop: state.gapAtStop });
}

export const adaptive: PolicyFn<AdaptiveState, AdaptiveConfig> = (o, state, c): PolicyResult<AdaptiveState> => {
  const g = gate(o, state, c);
  if (!g.run) return { decision: { knobs: { run: 0 }, rescan: g.rescan }, reasons: g.reasons, nextState: g.nextState };
  const budget = Math.min(c.cpuBudget, 1);
  const { duty, runAverage } = dutyFor(budget, o, g.nextState, state.prev?.time);
  const off = g.nextState.offSecondsPerBatch;
  const pace = paceFor(duty, g.nextState.pagesPerCpuSecond, off, batchSleepMs(budget));
  const perPass = o.estimate?.pages ?? 0;
  const eta = perPass > 0 ? ` (one pass over ${perPass} pages ≈ ${(perPass / pace.pagesPerSecond).toFixed(1)} s)` : '';
  const share = runAverage === undefined ? `${budget} CPU` : `${duty.toFixed(3)} CPU (budget ${budget}, ${runAverage.toFixed(3)} CPU so far this run)`;
  const offText = off === undefined || budget >= 1 ? '' : `, ${(off * 1000).toFixed(1)} ms off the CPU per batch`;
  g.reasons.push(
    `pace ${pace.pages_to_scan} pages / ${pace.sleep_millisecs} ms for ${share} at ${Math.round(g.nextState.pagesPerCpuSecond)} pages per CPU-second (${g.nextState.learnt ? 'learnt' : 'initial guess'})${offText}${eta}`,
  );
  return {
    decision: { knobs: { pages_to_scan: pace.pages_to_scan, sleep_millisecs: pace.sleep_millisecs, run: 1 }, rescan: g.rescan },
    reasons: g.reasons,
    nextState: g.nextState,
  };
};
