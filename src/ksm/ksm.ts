// ksmd's control files under /sys/kernel/mm/ksm: read every knob and counter the running kernel has,
// write knobs all-or-nothing in an order the kernel accepts, and wait on ksmd's progress.
import { access, constants, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { release } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { PagefuseError, abortError, explain, isSystemError, throwIfAborted, invalidArgType, invalidNumber } from '../errors.js';
import {
  COUNTER_NAMES,
  InvalidSettingError,
  TUNABLES,
  isTunable,
  normalizeSetting,
  parseKnobText,
  type KnobValue,
  type KsmSettings,
  type KsmSettingsInput,
  type Tunable,
} from './knobs.js';
import { listKsmProcesses, type KsmProcessList } from './process.js';
import { DEFAULT_PROC_ROOT } from '../host/procfs.js';
import { profitFromCounters, type KsmCounters } from './counters.js';

export const DEFAULT_SYSFS_ROOT = '/sys/kernel/mm/ksm';

export interface KsmOptions {
  /** Directory of KSM's sysfs files (a fake tree in tests). Default /sys/kernel/mm/ksm. */
  sysfsRoot?: string;
  /** procfs mount used for per-process statistics. Default /proc. */
  procRoot?: string;
}

export interface KsmState {
  settings: KsmSettings;
  counters: KsmCounters;
  /** Bytes KSM saves net of its own metadata, as the kernel computes general_profit (may be negative). */
  profitBytes: number;
}

export interface WaitOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface ConfigureOptions extends WaitOptions {
  /**
   * Allows changing merge_across_nodes / max_page_sharing while pages are shared: remembers run,
   * unmerges everything (run=2), writes, then puts run back.
   */
  unmergeFirst?: boolean;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const POLL_MS = 10;
/** Knobs the kernel only lets change while no KSM page exists (EBUSY otherwise). */
const NEEDS_UNMERGED: readonly Tunable[] = ['merge_across_nodes', 'max_page_sharing'];

/** Roots from PAGEFUSE_KSM_SYSFS / PAGEFUSE_PROC (the CLI's test hook); unset means the real ones. */
export function ksmOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): KsmOptions {
  const options: KsmOptions = {};
  if (env.PAGEFUSE_KSM_SYSFS) options.sysfsRoot = env.PAGEFUSE_KSM_SYSFS;
  if (env.PAGEFUSE_PROC) options.procRoot = env.PAGEFUSE_PROC;
  return options;
}

function timeoutOf(options: WaitOptions): number {
  const t = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (typeof t !== 'number' || !(t >= 0) || !Number.isFinite(t)) {
    throw invalidNumber(`timeoutMs must be a finite number of milliseconds >= 0`, t);
  }
  return t;
}

async function pause(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, signal === undefined ? undefined : { signal });
  } catch (err) {
    if (signal?.aborted) throw abortError(signal);
    throw err;
  }
}

export class Ksm {
  readonly sysfsRoot: string;
  readonly procRoot: string;

  constructor(options: KsmOptions = {}) {
    if (options === null || typeof options !== 'object') {
      throw invalidArgType(`Ksm: options must be an object`, options);
    }
    this.sysfsRoot = options.sysfsRoot ?? DEFAULT_SYSFS_ROOT;
    this.procRoot = options.procRoot ?? DEFAULT_PROC_ROOT;
  }

  private path(name: string): string {
    return join(this.sysfsRoot, name);
  }

  private noKsm(err?: unknown): PagefuseError {
    return explain(
      err,
      `KSM is not available: ${this.sysfsRoot} does not exist (kernel ${release()} built without CONFIG_KSM, or sysfs not mounted)`,
      'ENOKSM',
    );
  }

  /** Whether this kernel has KSM (its sysfs directory with a `run` file). */
  async available(): Promise<boolean> {
    try {
      return (await stat(this.path('run'))).isFile();
    } catch {
      return false;
    }
  }

  /**
   * Every knob and counter the running kernel has. Files a kernel lacks are absent from the result;
   * files pagefuse does not know are classed by their mode (writable → settings).
   */
  async read(): Promise<KsmState> {
    let names: string[];
    try {
      names = await readdir(this.sysfsRoot);
    } catch (err) {
      if (isSystemError(err, 'ENOENT') || isSystemError(err, 'ENOTDIR')) throw this.noKsm(err);
      throw explain(err, `reading ${this.sysfsRoot} failed: ${(err as Error).message}`);
    }
    if (!names.includes('run')) throw this.noKsm();
    const settings: KsmSettings = {};
    const counters: KsmCounters = {};
    const known = new Set<string>(COUNTER_NAMES);
    await Promise.all(
      names.sort().map(async (name) => {
        const file = this.path(name);
        let text: string;
        let writable: boolean;
        try {
          const st = await stat(file);
          if (!st.isFile()) return;
          writable = (st.mode & 0o200) !== 0;
          text = await readFile(file, 'utf8');
        } catch (err) {
          if (isSystemError(err, 'ENOENT')) return;
          throw explain(err, `reading ${file} failed: ${(err as Error).message}`);
        }
        let value = parseKnobText(text);
        // run can carry the transient KSM_RUN_OFFLINE bit (4) during memory hot-remove.
        if (name === 'run' && typeof value === 'number') value &= 3;
        if (isTunable(name) || (!known.has(name) && writable)) settings[name] = value;
        else counters[name] = value;
      }),
    );
    return { settings: sortKeys(settings), counters: sortKeys(counters), profitBytes: profitFromCounters(counters) };
  }

  /** Reads one knob or counter (a number, or advisor_mode's word); undefined when the kernel lacks it. */
  async get(name: string): Promise<KnobValue | undefined> {
    try {
      const value = parseKnobText(await readFile(this.path(name), 'utf8'));
      return name === 'run' && typeof value === 'number' ? value & 3 : value;
    } catch (err) {
      if (isSystemError(err, 'ENOENT')) {
        if (!(await this.available())) throw this.noKsm(err);
        return undefined;
      }
      throw explain(err, `reading ${this.path(name)} failed: ${(err as Error).message}`);
    }
  }

  private async count(name: string): Promise<number> {
    const v = await this.get(name);
    return typeof v === 'number' ? v : 0;
  }

  /** One write, with the kernel's errno turned into a message that says what to do. */
  private async write(key: Tunable, value: KnobValue): Promise<void> {
    const file = this.path(key);
    try {
      await writeFile(file, `${value}\n`, { flag: 'w' });
    } catch (err) {
      throw this.writeError(err, key, value);
    }
  }

  private writeError(err: unknown, key: Tunable, value: KnobValue): PagefuseError {
    const file = this.path(key);
    if (isSystemError(err, 'EACCES') || isSystemError(err, 'EPERM')) {
      return explain(err, `needs root: writing ${file}`, 'EACCES');
    }
    if (isSystemError(err, 'EBUSY') && NEEDS_UNMERGED.includes(key)) return this.busy(key, value, err);
    if (isSystemError(err, 'ENOENT')) return this.noKsm(err);
    if (isSystemError(err, 'ENOMEM') && key === 'run') {
      return explain(err, `run=2 ran out of memory while unmerging (ksmd left stopped, run=0): free memory, or unmerge processes one at a time`);
    }
    if (isSystemError(err, 'EINVAL')) return explain(err, `the kernel refused ${key}=${value} (EINVAL writing ${file})`);
    return explain(err, `writing ${key}=${value} to ${file} failed: ${(err as Error).message}`);
  }

  private busy(key: string, value: KnobValue, cause?: unknown, shared?: number): PagefuseError {
    const n = shared === undefined ? '' : ` (pages_shared=${shared})`;
    const message = `cannot change ${key} while KSM pages are shared${n}; pages are shared; unmerge first (pagefuse set ${key}=${value} --unmerge-first, or configure(…, { unmergeFirst: true }))`;
    return cause === undefined ? new PagefuseError('EBUSY', message, { path: this.path(key) }) : explain(cause, message, 'EBUSY');
  }

  /**
   * Writes several knobs, all or nothing: every value is checked before the first write, writes go in
   * an order the kernel accepts, and on a failure what was already written is put back before throwing.
   * Values equal to the current ones are not written, but must be writable by the caller: without root,
   * configure({ run: 1 }) fails (EACCES) whether or not run is 1 already. Resolves to the settings afterwards.
   */
  async configure(input: KsmSettingsInput, options: ConfigureOptions = {}): Promise<KsmSettings> {
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      throw new InvalidSettingError(`configure: settings must be an object of knob: value, got ${String(input)}`);
    }
    const wanted = new Map<Tunable, KnobValue>();
    for (const [key, value] of Object.entries(input)) {
      if (value === undefined) continue;
      wanted.set(key as Tunable, normalizeSetting(key, value));
    }
    const timeoutMs = timeoutOf(options);
    throwIfAborted(options.signal);
    const state = await this.read();
    const current = state.settings;
    for (const key of wanted.keys()) {
      if (!(key in current)) {
        throw new InvalidSettingError(
          `${key} is not supported by this kernel (${release()}): it appeared in Linux ${TUNABLES[key].since}`,
        );
      }
    }
    const finalMode = wanted.get('advisor_mode') ?? current.advisor_mode;
    if (wanted.has('pages_to_scan') && finalMode === 'scan-time') {
      throw new InvalidSettingError(
        wanted.get('advisor_mode') === 'scan-time'
          ? `pages_to_scan=${wanted.get('pages_to_scan')} cannot be set together with advisor_mode=scan-time: the advisor sets pages_to_scan itself (set advisor_min_pages_to_scan instead)`
          : `pages_to_scan=${wanted.get('pages_to_scan')} is refused while advisor_mode=scan-time (the advisor sets it); set advisor_mode=none in the same call`,
      );
    }
    const changes = new Map([...wanted].filter(([key, value]) => current[key] !== value));
    // A value that holds already is not written, but a caller that could not have written it is told so
    // (`pagefuse start` as nobody used to print 'ksmd started' because run was 1 already).
    for (const [key, value] of wanted) {
      if (changes.has(key)) continue;
      try {
        await access(this.path(key), constants.W_OK);
      } catch (err) {
        throw this.writeError(err, key, value);
      }
    }
    const needsUnmerged = NEEDS_UNMERGED.filter((k) => changes.has(k));
    const unmergesItself = changes.get('run') === 2;
    const unmergeFirst = options.unmergeFirst === true && needsUnmerged.length > 0 && !unmergesItself;
    if (needsUnmerged.length > 0 && !unmergesItself && !unmergeFirst) {
      const shared = typeof state.counters.pages_shared === 'number' ? state.counters.pages_shared : 0;
      if (shared > 0) throw this.busy(needsUnmerged[0], changes.get(needsUnmerged[0])!, undefined, shared);
    }

    const written: [Tunable, KnobValue][] = [];
    const oldRun = current.run ?? 0;
    try {
      if (unmergeFirst) {
        written.push(['run', oldRun]);
        await this.unmergeAll({ timeoutMs, signal: options.signal });
      }
      for (const key of writeOrder(changes)) {
        throwIfAborted(options.signal);
        await this.write(key, changes.get(key)!);
        written.push([key, current[key] as KnobValue]);
      }
      if (unmergeFirst && !changes.has('run') && oldRun !== 2) await this.write('run', oldRun);
    } catch (err) {
      await this.restore(written, err);
      throw err;
    }
    return (await this.read()).settings;
  }

  /**
   * Writes one knob, checked as configure() checks it, with none of configure()'s reads of the whole
   * directory before and after: for a caller that rewrites one knob often and knows it is writable now (the
   * tuner's pacer rewrites pages_to_scan up to four times a second while ksmd runs: 0.12 ms of CPU a write
   * here against 6.6–9.8 ms through configure(), on a 6.18 kernel; docs/kernel.md, Cost). The kernel's
   * refusal comes back as configure()'s would; nothing is put back, as there is nothing else to undo.
   */
  async set(key: Tunable, value: KnobValue): Promise<void> {
    await this.write(key, normalizeSetting(key, value));
  }

  /** Puts back what configure() wrote, newest first; a failure here is noted on the original error. */
  private async restore(written: [Tunable, KnobValue][], err: unknown): Promise<void> {
    const failures: string[] = [];
    for (const [key, value] of written.reverse()) {
      try {
        if ((await this.get(key)) !== value) await this.write(key, value);
      } catch (e) {
        failures.push(`${key}=${value}: ${(e as Error).message}`);
      }
    }
    if (failures.length > 0 && err instanceof Error) {
      err.message += ` (and restoring failed: ${failures.join('; ')})`;
    }
  }

  /** run=1: ksmd scans. */
  async start(): Promise<void> {
    await this.configure({ run: 1 });
  }

  /** run=0: ksmd stops; pages already merged stay merged. */
  async stop(): Promise<void> {
    await this.configure({ run: 0 });
  }

  /**
   * run=2: stops ksmd and splits every KSM page in the system. The kernel's write itself blocks until
   * the unmerge is done; this then waits until pages_shared and pages_sharing read 0. run is left at 2,
   * the kernel's "stopped and unmerged" state (mergeable areas stay registered for the next start()).
   */
  async unmergeAll(options: WaitOptions = {}): Promise<void> {
    const timeoutMs = timeoutOf(options);
    throwIfAborted(options.signal);
    if (!(await this.available())) throw this.noKsm();
    const deadline = Date.now() + timeoutMs;
    await this.write('run', 2);
    for (;;) {
      const [shared, sharing] = await Promise.all([this.count('pages_shared'), this.count('pages_sharing')]);
      if (shared === 0 && sharing === 0) return;
      if (Date.now() >= deadline) {
        throw new PagefuseError(
          'ETIMEDOUT',
          `unmerging did not finish in ${timeoutMs} ms: pages_shared=${shared} pages_sharing=${sharing} after run=2`,
        );
      }
      await pause(POLL_MS, options.signal);
    }
  }

  /**
   * Waits until ksmd has completed `n` more full scans. Survives the counter's reset by run=2 (progress is
   * summed across it). ksmd only scans with run=1 and idles while nothing is registered as mergeable, so
   * the wait ends with code ETIMEDOUT rather than hanging. The first scan to complete is the one under way,
   * which memory made mergeable during it may not be in (the kernel puts a new mm just behind ksmd's
   * cursor): a page merges in its second scan, so wait for 3 to see new memory merged.
   */
  async waitForFullScans(n: number, options: WaitOptions = {}): Promise<number> {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
      throw invalidNumber(`waitForFullScans: n must be a whole number >= 0`, n);
    }
    const timeoutMs = timeoutOf(options);
    throwIfAborted(options.signal);
    const deadline = Date.now() + timeoutMs;
    let last = await this.fullScans();
    let done = 0;
    while (done < n) {
      if (Date.now() >= deadline) {
        const run = await this.get('run');
        throw new PagefuseError(
          'ETIMEDOUT',
          `ksmd completed ${done} of ${n} full scans in ${timeoutMs} ms (run=${run}): it scans only with run=1, and idles while no memory is registered as mergeable`,
        );
      }
      await pause(POLL_MS, options.signal);
      const now = await this.fullScans();
      done += now >= last ? now - last : now;
      last = now;
    }
    return last;
  }

  private async fullScans(): Promise<number> {
    const v = await this.get('full_scans');
    if (v === undefined) throw this.noKsm();
    if (typeof v !== 'number') throw new PagefuseError('EIO', `${this.path('full_scans')} reads ${JSON.stringify(v)}, not a number`);
    return v;
  }

  /**
   * Switches merge_across_nodes (NUMA kernels only). With pages shared the kernel refuses (EBUSY) unless
   * `unmergeFirst`: then run is remembered, everything is unmerged (run=2), the knob written and run put
   * back, also on failure.
   */
  async setMergeAcrossNodes(on: boolean, options: ConfigureOptions = {}): Promise<void> {
    if (typeof on !== 'boolean') throw invalidArgType(`setMergeAcrossNodes: on must be a boolean`, on);
    if ((await this.get('merge_across_nodes')) === undefined) {
      throw new PagefuseError(
        'ENOTSUP',
        `merge_across_nodes does not exist here: kernel ${release()} was built without CONFIG_NUMA`,
      );
    }
    await this.configure({ merge_across_nodes: on ? 1 : 0 }, options);
  }

  /** Every process with KSM pages, largest profit first. */
  async processes(): Promise<KsmProcessList> {
    return listKsmProcesses({ procRoot: this.procRoot });
  }
}

/**
 * The order the kernel accepts: run=2 first (the unmerge the EBUSY knobs need), advisor_mode=none before
 * pages_to_scan (refused in scan-time mode, and reset to 100 by the switch), the EBUSY knobs, the other
 * tunables, advisor_mode=scan-time after its parameters (the switch loads advisor_min_pages_to_scan),
 * and run=0/1 last so ksmd starts with the new settings.
 */
export function writeOrder(changes: Map<Tunable, KnobValue>): Tunable[] {
  const rank = (key: Tunable): number => {
    const value = changes.get(key);
    if (key === 'run') return value === 2 ? 0 : 5;
    if (key === 'advisor_mode') return value === 'none' ? 1 : 4;
    if (NEEDS_UNMERGED.includes(key)) return 2;
    return 3;
  };
  return [...changes.keys()].sort((a, b) => rank(a) - rank(b));
}

function sortKeys<T extends Record<string, unknown>>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o).sort()) out[k] = o[k];
  return out as T;
}
