// The tuner policies side by side on the same generated workload: fresh guests (src/workload's layout:
// a common image, unique and zero pages, marked mergeable as QEMU marks guest RAM) for each driver, timed
// until 95 % of what the scan says can merge has merged, with ksmd's CPU over that time. The first row is
// ksmd unthrottled (20000 pages / 0 ms): the reference each budgeted row is held to. ksmd's own speed
// moves on this VM: the reference's CPU-seconds went from 1.26 to 2.31 within one quiet session, and from
// 1.60 to 2.30 between two runs seconds apart. So the full bench runs the reference first, right before each
// adaptive row and last, and holds each adaptive row to the mean of the runs just before and just after it
// (a paired design, as scripts/scan-ab.sh pairs the scan); the table's row is the run of median CPU. Every
// knob is put back.
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Ksm, ksmOptionsFromEnv } from '../ksm/ksm.js';
import type { KsmSettings } from '../ksm/knobs.js';
import { PAGE_SIZE, type Region } from '../region.js';
import { scan } from '../scan/scan.js';
import { Tuner } from '../tune/tuner.js';
import { defaultConfig } from '../tune/config.js';
import { benchBaseline, disposeGuests, holdKnobs, ownSavedPages, selfMergingPages } from './estimate.js';
import { guestRegions, type GuestSizes } from '../workload/layout.js';
import { totalSavedPages, type SavedPages } from '../ksm/savings.js';
import { findKsmd } from '../host/ksmd.js';
import { readProcText } from '../host/procfs.js';
import { batchScheduling, batchUnlessChosen } from '../host/scheduling.js';

export interface TunerRow {
  policy: string;
  /** The CPU budget the policy was given (adaptive, kernel-advisor), or null. */
  budget: number | null;
  seconds_to_95: number | null;
  /** ksmd's CPU time from the driver's start to 95 % (or the end of its time). */
  ksmd_cpu_seconds: number;
  /** ksmd_cpu_seconds ÷ that wall time: the share of a CPU ksmd used from the driver's start. */
  ksmd_cpu_average: number;
  /**
   * When the driver first set run=1, in seconds from its start: 0 for a fixed pace, the scan and first
   * decision for a tuner (scan first, merge second); null if it never did.
   */
  ksmd_started_seconds: number | null;
  /** ksmd_cpu_seconds ÷ the wall time from ksmd_started_seconds on: the share of a CPU ksmd used while it ran. */
  ksmd_run_cpu_average: number | null;
  /** Time ksmd spent runnable but waiting for a CPU over the run (schedstat): how contended the host was. */
  ksmd_wait_seconds: number | null;
  /** ksm_merging_pages of the guests when the policy reached 95 % (or its time ran out). */
  merging_pages: number;
  predicted_merging_pages: number;
  /** What the guests got back when the row ended, src/ksm/savings.ts's definition (ownSavedPages), in bytes. */
  saved_bytes: number;
  saved_parts_pages: SavedPages;
  /** What the scan says merging frees. */
  achievable_bytes: number;
}

/** The budget targets (issue 14): each budgeted row against the unthrottled row of the same run. */
export interface BudgetCheck {
  policy: string;
  budget: number;
  /** ksmd's average CPU while it ran (from the tuner's first run=1) over budget, minus one, in % (target within ±10 %). */
  budget_error_percent: number;
  /** The same from the tuner's start, its scan before ksmd runs included. */
  budget_error_percent_from_start: number;
  /** The unthrottled reference this row is held to: the mean of the runs just before and after it. */
  reference: ReferenceRun;
  /** 1.2 × the reference's ksmd CPU-s ÷ budget: the most time to 95 % may take. */
  bound_seconds: number;
  within_budget: boolean;
  within_bound: boolean;
  /** At budget 1 only: time to 95 % ÷ the reference's time (target ≤ 1.3). */
  vs_unthrottled: number | null;
  /**
   * ksmd CPU-seconds to 95 % ÷ the reference's: the time bound per CPU-second (≤ 1.2 is the bound
   * met had ksmd got all of its budget), which holds where a busy host keeps ksmd below its budget.
   */
  cpu_vs_unthrottled: number;
}

/** One run of the unthrottled reference, or the mean of two. */
export interface ReferenceRun {
  seconds_to_95: number | null;
  ksmd_cpu_seconds: number;
}

/** A run of the reference and where it ran: before the other row of that index (the count of them: after the last). */
export interface PlacedReference extends ReferenceRun {
  slot: number;
}

export interface TunerResult {
  workload: string;
  /** Every run of the unthrottled reference, in order; the row shown is the one of median CPU (referenceRow). */
  unthrottled_runs: PlacedReference[];
  /** /proc/loadavg's 1-minute figure before and after the section: this host may be shared. */
  load_average: [number, number];
  rows: TunerRow[];
  budgets: BudgetCheck[];
}

export interface TunerBenchOptions {
  quick: boolean;
  log: (line: string) => void;
  /** Budgets the adaptive policy runs at (default: 0.25 under --quick, else 0.1, 0.25 and 1). */
  budgets?: number[];
  /** Rows to run, by the start of their label (default all): 'unthrottled', 'kernel defaults', 'ksmtuned', 'kernel-advisor', 'adaptive'. */
  only?: string[];
  /** Divides ksmtuned's 60 s monitor interval (default 10 under --quick, else 1); this favours ksmtuned. */
  timeScale?: number;
  /** Guests and sizes (default 4 × 16/4/1 MiB under --quick, 4 × 256/64/8 MiB). */
  sizes?: GuestSizes;
  /**
   * Run the unthrottled reference first, right before each adaptive row and last, and hold each adaptive row
   * to the runs beside it (default, except under --quick: once, first, every row held to it).
   */
  bracket?: boolean;
  /** Run under SCHED_BATCH, as `pagefuse tune` does (default true); false keeps this process's policy, to compare. */
  batch?: boolean;
}

interface Driver {
  policy: string;
  budget: number | null;
  /** Starts driving ksmd over the guests, calling `ran` when it first sets run=1; returns how to stop. */
  start(ksm: Ksm, guests: Region[], ran: () => void): Promise<() => Promise<void>>;
}

/**
 * The real KSM control (a Ksm, so the tuner takes the host lock and guards the knobs as it does in service)
 * that says when run=1 is written. The decision event that reports it comes later: after the write the
 * tuner reads what the VMs have saved, a walk of their page maps that took 0.2 s at ksmd's start here.
 */
class WatchedKsm extends Ksm {
  constructor(private readonly onRun: () => void) {
    super(ksmOptionsFromEnv());
  }

  override async configure(...args: Parameters<Ksm['configure']>): Promise<KsmSettings> {
    const settings = await super.configure(...args);
    if (args[0].run === 1) this.onRun();
    return settings;
  }
}

function tunerDriver(label: string, budget: number | null, make: (ksm: Ksm) => Tuner): Driver {
  return {
    policy: label,
    budget,
    async start(_ksm, guests, ran) {
      const t = make(new WatchedKsm(ran));
      t.on('error', () => undefined); // a failed decision shows as a slower row, not a crash
      for (const g of guests) t.register(g);
      await t.start();
      return () => t.stop();
    },
  };
}

const fixedPace = (policy: string, pages: number, ms: number): Driver => ({
  policy,
  budget: null,
  async start(ksm, _guests, ran) {
    await ksm.configure({ pages_to_scan: pages, sleep_millisecs: ms, run: 1 });
    ran();
    return async () => undefined;
  },
});

function drivers(quick: boolean, budgets: number[], timeScale: number): Driver[] {
  // ksmtuned only starts ksmd when free memory is under KSM_THRES_COEF % of RAM; 100 declares the host
  // loaded so it runs at all.
  const ksmtuned = defaultConfig();
  ksmtuned.ksmtuned.KSM_THRES_COEF = 100;
  // pagefuse's policies leave ksmd stopped below minSavingsBytes (64 MiB): the quick workload offers 52 MiB.
  const minMiB = quick ? 16 : 64;
  const scanFirst = { ...defaultConfig(), minSavingsBytes: minMiB * 1024 * 1024 };
  return [
    fixedPace('unthrottled ksmd (20000 pages / 0 ms)', 20000, 0),
    fixedPace('kernel defaults (100 pages / 20 ms)', 100, 20),
    tunerDriver(`ksmtuned (KSM_THRES_COEF=100, interval ${60 / timeScale} s)`, null, (ksm) =>
      new Tuner({ policy: 'ksmtuned', config: ksmtuned, intervalMs: 60_000 / timeScale, ksm }),
    ),
    tunerDriver(`kernel-advisor (scan-time, min ${minMiB} MiB)`, 0.25, (ksm) => new Tuner({ policy: 'kernel-advisor', config: scanFirst, cpuBudget: 0.25, ksm })),
    ...budgets.map((b) => tunerDriver(`adaptive (${b} CPU, min ${minMiB} MiB)`, b, (ksm) => new Tuner({ policy: 'adaptive', config: scanFirst, cpuBudget: b, ksm }))),
  ];
}

/** ksmd's CPU time and its time runnable but waiting for a CPU (schedstat's first two fields), in seconds. */
async function ksmdTimes(pid: number | undefined): Promise<{ cpu: number; wait: number | undefined }> {
  if (pid === undefined) return { cpu: 0, wait: undefined };
  const text = await readProcText('/proc', pid, 'schedstat');
  const f = text?.trim().split(/\s+/).map(Number) ?? [];
  return { cpu: (f[0] ?? 0) / 1e9, wait: f[1] === undefined ? undefined : f[1] / 1e9 };
}

async function runDriver(ksm: Ksm, driver: Driver, sizes: GuestSizes, capS: number, ksmdPid: number | undefined): Promise<TunerRow> {
  await ksm.configure({ ...benchBaseline((await ksm.read()).settings), run: 0, pages_to_scan: 100, sleep_millisecs: 20 });
  const guests = guestRegions(sizes);
  try {
    const estimate = await scan(guests, { mode: 'exact' });
    const predicted = estimate.mergingPages;
    for (const g of guests) g.advise('mergeable');
    const t0Times = await ksmdTimes(ksmdPid);
    const t0 = performance.now();
    let ranAt: number | null = null;
    const stop = await driver.start(ksm, guests, () => {
      ranAt ??= performance.now();
    });
    let at95: number | null = null;
    let merging = 0;
    let end = { cpu: 0, wait: undefined as number | undefined };
    let endAt = t0;
    try {
      while ((performance.now() - t0) / 1000 < capS) {
        await sleep(100);
        merging = await selfMergingPages();
        if (merging >= 0.95 * predicted) {
          endAt = performance.now();
          end = await ksmdTimes(ksmdPid);
          at95 = (endAt - t0) / 1000;
          break;
        }
      }
      if (at95 === null) {
        endAt = performance.now();
        end = await ksmdTimes(ksmdPid);
      }
    } finally {
      await stop();
    }
    const parts = await ownSavedPages();
    const cpu = end.cpu - t0Times.cpu;
    const wall = (endAt - t0) / 1000;
    // ranAt is set from the driver's callbacks: TypeScript cannot see that, so it is read through a cast.
    const started = ranAt as number | null;
    const runWall = started === null ? 0 : (endAt - started) / 1000;
    return {
      policy: driver.policy,
      budget: driver.budget,
      seconds_to_95: at95 === null ? null : Number(at95.toFixed(2)),
      ksmd_cpu_seconds: Number(cpu.toFixed(3)),
      ksmd_cpu_average: Number((wall > 0 ? cpu / wall : 0).toFixed(3)),
      ksmd_started_seconds: started === null ? null : Number(((started - t0) / 1000).toFixed(2)),
      ksmd_run_cpu_average: started === null || !(runWall > 0) ? null : Number((cpu / runWall).toFixed(3)),
      ksmd_wait_seconds: end.wait === undefined || t0Times.wait === undefined ? null : Number((end.wait - t0Times.wait).toFixed(3)),
      merging_pages: merging,
      predicted_merging_pages: predicted,
      saved_bytes: totalSavedPages(parts) * PAGE_SIZE,
      saved_parts_pages: parts,
      achievable_bytes: estimate.estimatedSavedBytes,
    };
  } finally {
    await disposeGuests(ksm, guests);
  }
}

/** The reference run of median ksmd CPU-seconds (of an even count, the lower middle: the stricter bound). */
export function referenceRow<T extends ReferenceRun>(runs: readonly T[]): T {
  if (runs.length === 0) throw new Error('referenceRow: no runs');
  const sorted = [...runs].sort((a, b) => a.ksmd_cpu_seconds - b.ksmd_cpu_seconds);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

/**
 * Where the reference runs go among `count` other rows, as the index of the row each runs before (`count`:
 * after the last), in order: first; with `bracket`, also right before each of the rows `bracketed` and after
 * the last row, so that each of those rows has a run just before and just after it.
 */
export function referenceSlots(count: number, bracketed: readonly number[], bracket: boolean): number[] {
  if (!bracket) return [0];
  return [...new Set([0, ...bracketed, count])].sort((a, b) => a - b);
}

/**
 * The reference the row at index `position` (among the other rows) is held to: the mean of the run just
 * before it and the run just after it, or the one of them there is. The time is null if either was.
 */
export function bracketingReference(runs: readonly PlacedReference[], position: number): ReferenceRun | undefined {
  const before = runs.filter((r) => r.slot <= position).at(-1);
  const after = runs.find((r) => r.slot > position);
  const pair = [before, after].filter((r): r is PlacedReference => r !== undefined);
  if (pair.length === 0) return undefined;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const times = pair.map((r) => r.seconds_to_95);
  return {
    seconds_to_95: times.some((t) => t === null) ? null : Number(mean(times as number[]).toFixed(3)),
    ksmd_cpu_seconds: Number(mean(pair.map((r) => r.ksmd_cpu_seconds)).toFixed(3)),
  };
}

/**
 * Each adaptive row's budget figures against its reference: `references` by policy label (the runs beside
 * it), else the unthrottled row's. None without a reference that reached 95 %.
 */
export function budgetChecks(rows: readonly TunerRow[], references: ReadonlyMap<string, ReferenceRun> = new Map()): BudgetCheck[] {
  const free = rows.find((r) => r.policy.startsWith('unthrottled'));
  return rows
    .filter((r) => r.policy.startsWith('adaptive') && r.budget !== null)
    .flatMap((r) => {
      const ref = references.get(r.policy) ?? free;
      if (ref === undefined || ref.seconds_to_95 === null) return [];
      const budget = r.budget!;
      const errorPct = ((r.ksmd_run_cpu_average ?? 0) / Math.min(budget, 1) - 1) * 100;
      const fromStartPct = (r.ksmd_cpu_average / Math.min(budget, 1) - 1) * 100;
      const bound = (1.2 * ref.ksmd_cpu_seconds) / Math.min(budget, 1);
      return [
        {
          policy: r.policy,
          budget,
          budget_error_percent: Number(errorPct.toFixed(1)),
          budget_error_percent_from_start: Number(fromStartPct.toFixed(1)),
          reference: { seconds_to_95: ref.seconds_to_95, ksmd_cpu_seconds: ref.ksmd_cpu_seconds },
          bound_seconds: Number(bound.toFixed(2)),
          within_budget: Math.abs(errorPct) <= 10,
          within_bound: r.seconds_to_95 !== null && r.seconds_to_95 <= bound,
          vs_unthrottled: budget >= 1 && r.seconds_to_95 !== null ? Number((r.seconds_to_95 / ref.seconds_to_95).toFixed(2)) : null,
          cpu_vs_unthrottled: Number((r.ksmd_cpu_seconds / ref.ksmd_cpu_seconds).toFixed(2)),
        },
      ];
    });
}

export async function benchTuner(options: TunerBenchOptions): Promise<TunerResult> {
  const sizes: GuestSizes =
    options.sizes ?? (options.quick ? { guests: 4, commonMiB: 16, uniqueMiB: 4, zeroMiB: 1 } : { guests: 4, commonMiB: 256, uniqueMiB: 64, zeroMiB: 8 });
  const capS = options.quick ? 12 : 300;
  const budgets = options.budgets ?? (options.quick ? [0.25] : [0.1, 0.25, 1]);
  const timeScale = options.timeScale ?? (options.quick ? 10 : 1);
  const only = options.only;
  const chosen = drivers(options.quick, budgets, timeScale).filter((d) => only === undefined || only.some((o) => d.policy.startsWith(o)));
  const ksm = new Ksm(ksmOptionsFromEnv());
  const ksmdPid = await findKsmd();
  const load0 = loadavg()[0];
  const restore = await holdKnobs(ksm);
  // The tuners run in this process, scheduled as `pagefuse tune` schedules itself (host/scheduling.ts), and so
  // do the reference rows beside them; the policy goes back after.
  const switched = options.batch !== false && batchUnlessChosen();
  // The unthrottled reference runs at its slots among the other rows; the rest run in order.
  const reference = chosen.find((d) => d.policy.startsWith('unthrottled'));
  const others = chosen.filter((d) => d !== reference);
  const adaptiveAt = others.flatMap((d, i) => (d.policy.startsWith('adaptive') ? [i] : []));
  const slots = reference === undefined ? [] : referenceSlots(others.length, adaptiveAt, options.bracket ?? !options.quick);
  const rows: TunerRow[] = [];
  const referenceRuns: (TunerRow & { slot: number })[] = [];
  const run = async (d: Driver): Promise<TunerRow> => {
    const row = await runDriver(ksm, d, sizes, capS, ksmdPid);
    options.log(
      `bench:   ${row.policy}: ${row.seconds_to_95 === null ? `not at 95 % in ${capS} s` : `95 % in ${row.seconds_to_95} s`}, ksmd ${row.ksmd_cpu_seconds} CPU-s (${row.ksmd_cpu_average} CPU), load ${loadavg()[0].toFixed(2)}`,
    );
    return row;
  };
  try {
    for (let i = 0; i <= others.length; i++) {
      if (slots.includes(i)) referenceRuns.push({ ...(await run(reference!)), slot: i });
      if (i < others.length) rows.push(await run(others[i]!));
    }
  } finally {
    if (switched) batchScheduling(false);
    await restore();
  }
  const placed: PlacedReference[] = referenceRuns.map((r) => ({ seconds_to_95: r.seconds_to_95, ksmd_cpu_seconds: r.ksmd_cpu_seconds, slot: r.slot }));
  // With one run (--quick) the runs beside a row are that run alone: the median row.
  const references = new Map<string, ReferenceRun>();
  for (const i of adaptiveAt) {
    const ref = bracketingReference(placed, i);
    if (ref !== undefined) references.set(others[i]!.policy, ref);
  }
  if (referenceRuns.length > 0) {
    const { slot: _slot, ...median } = referenceRow(referenceRuns);
    rows.unshift(median);
  }
  const total = sizes.commonMiB + sizes.uniqueMiB + sizes.zeroMiB;
  return {
    workload: `${sizes.guests} guests × (${sizes.commonMiB} MiB common + ${sizes.uniqueMiB} MiB unique + ${sizes.zeroMiB} MiB zero) = ${sizes.guests * total} MiB, up to ${capS} s per policy; the bench ${switched ? 'under SCHED_BATCH, as pagefuse tune runs' : options.batch === false ? 'under its own scheduling policy (asked)' : 'under its own scheduling policy (chosen by whoever started it, or SCHED_BATCH refused)'}`,
    load_average: [Number(load0.toFixed(2)), Number(loadavg()[0].toFixed(2))],
    unthrottled_runs: placed,
    rows,
    budgets: budgetChecks(rows, references),
  };
}
