// The scan estimate against what ksmd actually merges: guests sharing a common image (plus unique and
// zero-filled pages) are scanned, then ksmd merges them at full speed, and the two are compared.
// Needs root (it drives ksmd); every knob it touches is put back.
import { access, constants, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Region } from '../region.js';
import { guestRegions, type GuestSizes } from '../workload/layout.js';
import { scan } from '../scan/scan.js';
import { Ksm, ksmOptionsFromEnv } from '../ksm/ksm.js';
import { parseKsmStat } from '../ksm/process.js';
import type { KsmSettingsInput } from '../ksm/knobs.js';
import { KsmdClock } from '../host/ksmd.js';
import { findOtherTuners } from '../host/lock.js';
import { totalSavedPages, type SavedPages } from '../ksm/savings.js';
import { readFootprint } from '../ksm/footprint.js';
import { PagefuseError } from '../errors.js';
import { KnobGuard } from '../ksm/snapshot.js';

export type { GuestSizes } from '../workload/layout.js';

export interface EstimateResult {
  guests: number;
  bytes: number;
  /** scan()'s prediction of Σ ksm_merging_pages once ksmd converges. */
  predicted_merging_pages: number;
  /** What /proc/self/ksm_stat showed when ksmd stopped making progress. */
  ksmd_merging_pages: number;
  merging_error_percent: number;
  /** scan()'s estimatedSavedPages against what the guests got back (ownSavedPages: the one definition of saved). */
  predicted_saved_pages: number;
  ksmd_saved_pages: number;
  saved_error_percent: number;
  scan_seconds: number;
  ksmd_seconds: number;
  ksmd_cpu_seconds: number | null;
  converged: boolean;
}

/** Why the KSM parts cannot run here, or undefined when they can. */
export async function ksmUnavailable(ksm = new Ksm(ksmOptionsFromEnv())): Promise<string | undefined> {
  if (!(await ksm.available())) return 'KSM is not available in this kernel (no /sys/kernel/mm/ksm)';
  try {
    await access(`${ksm.sysfsRoot}/run`, constants.W_OK);
  } catch {
    return `needs root: writing ${ksm.sysfsRoot}/run`;
  }
  // The bench writes ksmd's knobs: a tuner writing them too would spoil both.
  // (A dry run, --restore or --help is not one: host/lock.ts isPagefuseTune.)
  const others = await findOtherTuners();
  if (others.length > 0) return `another tuner drives ksmd (${others.map((o) => `${o.what}, pid ${o.pid}`).join('; ')}): stop it first`;
  return undefined;
}

/** advisor_mode none and use_zero_pages 0, where the kernel has them. */
export function benchBaseline(found: Record<string, unknown>): KsmSettingsInput {
  const out: KsmSettingsInput = {};
  if (found.advisor_mode !== undefined) out.advisor_mode = 'none';
  if (found.use_zero_pages !== undefined) out.use_zero_pages = 0;
  return out;
}

/** The knobs the bench's KSM parts write (every writable knob is snapshot and put back). */
export const BENCH_KNOBS = ['run', 'pages_to_scan', 'sleep_millisecs', 'advisor_mode', 'use_zero_pages'] as const;

/**
 * Snapshots every writable knob (recorded, so a bench that is killed is undone by the next start of
 * the bench, a tuner, or 'pagefuse tune --restore'), then sets the bench's baseline (advisor_mode none,
 * use_zero_pages 0, so every run counts the same way); returns the function that puts them all back.
 * Until then SIGINT, SIGTERM and SIGHUP put them back before the process exits.
 */
export async function holdKnobs(ksm: Ksm): Promise<() => Promise<void>> {
  const guard = KnobGuard.begin('bench', { sysfsRoot: ksm.sysfsRoot });
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const onSignal = (signal: NodeJS.Signals): void => {
    try {
      guard.restore();
    } finally {
      process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
    }
  };
  for (const sig of signals) process.once(sig, onSignal);
  const onExit = () => guard.restore();
  process.once('exit', onExit);
  await ksm.configure(benchBaseline(guard.found));
  return async () => {
    for (const sig of signals) process.off(sig, onSignal);
    process.off('exit', onExit);
    guard.restore();
  };
}

/**
 * What this process's memory (the bench's guests) got back, by src/ksm/savings.ts's definition: its exact
 * share of pages_sharing (Σ (k − 1)/k over its mappings of KSM pages, from pagemap and kpagecount), its
 * ksm_zero_pages, and no THP-split zero subpages (the benches' guests have no huge pages). The host-wide
 * counters would also count whatever else on the host merged meanwhile.
 */
export async function ownSavedPages(): Promise<SavedPages> {
  const fp = await readFootprint(process.pid);
  if (fp === undefined || fp.sharingWeight === null) throw new PagefuseError('EACCES', 'the bench cannot read its own pagemap and kpagecount (needs root)');
  const stat = parseKsmStat(await readFile('/proc/self/ksm_stat', 'utf8'));
  return { ksmPages: Math.round(fp.sharingWeight), ksmZeroPages: stat.zeroPages ?? 0, thpSplitZeroPages: 0 };
}

export async function selfMergingPages(): Promise<number> {
  return parseKsmStat(await readFile('/proc/self/ksm_stat', 'utf8')).mergingPages ?? 0;
}

/**
 * Unmaps the guests, then lets ksmd run until this process's ksm_merging_pages reads 0: the kernel drops
 * the rmap items of unmapped memory only on ksmd's next pass, so a later run would start from a stale count.
 * ksmd's pace and run are put back as they were, also when the wait fails: the caller's knob guard is not
 * always the last word (a probe that restored before disposing once left ksmd at 20000 pages / 0 ms).
 */
export async function disposeGuests(ksm: Ksm, guests: Region[], timeoutS = 20): Promise<void> {
  for (const g of guests) g.dispose();
  if ((await selfMergingPages()) === 0) return;
  const before = (await ksm.read()).settings;
  const back: KsmSettingsInput = {};
  for (const k of ['pages_to_scan', 'sleep_millisecs', 'run'] as const) if (before[k] !== undefined) back[k] = before[k];
  try {
    await ksm.configure({ pages_to_scan: 20000, sleep_millisecs: 0, run: 1 });
    const deadline = performance.now() + timeoutS * 1000;
    while ((await selfMergingPages()) > 0 && performance.now() < deadline) await sleep(20);
  } finally {
    await ksm.configure(back);
  }
}

function errorPercent(predicted: number, actual: number): number {
  return actual === 0 ? (predicted === 0 ? 0 : 100) : Number(((Math.abs(predicted - actual) / actual) * 100).toFixed(2));
}

export async function benchEstimate(sizes: GuestSizes, timeoutS: number): Promise<EstimateResult> {
  const ksm = new Ksm(ksmOptionsFromEnv());
  const regions = guestRegions(sizes);
  const restore = await holdKnobs(ksm);
  try {
    const estimate = await scan(regions, { mode: 'exact' });
    const clock = new KsmdClock();
    const cpu0 = await clock.cpuSeconds();
    for (const r of regions) r.advise('mergeable');
    await ksm.configure({ pages_to_scan: 20000, sleep_millisecs: 0, run: 1 });
    const t0 = performance.now();
    let merging = 0;
    let lastChange = t0;
    let scansAtChange = (await ksm.read()).counters.full_scans as number;
    let converged = false;
    while ((performance.now() - t0) / 1000 < timeoutS) {
      await sleep(50);
      const m = await selfMergingPages();
      const scans = (await ksm.read()).counters.full_scans as number;
      if (m !== merging) {
        merging = m;
        lastChange = performance.now();
        scansAtChange = scans;
      } else if (merging > 0 && scans >= scansAtChange + 2) {
        converged = true; // two full scans without a new merge
        break;
      }
    }
    const ksmdSeconds = (lastChange - t0) / 1000;
    const saved = totalSavedPages(await ownSavedPages());
    const cpu1 = await clock.cpuSeconds();
    return {
      guests: sizes.guests,
      bytes: regions.reduce((n, r) => n + r.byteLength, 0),
      predicted_merging_pages: estimate.mergingPages,
      ksmd_merging_pages: merging,
      merging_error_percent: errorPercent(estimate.mergingPages, merging),
      predicted_saved_pages: estimate.estimatedSavedPages,
      ksmd_saved_pages: saved,
      saved_error_percent: errorPercent(estimate.estimatedSavedPages, saved),
      scan_seconds: Number(estimate.seconds.toFixed(3)),
      ksmd_seconds: Number(ksmdSeconds.toFixed(2)),
      ksmd_cpu_seconds: cpu0 === undefined || cpu1 === undefined ? null : Number((cpu1 - cpu0).toFixed(3)),
      converged,
    };
  } finally {
    await disposeGuests(ksm, regions).finally(restore);
  }
}
