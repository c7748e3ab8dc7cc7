// The tuner's settings: /etc/ksmtuned.conf's own variables (so operators can point us at the file they
// have) plus PAGEFUSE_* keys for the other policies. KEY=VALUE lines, '#' comments, optional quotes.
import { readRegularFile } from '../host/regular-file.js';
import { configLines } from '../host/config-lines.js';
import { PagefuseError, invalidNumber, invalidArgValue } from '../errors.js';
import { decimalNumber, wholeNumber } from '../units.js';

export const POLICIES = ['adaptive', 'ksmtuned', 'kernel-advisor'] as const;
export type PolicyName = (typeof POLICIES)[number];

/** ksmtuned's variables under their own names, with its defaults. */
export interface KsmtunedSettings {
  KSM_MONITOR_INTERVAL: number;
  KSM_SLEEP_MSEC: number;
  KSM_NPAGES_BOOST: number;
  KSM_NPAGES_DECAY: number;
  KSM_NPAGES_MIN: number;
  KSM_NPAGES_MAX: number;
  KSM_THRES_COEF: number;
  KSM_THRES_CONST: number;
}

export const KSMTUNED_DEFAULTS: Readonly<KsmtunedSettings> = Object.freeze({
  KSM_MONITOR_INTERVAL: 60,
  KSM_SLEEP_MSEC: 10,
  KSM_NPAGES_BOOST: 300,
  KSM_NPAGES_DECAY: -50,
  KSM_NPAGES_MIN: 64,
  KSM_NPAGES_MAX: 1250,
  KSM_THRES_COEF: 20,
  KSM_THRES_CONST: 2048,
});

export interface TuneConfig {
  ksmtuned: KsmtunedSettings;
  policy?: PolicyName;
  /** ksmd's CPU allowance, in CPUs (0.25 = a quarter of one CPU). */
  cpuBudget?: number;
  /** The scan engine's own CPU allowance, in CPUs. */
  scanCpuBudget: number;
  /** Seconds between decisions (ksmtuned: KSM_MONITOR_INTERVAL unless set). */
  intervalSeconds?: number;
  /** Below this estimated saving, with memory not tight, ksmd stays stopped. */
  minSavingsBytes: number;
  /** Memory is tight below this share of MemTotal available (percent). */
  availablePercent: number;
  /** Memory is tight when PSI "some avg10" reaches this (percent of time stalled). */
  pressureAvg10: number;
  /** ksmtuned's LOGFILE and DEBUG: decisions are appended there too when set. */
  logFile?: string;
  debug?: string;
}

export function defaultConfig(): TuneConfig {
  return {
    ksmtuned: { ...KSMTUNED_DEFAULTS },
    scanCpuBudget: 0.05,
    minSavingsBytes: 64 * 1024 * 1024,
    availablePercent: 20,
    pressureAvg10: 10,
  };
}

type Setter = (config: TuneConfig, value: string) => string | undefined;

function integer(min: number, max: number, set: (c: TuneConfig, n: number) => void): Setter {
  return (config, value) => {
    const n = wholeNumber(value);
    if (Number.isNaN(n)) return `must be a whole number, got '${value}'`;
    if (n < min || n > max) return `must be from ${min} to ${max}, got ${value}`;
    set(config, n);
    return undefined;
  };
}

function decimal(min: number, max: number, exclusiveMin: boolean, set: (c: TuneConfig, n: number) => void): Setter {
  return (config, value) => {
    const n = decimalNumber(value);
    if (Number.isNaN(n)) return `must be a number, got '${value}'`;
    if ((exclusiveMin ? n <= min : n < min) || n > max) {
      return `must be ${exclusiveMin ? 'above' : 'at least'} ${min} and at most ${max}, got ${value}`;
    }
    set(config, n);
    return undefined;
  };
}

const U32 = 2 ** 32 - 1;

const KEYS: Record<string, Setter> = {
  KSM_MONITOR_INTERVAL: integer(1, 86_400, (c, n) => (c.ksmtuned.KSM_MONITOR_INTERVAL = n)),
  KSM_SLEEP_MSEC: integer(0, U32, (c, n) => (c.ksmtuned.KSM_SLEEP_MSEC = n)),
  KSM_NPAGES_BOOST: integer(-U32, U32, (c, n) => (c.ksmtuned.KSM_NPAGES_BOOST = n)),
  KSM_NPAGES_DECAY: integer(-U32, U32, (c, n) => (c.ksmtuned.KSM_NPAGES_DECAY = n)),
  KSM_NPAGES_MIN: integer(0, U32, (c, n) => (c.ksmtuned.KSM_NPAGES_MIN = n)),
  KSM_NPAGES_MAX: integer(0, U32, (c, n) => (c.ksmtuned.KSM_NPAGES_MAX = n)),
  KSM_THRES_COEF: integer(0, 100, (c, n) => (c.ksmtuned.KSM_THRES_COEF = n)),
  KSM_THRES_CONST: integer(0, Number.MAX_SAFE_INTEGER, (c, n) => (c.ksmtuned.KSM_THRES_CONST = n)),
  LOGFILE: (c, v) => {
    if (v === '') delete c.logFile;
    else c.logFile = v;
    return undefined;
  },
  DEBUG: (c, v) => {
    if (v === '') delete c.debug;
    else c.debug = v;
    return undefined;
  },
  PAGEFUSE_POLICY: (c, v) => {
    if (!(POLICIES as readonly string[]).includes(v)) return `must be one of ${POLICIES.join(', ')}, got '${v}'`;
    c.policy = v as PolicyName;
    return undefined;
  },
  PAGEFUSE_CPU_BUDGET: decimal(0, 1024, true, (c, n) => (c.cpuBudget = n)),
  PAGEFUSE_SCAN_CPU_BUDGET: decimal(0, 1024, true, (c, n) => (c.scanCpuBudget = n)),
  // The floor of --interval: a decision every 0.1 ms is a busy loop.
  PAGEFUSE_INTERVAL: decimal(0.05, 86_400, false, (c, n) => (c.intervalSeconds = n)),
  PAGEFUSE_MIN_SAVINGS_MIB: decimal(0, 2 ** 40, false, (c, n) => (c.minSavingsBytes = Math.round(n * 1024 * 1024))),
  PAGEFUSE_AVAILABLE_PERCENT: decimal(0, 100, false, (c, n) => (c.availablePercent = n)),
  PAGEFUSE_PRESSURE_AVG10: decimal(0, 100, false, (c, n) => (c.pressureAvg10 = n)),
};

export const CONFIG_KEYS: readonly string[] = Object.keys(KEYS);

function configError(file: string, line: number, message: string): PagefuseError {
  return new PagefuseError('EINVAL', `${file}:${line}: ${message}`, { path: file });
}

/** Strips shell-style quotes, or an unquoted value's trailing ' # comment'. */
function unquote(raw: string, file: string, line: number, key: string): string {
  const v = raw.trim();
  const q = v[0];
  if (q === '"' || q === "'") {
    const end = v.indexOf(q, 1);
    if (end < 0) throw configError(file, line, `${key}: unterminated ${q === '"' ? 'double' : 'single'} quote`);
    const after = v.slice(end + 1).trim();
    if (after !== '' && !after.startsWith('#')) throw configError(file, line, `${key}: unexpected text after the quoted value`);
    return v.slice(1, end);
  }
  return v.replace(/\s+#.*$/, '');
}

/** Parses ksmtuned.conf-style text onto the defaults; `file` names the source in errors (file:line: KEY …). */
export function parseConfig(text: string, file = '<config>'): TuneConfig {
  const config = defaultConfig();
  for (const { line: lineNo, key, value } of configLines(text)) {
    // The line itself is not repeated: as root the file may be anyone's (tune --config /etc/shadow).
    if (key === undefined) throw configError(file, lineNo, 'expected KEY=VALUE');
    // Own keys only: KEYS['constructor'] is Object's, and a file naming it (or __proto__, toString) failed with
    // 'setter is not a function' or a message made of the prototype's output.
    const setter = Object.hasOwn(KEYS, key) ? KEYS[key] : undefined;
    if (setter === undefined) throw configError(file, lineNo, `unknown key ${key} (known: ${CONFIG_KEYS.join(', ')})`);
    const problem = setter(config, unquote(value, file, lineNo, key));
    if (problem !== undefined) throw configError(file, lineNo, `${key} ${problem}`);
  }
  const k = config.ksmtuned;
  if (k.KSM_NPAGES_MIN > k.KSM_NPAGES_MAX) {
    throw new PagefuseError('EINVAL', `${file}: KSM_NPAGES_MIN (${k.KSM_NPAGES_MIN}) is above KSM_NPAGES_MAX (${k.KSM_NPAGES_MAX})`, { path: file });
  }
  return config;
}

/** A config file is a few lines; one larger than this is not one. */
const CONFIG_MAX_BYTES = 1024 * 1024;

export async function loadConfig(file: string): Promise<TuneConfig> {
  return parseConfig(await readRegularFile(file, { what: 'the config', maxBytes: CONFIG_MAX_BYTES }), file);
}

/** Checks a CPU budget: more than 0 and at most the number of CPUs. */
export function checkCpuBudget(budget: number, cpus: number, what = 'cpuBudget'): number {
  if (typeof budget !== 'number' || !Number.isFinite(budget) || budget <= 0 || budget > cpus) {
    throw invalidNumber(`${what} must be above 0 and at most the number of CPUs (${cpus})`, budget);
  }
  return budget;
}

export function checkPolicy(name: unknown): PolicyName {
  if (typeof name !== 'string' || !(POLICIES as readonly string[]).includes(name)) {
    throw invalidArgValue(`unknown policy ${JSON.stringify(name)}: use one of ${POLICIES.join(', ')}`);
  }
  return name as PolicyName;
}
