// The tuner daemon's latest decision, shared with `pagefuse top` and `pagefuse serve` through a small
// JSON file: { at, policy, settings: { pages_to_scan, sleep_millisecs, … }, reason }.
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { DecisionRecord } from './model.js';
import { writeFileAtomic } from '../host/atomic.js';

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

/** The latest decision, or undefined when no tuner runs (no file) or the file is not a decision. */
export async function readTunerState(path?: string): Promise<DecisionRecord | undefined> {
  let text: string;
  try {
    text = await readFile(tunerStatePath(path), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const v: unknown = JSON.parse(text);
    return isDecision(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** For the tuner daemon: publish a decision (atomically, so readers never see half a file). */
export async function writeTunerState(decision: DecisionRecord, path?: string): Promise<void> {
  const target = tunerStatePath(path);
  await mkdir(dirname(target), { recursive: true });
  await writeFileAtomic(target, `${JSON.stringify(decision)}\n`);
}

