// What every CLI command shares: usage errors, output helpers, exit codes.
import { setFlagsFromString } from 'node:v8';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { PagefuseError } from '../errors.js';
import { native } from '../native.js';
import { wholeNumber } from '../units.js';
import { readRegularFile } from '../host/regular-file.js';
import { readSecretFile } from '../fleet/key.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A mistake in how the command was called: one line on stderr, exit 2. Its code is ERR_USAGE. */
export class UsageError extends PagefuseError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('ERR_USAGE', message, options);
    this.name = 'UsageError';
  }
}

/**
 * A failure with an exit status of its own: `pagefuse exec`'s 125 when the command was never started (as env(1)
 * and timeout(1) say it), where 1 would pass for the command's own status. One line on stderr, as any error.
 */
export class StatusError extends Error {
  readonly status: number;
  constructor(message: string, status: number, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = 'StatusError';
    this.status = status;
  }
}

/** What the entry point (bin.ts) saw before the command was loaded. */
export interface CliContext {
  /**
   * The SIGUSR1s that came while the command's modules loaded (bin.ts ignores the signal from its first
   * line so Node opens no inspector): how many, and from then on none. `tune` retunes for them.
   */
  takeEarlyUsr1(): number;
  /** The SIGHUPs that came while `tune`'s modules loaded (counted for `tune` only), and from then on none. */
  takeEarlyHup?(): number;
}

export type Options = NonNullable<ParseArgsConfig['options']>;
type Strict<T> = T & { args: string[]; strict: true };

/** parseArgs with strict checking, turning its errors into one-line UsageErrors. */
export function parse<T extends { options: Options; allowPositionals?: boolean }>(
  command: string,
  args: string[],
  config: T,
): ReturnType<typeof parseArgs<Strict<T>>> {
  // A negative number after a flag that takes a value ('--top -1') is that flag's value, so its range
  // check names the flag and the range, rather than parseArgs's "argument is ambiguous".
  const valued = new Map<string, string>();
  for (const [name, o] of Object.entries(config.options)) {
    if (o.type !== 'string') continue;
    valued.set(`--${name}`, name);
    if (o.short !== undefined) valued.set(`-${o.short}`, name);
  }
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const next = args[i + 1];
    if (args[i] === '--') {
      joined.push(...args.slice(i));
      break;
    }
    if (valued.has(args[i]) && next !== undefined && /^-\d/.test(next)) {
      joined.push(`--${valued.get(args[i])}=${next}`);
      i++;
    } else {
      joined.push(args[i]);
    }
  }
  try {
    return parseArgs({ ...config, args: joined, strict: true } as Strict<T>);
  } catch (err) {
    const lines = (err as Error).message.split('\n');
    let message = lines[0].replace(/\. To specify a positional.*$/, '');
    // "--top -1": parseArgs's first line alone ("argument is ambiguous.") does not say what to write.
    const dash = lines.find((l) => l.startsWith('To specify an option argument starting with a dash'));
    if (dash !== undefined) message = `${message.replace(/\.$/, '')}: ${dash.charAt(0).toLowerCase()}${dash.slice(1).replace(/\.$/, '')}`;
    throw new UsageError(`pagefuse ${command}: ${message}`, { cause: err });
  }
}

/** Parses a whole number from a flag, or throws a UsageError naming the flag. */
export function intFlag(command: string, flag: string, value: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  const n = wholeNumber(value);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`pagefuse ${command}: --${flag} must be a whole number from ${min} to ${max}, got '${value}'`);
  }
  return n;
}

const DURATION_UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600 };

/**
 * A duration flag in seconds: a plain number is seconds (fractions allowed); 500ms, 30s, 2m and 1h are
 * accepted too. Out of [min, max] or malformed, a UsageError names the flag, the unit and the range.
 */
export function durationFlag(command: string, flag: string, value: string | undefined, range: { min: number; max: number }): number | undefined {
  if (value === undefined) return undefined;
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$/.exec(value);
  const seconds = m === null ? NaN : Number(m[1]) * DURATION_UNITS[m[2] ?? 's'];
  if (!Number.isFinite(seconds) || seconds < range.min || seconds > range.max) {
    throw new UsageError(
      `pagefuse ${command}: --${flag} must be a duration from ${formatDuration(range.min)} to ${formatDuration(range.max)} (seconds, or with ms, s, m or h), got '${value}'`,
    );
  }
  return seconds;
}

/** Seconds as the shortest of 500ms, 30s, 2m, 1h. */
export function formatDuration(seconds: number): string {
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  if (seconds < 120 || seconds % 60 !== 0) return `${Number(seconds.toFixed(3))}s`;
  if (seconds < 7200 || seconds % 3600 !== 0) return `${seconds / 60}m`;
  return `${seconds / 3600}h`;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

// The text formatters live with the outputs (report/format.ts); commands import them from here too.
export { formatBytes, formatTable } from '../report/format.js';
export { decimalNumber, wholeNumber } from '../units.js';

/** How often a daemon hands glibc's free heap memory back (boundMemory). */
const TRIM_MS = 30_000;

/**
 * Bounds a daemon's memory (tune, serve) for its life: V8's heap, and glibc's. V8's two flags are read at
 * each growth step, so setting them now takes effect (Node 20's V8; another V8 may hold them and grow as
 * before).
 *
 * The young generation stays at the size it has (1–2 MiB a semi-space at this point). V8 doubles it
 * whenever the bytes surviving its scavenges add up to its size, up to 16 MiB a semi-space, and gives it
 * back only while the process allocates under about 1 MB/s: with VMs coming and going every second the
 * daemon's RSS grew from 70 to 107 MiB in 10 minutes, the young generation's 2 × 16 MiB and, in glibc's
 * heap, the ArrayBuffers (/proc reads, scan results) that waited longer for a scavenge
 * (scripts/soak-tune.ts; docs/architecture.md). Scavenges of a small young generation are short. The same
 * soak then stayed at 61–65 MiB.
 *
 * The old generation may grow to 1.5 × what survived the last full collection before the next
 * (--heap-growing-percent=50). V8's own factor for a heap this small is up to 4: serve's live heap is
 * 7 MiB, yet under 20 concurrent scrapes its heap reached 25–32 MiB and its RSS wandered 88–100 MiB (CI
 * failed once on +9.1 MiB over 600 scrapes). At 1.5 the same load ran at 76–82 MiB, for 10–20 % more of
 * serve's CPU at 300 scrapes a second (full collections of a 7 MiB heap take a few ms); at one scrape
 * every 15 s, or one tuner decision a second, that is nothing.
 *
 * glibc keeps the pages of what the process freed (Buffers of /proc reads, scan results) resident until its
 * heap grows past them again: an idle tune handed back 5 MiB of its 23 MiB anonymous memory at one
 * malloc_trim, and grew 2.6 MiB of it back over the next 20 s. So every 30 s it is trimmed. And glibc's
 * mmap threshold is pinned at 128 KiB: by default each freed mapped block raises it to that block's size,
 * and later blocks of up to that size then come from the threads' arenas (the scan's worker, libuv's pool),
 * where a trim hands back only what no live block sits above. Under VM churn (scripts/soak-tune.ts, a VM
 * a second for 10 minutes) the arenas grew from 1.2 to 6 MiB; pinned, they stayed at 1.1 MiB.
 */
export function boundMemory(): void {
  setFlagsFromString('--semi-space-growth-factor=1');
  setFlagsFromString('--heap-growing-percent=50');
  try {
    native.pinMmapThreshold();
  } catch {
    // no addon here (serve can run without it): glibc keeps its own threshold
  }
  const trim = setInterval(() => {
    try {
      native.trimHeap();
    } catch {
      clearInterval(trim); // no addon here (serve can run without it): nothing to trim with
    }
  }, TRIM_MS).unref();
}

/**
 * The text of a file a flag names, trimmed: a token, a TLS key or certificate, a CA bundle (the system's is
 * about 200 KiB). Read as a regular file, at most 4 MiB; an error names the flag and the path, and main()
 * names the command.
 */
export async function readFlagFile(flag: string, path: string): Promise<string> {
  return (await readRegularFile(path, { what: `--${flag}`, maxBytes: 4 * 1024 * 1024 })).trim();
}

/** The same for a flag that names a secret (a bearer token): held to readSecretFile's mode and owner rules. */
export async function readSecretFlagFile(flag: string, path: string): Promise<string> {
  return (await readSecretFile(path, `--${flag}`)).toString('utf8').trim();
}
