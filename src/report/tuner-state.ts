// The tuner daemon's latest decision, shared with `pagefuse top` and `pagefuse serve` through a small
// JSON file: { at, policy, settings: { pages_to_scan, sleep_millisecs, … }, reason, pid, dryRun, writtenAt }.
// Readers check that the pid still runs: the decision of a tuner that exited (or was killed) is not in force,
// and neither is a dry run's, which is written beside the daemon's file (tuner.dry-run.json), never over it.
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { DecisionRecord } from './model.js';
import { ensureDir, writeFileAtomic } from '../host/atomic.js';
import { processAlive } from '../host/procfs.js';

export const DEFAULT_TUNER_STATE_PATH = '/run/pagefuse/tuner.json';

export function tunerStatePath(path?: string): string {
  return path ?? process.env.PAGEFUSE_TUNER_STATE ?? DEFAULT_TUNER_STATE_PATH;
}

function isDecision(v: unknown): v is DecisionRecord {
  const d = v as DecisionRecord;
  return (
    typeof d === 'object' &&
    d !== null &&
    typeof d.at === 'number' &&
    typeof d.policy === 'string' &&
    typeof d.reason === 'string' &&
    typeof d.settings === 'object' &&
    d.settings !== null
  );
}

/** Where a dry run publishes: beside the daemon's state file, so it never overwrites a live daemon's. */
export function dryRunStatePath(path?: string): string {
  const target = tunerStatePath(path);
  return target.endsWith('.json') ? `${target.slice(0, -'.json'.length)}.dry-run.json` : `${target}.dry-run`;
}

/**
 * What readers show of the tuner: the daemon's latest decision while it runs; else a running dry run's
 * (marked dryRun); else the daemon's last one, with running false (it exited: nothing it decided holds);
 * undefined when none of these exists. A dry run that exited is not shown: it never applied anything.
 */
export async function readTunerState(path?: string): Promise<DecisionRecord | undefined> {
  const [daemon, dryRun] = await Promise.all([readStateFile(tunerStatePath(path)), readStateFile(dryRunStatePath(path))]);
  if (daemon?.running) return daemon;
  if (dryRun?.running) return { ...dryRun, dryRun: true };
  return daemon;
}

/** One state file, with `running` set (a file without a pid, from an older pagefuse, counts as not running). */
async function readStateFile(file: string): Promise<DecisionRecord | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isDecision(v)) return undefined;
  const pid = Number.isSafeInteger(v.pid) && v.pid! > 0 ? v.pid : undefined;
  return { ...v, running: pid !== undefined && processAlive(pid) };
}

/** Whether a published decision holds now: its tuner still runs and applied it (it was not a dry run). */
export function tunerInForce(t: DecisionRecord | null | undefined): t is DecisionRecord {
  return t !== null && t !== undefined && t.running === true && t.dryRun !== true;
}

/** For the tuner daemon: publish a decision (atomically, so readers never see half a file). A dry run's goes
 * to dryRunStatePath() instead. */
export async function writeTunerState(decision: DecisionRecord, path?: string): Promise<void> {
  const target = decision.dryRun === true ? dryRunStatePath(path) : tunerStatePath(path);
  await ensureDir(dirname(target));
  await writeFileAtomic(target, `${JSON.stringify(decision)}\n`);
}

