// Flags shared by the reporting commands (top, serve, report, bench).
import { UsageError } from './common.js';

/** A positive number of seconds (fractions allowed), or a UsageError naming the flag. */
export function secondsFlag(command: string, flag: string, value: string | undefined, fallback: number, max = 86_400): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0.05 || n > max) {
    throw new UsageError(`pagefuse ${command}: --${flag} must be a number of seconds from 0.05 to ${max}, got '${value}'`);
  }
  return n;
}
