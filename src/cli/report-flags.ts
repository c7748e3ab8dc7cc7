// Flags shared by the reporting commands (top, serve, report, bench).
import { durationFlag } from './common.js';

/** A duration in seconds (500ms, 2m… accepted) from 0.05 s to max, or a UsageError naming the flag. */
export function secondsFlag(command: string, flag: string, value: string | undefined, fallback: number, max = 86_400): number {
  return durationFlag(command, flag, value, { min: 0.05, max }) ?? fallback;
}
