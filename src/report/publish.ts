// For the tuner daemon: publish each decision to the state file `pagefuse top` and `serve` read, and keep
// the history file `pagefuse report --from` draws. One call: publishTuner(tuner, { historyPath }).
import type { DecisionRecord } from './model.js';
import { tunerStatePath, writeTunerState } from './tuner-state.js';
import { writeHistoryFile } from './history-file.js';
import { hostSource, type SnapshotSource } from './source.js';
import { Sampler } from './sampler.js';
import type { OvercommitRisk } from '../safety/exposure.js';

/**
 * What publishTuner reads of a Tuner's decision (a TuneDecision). Written out here, not imported: the
 * tuner reads its saved figure through this folder's savings model, so report/ must not import tune/.
 */
export interface PublishedDecision {
  at: number;
  policy: string;
  knobs: Readonly<Record<string, number | string | undefined>>;
  reasons: readonly string[];
  risk: OvercommitRisk;
  dryRun: boolean;
  estimatedBytes: number | null;
  thpSlowSplitPages: number | null;
  thpSlowSplitZeroBytes: number | null;
}

/** What publishTuner needs of a Tuner: its 'decision' events. */
export interface DecisionSource {
  on(event: 'decision', listener: (d: PublishedDecision) => void): unknown;
  off(event: 'decision', listener: (d: PublishedDecision) => void): unknown;
}

export interface PublishOptions {
  /** The state file top and serve read (default: tunerStatePath()). */
  statePath?: string;
  /** Also keep a history file for `pagefuse report --from` (snapshots every sampleMs, plus decisions). */
  historyPath?: string;
  sampleMs?: number;
  /** Snapshots kept in the history file (default 8640: a day at 10 s). */
  capacity?: number;
  /** Default: this host, with VMs named as top and status name them (hostSource()). */
  source?: SnapshotSource;
}

/** The decision as the state file holds it: the knobs the policy wants and its last reason. */
export function decisionRecord(d: PublishedDecision): DecisionRecord {
  const settings: Record<string, number> = {};
  for (const [k, v] of Object.entries(d.knobs)) if (typeof v === 'number') settings[k] = v;
  const rec: DecisionRecord = {
    at: d.at,
    policy: d.policy,
    settings,
    reason: d.reasons[d.reasons.length - 1] ?? '',
    atRisk: d.risk.atRisk,
    pid: process.pid,
    dryRun: d.dryRun,
    writtenAt: Date.now(),
  };
  if (d.estimatedBytes !== null) rec.estimatedBytes = d.estimatedBytes;
  if (d.thpSlowSplitPages !== null && d.thpSlowSplitZeroBytes !== null) {
    rec.thpSlowSplitPages = d.thpSlowSplitPages;
    rec.thpSlowSplitZeroBytes = d.thpSlowSplitZeroBytes;
  }
  return rec;
}

/**
 * For the tuner daemon: publishes every decision to the state file and, with historyPath, keeps the
 * history file up to date. Returns the function that stops it. Write failures are reported to onError.
 */
export function publishTuner(tuner: DecisionSource, options: PublishOptions = {}, onError: (err: Error) => void = () => undefined): () => void {
  const decisions: DecisionRecord[] = [];
  let sampler: Sampler | undefined;
  let stopped = false;
  const saveHistory = (): void => {
    // A sample still being read when stop() was called is not written after it.
    if (stopped || options.historyPath === undefined || sampler === undefined) return;
    writeHistoryFile(options.historyPath, { snapshots: sampler.history.toArray(), decisions }).catch(onError);
  };
  const onDecision = (d: PublishedDecision): void => {
    const rec = decisionRecord(d);
    // Kept for the history file only: without one, a daemon deciding every second would hold the last 1000.
    if (options.historyPath !== undefined) {
      decisions.push(rec);
      if (decisions.length > 1000) decisions.shift();
    }
    writeTunerState(rec, options.statePath).catch(onError);
  };
  tuner.on('decision', onDecision);
  if (options.historyPath !== undefined) {
    sampler = new Sampler(options.source ?? hostSource({ tunerStatePath: tunerStatePath(options.statePath) }), {
      intervalMs: options.sampleMs ?? 10_000,
      capacity: options.capacity ?? 8640,
    });
    sampler.on('sample', saveHistory);
    sampler.on('error', onError);
    sampler.start();
  }
  return () => {
    stopped = true;
    tuner.off('decision', onDecision);
    sampler?.stop();
  };
}
