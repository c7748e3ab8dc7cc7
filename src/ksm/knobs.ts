// The sysfs knobs of /sys/kernel/mm/ksm: what each accepts, checked before anything is written.
// Ranges follow the kernel's own parsers (mm/ksm.c *_store), so a value we accept is one the kernel
// accepts too, except where a tighter bound is noted.
import { PagefuseError } from '../errors.js';

const UINT_MAX = 2 ** 32 - 1;
const INT_MAX = 2 ** 31 - 1;
/** unsigned long knobs: the kernel takes 64 bits, JavaScript numbers are exact up to 2^53 - 1. */
const ULONG_MAX = Number.MAX_SAFE_INTEGER;

type Rule =
  | { kind: 'int'; min: number; max: number; since: string; note?: string }
  | { kind: 'bool'; since: string }
  | { kind: 'enum'; values: readonly string[]; since: string };

export const TUNABLES = {
  run: { kind: 'int', min: 0, max: 2, since: '2.6.32', note: '0 stop, 1 run, 2 stop and unmerge all' },
  pages_to_scan: { kind: 'int', min: 0, max: UINT_MAX, since: '2.6.32' },
  sleep_millisecs: { kind: 'int', min: 0, max: UINT_MAX, since: '2.6.32' },
  merge_across_nodes: { kind: 'int', min: 0, max: 1, since: '3.9' },
  max_page_sharing: { kind: 'int', min: 2, max: INT_MAX, since: '4.13' },
  stable_node_chains_prune_millisecs: { kind: 'int', min: 0, max: UINT_MAX, since: '4.13' },
  use_zero_pages: { kind: 'bool', since: '4.11' },
  smart_scan: { kind: 'bool', since: '6.7' },
  advisor_mode: { kind: 'enum', values: ['none', 'scan-time'], since: '6.8' },
  // The kernel takes any unsigned long; a share of one CPU above 100 % means nothing for one ksmd thread.
  advisor_max_cpu: { kind: 'int', min: 1, max: 100, since: '6.8', note: 'percent of one CPU' },
  advisor_min_pages_to_scan: { kind: 'int', min: 0, max: ULONG_MAX, since: '6.8' },
  advisor_max_pages_to_scan: { kind: 'int', min: 0, max: ULONG_MAX, since: '6.8' },
  advisor_target_scan_time: { kind: 'int', min: 1, max: ULONG_MAX, since: '6.8', note: 'seconds' },
} as const satisfies Record<string, Rule>;

export type Tunable = keyof typeof TUNABLES;
export const TUNABLE_NAMES = Object.keys(TUNABLES) as Tunable[];

/** The read-only counters pagefuse knows; any other read-only file the kernel adds is read too. */
export const COUNTER_NAMES = [
  'pages_shared',
  'pages_sharing',
  'pages_unshared',
  'pages_volatile',
  'full_scans',
  'stable_node_chains',
  'stable_node_dups',
  'general_profit',
  'pages_scanned',
  'pages_skipped',
  'ksm_zero_pages',
] as const;

export type AdvisorMode = 'none' | 'scan-time';

/** Knob values as the kernel prints them: numbers, and advisor_mode's selected word. */
export interface KsmSettings {
  run?: number;
  pages_to_scan?: number;
  sleep_millisecs?: number;
  merge_across_nodes?: number;
  max_page_sharing?: number;
  stable_node_chains_prune_millisecs?: number;
  use_zero_pages?: number;
  smart_scan?: number;
  advisor_mode?: AdvisorMode;
  advisor_max_cpu?: number;
  advisor_min_pages_to_scan?: number;
  advisor_max_pages_to_scan?: number;
  advisor_target_scan_time?: number;
  /** A knob a newer kernel has and pagefuse does not know yet: read, never written. */
  [other: string]: number | string | undefined;
}

/** What configure() takes: numbers, booleans (or 0/1) for the two switches, advisor_mode's word. */
export type KsmSettingsInput = { [K in Tunable]?: (typeof TUNABLES)[K] extends { kind: 'bool' } ? boolean | 0 | 1 : K extends 'advisor_mode' ? AdvisorMode : number };

export type KnobValue = number | string;

/** A value or key refused before anything was written. */
export class InvalidSettingError extends PagefuseError {
  constructor(message: string) {
    super('EINVAL', message);
    this.name = 'InvalidSettingError';
  }
}

function show(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

export function isTunable(key: string): key is Tunable {
  return Object.hasOwn(TUNABLES, key);
}

function unknownKey(key: string): InvalidSettingError {
  return new InvalidSettingError(`unknown KSM setting '${key}'; settable: ${TUNABLE_NAMES.join(', ')}`);
}

/** Checks one API value and returns what to write to the file. */
export function normalizeSetting(key: string, value: unknown): KnobValue {
  if (!isTunable(key)) throw unknownKey(key);
  const rule: Rule = TUNABLES[key];
  switch (rule.kind) {
    case 'bool':
      if (value === true || value === 1) return 1;
      if (value === false || value === 0) return 0;
      throw new InvalidSettingError(`${key} must be true/false or 1/0, got ${show(value)}`);
    case 'enum':
      if (typeof value === 'string' && rule.values.includes(value)) return value;
      throw new InvalidSettingError(`${key} must be one of ${rule.values.join(', ')}, got ${show(value)}`);
    case 'int':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < rule.min || value > rule.max) {
        const what = 'note' in rule && rule.note !== undefined ? ` (${rule.note})` : '';
        throw new InvalidSettingError(`${key} must be a whole number from ${rule.min} to ${rule.max}${what}, got ${show(value)}`);
      }
      return value;
  }
}

const TRUE_WORDS = new Set(['1', 'y', 'yes', 'on', 'true']);
const FALSE_WORDS = new Set(['0', 'n', 'no', 'off', 'false']);

/** Parses KEY=VALUE text (the CLI) into the value configure() takes, with the same checks. */
export function parseSetting(key: string, text: string): KnobValue | boolean {
  if (!isTunable(key)) throw unknownKey(key);
  const rule: Rule = TUNABLES[key];
  const t = text.trim();
  if (rule.kind === 'bool') {
    if (TRUE_WORDS.has(t.toLowerCase())) return true;
    if (FALSE_WORDS.has(t.toLowerCase())) return false;
    throw new InvalidSettingError(`${key} must be 1/0 (or y/n, on/off), got ${show(text)}`);
  }
  if (rule.kind === 'enum') return normalizeSetting(key, t);
  if (!/^\d+$/.test(t)) return normalizeSetting(key, text);
  return normalizeSetting(key, Number(t));
}

/** Parses one file's text as the kernel prints it. */
export function parseKnobText(text: string): KnobValue {
  const t = text.trim();
  if (/^-?\d+$/.test(t)) return Number(t);
  const selected = /\[([^\]]+)\]/.exec(t);
  if (selected) return selected[1];
  return t;
}
