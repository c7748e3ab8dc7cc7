// The shared helper for every test that touches KSM. Its whole API:
//
//   await withKsm(t, async (ksm) => { … }, { settings? })
//       Skips (or, in CI with a writable sysfs, fails) when KSM can't be driven here; otherwise takes the
//       machine-wide lock (helpers/lock.ts), snapshots every writable knob, unmerges everything (run=2, so
//       ksmd's cursor and counts start clean), applies FAST_SETTINGS plus `settings`, runs the body, and
//       always puts every knob back (run=2 first: merge_across_nodes / max_page_sharing need
//       pages_shared 0), then releases the lock. ksmd is stopped while the body starts; mergeAndWait starts it.
//   await mergeAndWait(ksm, region?, { scans?, timeoutMs? })
//       advise('mergeable') on the region (if given), start ksmd, and wait for `scans` (default 2) full
//       scans of it, plus one: the kernel puts a newly registered mm just behind ksmd's cursor, so the
//       pass under way when it registers (even one paused by run=0) does not reach it.
//   await selfKsm()       processKsm('self'): this process's /proc/self/ksm_stat.
//   ksmSkipReason()       why KSM tests cannot run here, or undefined.
//   requireKsm(t)         false (after t.skip) when they can't; throws instead when CI is set and the
//                         sysfs is writable: there a skipped KSM test is a failure (skipVerdict is the rule).
//   FAST_SETTINGS         the knobs withKsm sets: small regions converge in milliseconds.
import { accessSync, constants } from 'node:fs';
import type { TestContext } from 'node:test';
import { lockKsm } from './lock.js';
import { Ksm, TUNABLES, processKsm, type KsmSettings, type KsmSettingsInput, type ProcessKsm, type Region } from '../../src/index.js';

export const FAST_SETTINGS: KsmSettingsInput = {
  pages_to_scan: 10_000,
  sleep_millisecs: 1,
  use_zero_pages: 0,
  merge_across_nodes: 1,
};

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

/** Puts knobs back as `snapshot` had them: unmerge first, then every tunable, then run. */
async function restoreKsm(ksm: Ksm, snapshot: KsmSettings): Promise<void> {
  await ksm.unmergeAll({ timeoutMs: 30_000 });
  const { run, ...rest } = snapshot;
  const settings: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rest)) if (Object.hasOwn(TUNABLES, k)) settings[k] = v;
  // In scan-time mode pages_to_scan belongs to the advisor; switching the mode back resets it.
  if (snapshot.advisor_mode === 'scan-time') delete settings.pages_to_scan;
  await ksm.configure(settings as KsmSettingsInput);
  if (run !== undefined) await ksm.configure({ run });
}

export async function withKsm<T>(
  t: TestContext,
  body: (ksm: Ksm) => Promise<T>,
  options: { settings?: KsmSettingsInput } = {},
): Promise<T | undefined> {
  if (!requireKsm(t)) return undefined;
  const release = await lockKsm();
  const ksm = new Ksm();
  let snapshot: KsmSettings | undefined;
  try {
    snapshot = (await ksm.read()).settings;
    await ksm.unmergeAll({ timeoutMs: 30_000 });
    const wanted: Record<string, unknown> = { advisor_mode: 'none', ...FAST_SETTINGS, ...options.settings };
    // Knobs this kernel lacks (advisor_mode before 6.8, merge_across_nodes without NUMA) are left out.
    for (const k of Object.keys(wanted)) if (!(k in snapshot) && !(options.settings && k in options.settings)) delete wanted[k];
    await ksm.configure(wanted as KsmSettingsInput);
    return await body(ksm);
  } finally {
    try {
      if (snapshot !== undefined) await restoreKsm(ksm, snapshot);
    } finally {
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
