// The shared helper for every test that touches KSM. Its whole API:
//
//   await withKsm(t, async (ksm) => { … }, { settings?, fast?, unmerge? })
//       Skips (or, in CI with a writable sysfs, fails) when KSM can't be driven here; otherwise takes the
//       machine-wide lock (helpers/lock.ts), snapshots every writable knob (src/ksm/snapshot.ts, recorded
//       against a crash), unmerges everything (run=2, so ksmd's cursor and counts start clean; unmerge:
//       false skips it), applies advisor_mode=none, FAST_SETTINGS (fast: false skips them) and
//       `settings`, runs the body, and always puts every knob back (also when the process exits with
//       the body unsettled), then releases the lock. ksmd is stopped while the body starts unless
//       `settings` runs it; mergeAndWait starts it.
//   await mergeAndWait(ksm, region?, { scans?, timeoutMs? })
//       advise('mergeable') on the region (if given), start ksmd, and wait for `scans` (default 2) full
//       scans of it, plus one: the kernel puts a newly registered mm just behind ksmd's cursor, so the
//       pass under way when it registers (even one paused by run=0) does not reach it.
//   await selfKsm()       processKsm('self'): this process's /proc/self/ksm_stat.
//   ksmSkipReason()       why KSM tests cannot run here, or undefined.
//   requireKsm(t)         false (after t.skip) when they can't; throws instead when CI is set and the
//                         sysfs is writable: there a skipped KSM test is a failure (skipVerdict is the rule).
//   FAST_SETTINGS         the knobs withKsm sets: small regions converge in milliseconds.
//   RUNNING_SETTINGS      ksmd running, smart_scan off: for tests whose children must merge by themselves.
import { accessSync, constants } from 'node:fs';
import type { TestContext } from 'node:test';
import { lockKsm } from './lock.js';
import { Ksm, processKsm, type KsmSettingsInput, type ProcessKsm, type Region } from '../../src/index.js';
import { KnobGuard } from '../../src/ksm/snapshot.js';

export const FAST_SETTINGS: KsmSettingsInput = {
  pages_to_scan: 10_000,
  sleep_millisecs: 1,
  use_zero_pages: 0,
  merge_across_nodes: 1,
};

/**
 * ksmd running at 5000 pages / 10 ms with smart_scan off: with it on, pages that went unmerged for a
 * few scans are skipped on a period, and two children whose pages started at different times can keep
 * missing each other (seen here: none of 40 identical pages across two processes merged in 30 s).
 */
export const RUNNING_SETTINGS: KsmSettingsInput = { run: 1, pages_to_scan: 5000, sleep_millisecs: 10, smart_scan: 0 };

const SYSFS = '/sys/kernel/mm/ksm';

export function ksmSkipReason(): string | undefined {
  try {
    accessSync(`${SYSFS}/run`, constants.R_OK);
  } catch {
    return `KSM is not available (${SYSFS}/run missing)`;
  }
  try {
    accessSync(`${SYSFS}/run`, constants.W_OK);
  } catch {
    return `${SYSFS} is not writable (needs root)`;
  }
  try {
    accessSync('/proc/self/ksm_stat', constants.R_OK);
  } catch {
    return 'this kernel has no /proc/self/ksm_stat (needs Linux 6.1+)';
  }
  return undefined;
}

function sysfsWritable(): boolean {
  try {
    accessSync(`${SYSFS}/run`, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** The rule itself: run when nothing stops us; a skip in CI with a writable sysfs is a failure. */
export function skipVerdict(reason: string | undefined, ci: boolean, writable: boolean): 'run' | 'skip' | 'fail' {
  if (reason === undefined) return 'run';
  return ci && writable ? 'fail' : 'skip';
}

export function requireKsm(t: TestContext): boolean {
  const reason = ksmSkipReason();
  const verdict = skipVerdict(reason, Boolean(process.env.CI), sysfsWritable());
  if (verdict === 'run') return true;
  if (verdict === 'fail') {
    throw new Error(`a KSM test would skip in CI with a writable ${SYSFS}, which counts as a failure: ${reason}`);
  }
  t.skip(reason);
  return false;
}

export async function selfKsm(): Promise<ProcessKsm> {
  return processKsm('self');
}

export interface WithKsmOptions {
  /** Knobs to set on top of FAST_SETTINGS (or alone, with fast: false). */
  settings?: KsmSettingsInput;
  /** Start from FAST_SETTINGS (default true). */
  fast?: boolean;
  /** Unmerge everything first (run=2), so ksmd's cursor and counts start clean (default true). */
  unmerge?: boolean;
}

/**
 * The one test harness for KSM: takes the machine-wide lock, snapshots every writable knob through the
 * project's KnobGuard (recorded in PAGEFUSE_STATE_DIR or /run/pagefuse: a test process that dies in
 * the body, or whose body never settles, is undone when it exits or by the next withKsm), sets the
 * knobs, runs the body, and puts every knob back.
 */
export async function withKsm<T>(t: TestContext, body: (ksm: Ksm) => Promise<T>, options: WithKsmOptions = {}): Promise<T | undefined> {
  if (!requireKsm(t)) return undefined;
  const release = await lockKsm();
  const ksm = new Ksm();
  let guard: KnobGuard | undefined;
  // node:test moves on from a test whose body never settles (an uncaught exception elsewhere fails it),
  // and then no finally below ever runs: the knobs go back when the process exits.
  const onExit = () => guard?.restore();
  try {
    guard = KnobGuard.begin('test');
    process.once('exit', onExit);
    if (options.unmerge !== false) await ksm.unmergeAll({ timeoutMs: 30_000 });
    const wanted: Record<string, unknown> = { advisor_mode: 'none', ...(options.fast === false ? {} : FAST_SETTINGS), ...options.settings };
    // Knobs this kernel lacks (advisor_mode before 6.8, merge_across_nodes without NUMA) are left out.
    for (const k of Object.keys(wanted)) if (!(k in guard.found) && !(options.settings && k in options.settings)) delete wanted[k];
    await ksm.configure(wanted as KsmSettingsInput);
    return await body(ksm);
  } finally {
    try {
      guard?.restore();
    } finally {
      process.off('exit', onExit);
      release();
    }
  }
}

export async function mergeAndWait(
  ksm: Ksm,
  region?: Region,
  options: { scans?: number; timeoutMs?: number } = {},
): Promise<void> {
  region?.advise('mergeable');
  if ((await ksm.get('run')) !== 1) await ksm.start();
  await ksm.waitForFullScans((options.scans ?? 2) + 1, { timeoutMs: options.timeoutMs ?? 30_000 });
}
