// The one knob snapshot and restore. Everything that writes /sys/kernel/mm/ksm (the Tuner and
// `pagefuse tune`, `set --unmerge-first`, the bench, the test harness) snapshots here before its first
// write and puts the knobs back through here:
// - a snapshot is every writable file the kernel exposes under the KSM sysfs directory, read from the
//   directory (not a fixed list), so a knob a newer kernel adds is put back too;
// - restoring writes in an order the kernel accepts: merge_across_nodes and max_page_sharing only change
//   with nothing shared, so run=2 goes first when they differ and run last; the advisor rule (in
//   scan-time mode the advisor owns pages_to_scan, and leaving scan-time resets it to 100) is applied;
//   every knob is tried, then checked, and what would not go back is reported together;
// - a KnobGuard persists what it will put back, with its pid and start time, atomically, before the
//   first write, so whoever starts next after a crash (SIGKILL, OOM kill) puts the host's knobs back
//   instead of snapshotting what the dead writer left (recoverKnobs, `pagefuse tune --restore`). Whoever can
//   write the record directory could make that root write any file: a record is read only from a directory
//   and file of root's (or this user's) that no one else can write, only for the sysfs root being restored,
//   and only when every knob is a KSM knob name with a value of its form; any other is skipped, and said so.
// Restoring is synchronous on purpose: it must also run from 'exit' and uncaught-exception handlers.
import { closeSync, constants, fstatSync, lstatSync, openSync, readFileSync, readdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PagefuseError } from '../errors.js';
import { distrustReason, ensureStateDirSync, removeStaleTempsSync, writeFileAtomicSync } from '../host/atomic.js';
import { DEFAULT_PROC_ROOT, readProcStatSync } from '../host/procfs.js';
import { readUpToSync } from '../host/regular-file.js';
import { COUNTER_NAMES, TUNABLES, isTunable, parseKnobText, type KnobValue } from './knobs.js';

export const DEFAULT_KSM_SYSFS = '/sys/kernel/mm/ksm';
/** Where crash records live: /run is emptied at boot, when the kernel's knobs are reset too. */
export const DEFAULT_RECORD_DIR = '/run/pagefuse';

/** Every writable KSM knob, by its kernel name, with the value the kernel prints (advisor_mode's word). */
export type KnobSnapshot = Record<string, KnobValue>;

/** Knobs that the kernel only lets change while no KSM page is shared (EBUSY otherwise). */
const NEEDS_UNMERGED = new Set(['merge_across_nodes', 'max_page_sharing']);

function readKnob(root: string, name: string): KnobValue | undefined {
  try {
    const value = parseKnobText(readFileSync(join(root, name), 'utf8'));
    // run can carry the transient KSM_RUN_OFFLINE bit (4) during memory hot-remove.
    return name === 'run' && typeof value === 'number' ? value & 3 : value;
  } catch {
    return undefined;
  }
}

/** Every writable file under the KSM sysfs root and its value (sorted by name). */
export function snapshotKnobs(sysfsRoot: string = DEFAULT_KSM_SYSFS): KnobSnapshot {
  let names: string[];
  try {
    names = readdirSync(sysfsRoot).sort();
  } catch (err) {
    throw new PagefuseError('ENOKSM', `KSM is not available: cannot read ${sysfsRoot} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  const out: KnobSnapshot = {};
  for (const name of names) {
    let writable: boolean;
    try {
      const st = statSync(join(sysfsRoot, name));
      writable = st.isFile() && (st.mode & 0o200) !== 0;
    } catch {
      continue;
    }
    if (!writable) continue;
    const value = readKnob(sysfsRoot, name);
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/**
 * The writes that put `found` back over `current`, in an order the kernel accepts. `only` limits it to
 * the knobs a writer touched (the Tuner leaves alone what it never wrote); the advisor rule may add
 * pages_to_scan, and an unmerge adds run.
 */
export function restorePlan(found: KnobSnapshot, current: KnobSnapshot, only?: Iterable<string>): [string, KnobValue][] {
  const keys = new Set(only ?? Object.keys(found));
  for (const k of [...keys]) if (!(k in found) || !(k in current)) keys.delete(k);
  // The advisor rule. In scan-time mode the advisor sets pages_to_scan itself (the kernel refuses
  // writes), so it is never put back then; leaving scan-time resets it to 100, so then it always is.
  const finalMode = keys.has('advisor_mode') ? found.advisor_mode : current.advisor_mode;
  const leavesScanTime = finalMode === 'none' && current.advisor_mode === 'scan-time';
  if (finalMode === 'scan-time') keys.delete('pages_to_scan');
  else if (leavesScanTime && 'pages_to_scan' in found) keys.add('pages_to_scan');
  const differs = (k: string) => current[k] !== found[k] || (k === 'pages_to_scan' && leavesScanTime);
  const changes = [...keys].filter(differs);
  const unmerge = changes.some((k) => NEEDS_UNMERGED.has(k));
  const run = found.run ?? current.run;
  const rank = (k: string): number => {
    if (k === 'advisor_mode') return found[k] === 'none' ? 1 : 4;
    if (NEEDS_UNMERGED.has(k)) return 2;
    return 3;
  };
  const body = changes.filter((k) => k !== 'run').sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const plan: [string, KnobValue][] = body.map((k) => [k, found[k]]);
  if (unmerge) plan.unshift(['run', 2]);
  if (run !== undefined && (unmerge || changes.includes('run'))) plan.push(['run', run]);
  return plan;
}

export interface RestoreResult {
  /** The knobs written, as [name, value] in the order written. */
  written: [string, KnobValue][];
}

/**
 * Puts `found` back (all of it, or the knobs in `only`), synchronously. Every write is tried; then each
 * knob is checked and written once more if it reads otherwise (a mode switch resets pages_to_scan).
 * Throws one error (code EKNOBS) naming every knob that would not go back.
 */
export function restoreKnobs(found: KnobSnapshot, options: { sysfsRoot?: string; only?: Iterable<string> } = {}): RestoreResult {
  const root = options.sysfsRoot ?? DEFAULT_KSM_SYSFS;
  const only = options.only === undefined ? undefined : [...options.only];
  const written: [string, KnobValue][] = [];
  const failed = new Map<string, string>();
  const write = (k: string, v: KnobValue) => {
    try {
      writeFileSync(join(root, k), `${v}\n`);
      written.push([k, v]);
      failed.delete(k);
    } catch (err) {
      failed.set(k, `${k}=${v}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  // What each found knob reads now (a knob the kernel no longer has is left out).
  const now = (): KnobSnapshot => {
    const out: KnobSnapshot = {};
    for (const k of Object.keys(found)) {
      const v = readKnob(root, k);
      if (v !== undefined) out[k] = v;
    }
    return out;
  };
  for (const [k, v] of restorePlan(found, now(), only)) write(k, v);
  // Once more for what still reads otherwise: a write that failed, or a knob another writer moved meanwhile.
  for (const [k, v] of restorePlan(found, now(), only)) write(k, v);
  for (const k of [...failed.keys()]) if (readKnob(root, k) === found[k]) failed.delete(k);
  if (failed.size > 0) {
    throw new PagefuseError('EKNOBS', `could not put back ${[...failed.values()].join('; ')} under ${root}`);
  }
  return { written };
}

// ---- crash records ---------------------------------------------------------------------------------

export interface KnobRecord {
  version: 1;
  /** Who wrote it: 'tune', 'set', 'bench', 'test'… (shown when it is recovered). */
  owner: string;
  pid: number;
  /** The writer's start time (clock ticks after boot, /proc/<pid>/stat): with the pid, one process. */
  startTime: number;
  /** When it was written (ms, fractional): recovery puts the newest back first. */
  at: number;
  sysfsRoot: string;
  knobs: KnobSnapshot;
  /** The knobs to put back; all of `knobs` when absent. */
  only?: string[];
}

export interface RecoveredKnobs {
  owner: string;
  pid: number;
  at: number;
  /** The knobs written to put the record back. */
  written: [string, KnobValue][];
  file: string;
}

export function recordDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.PAGEFUSE_STATE_DIR || DEFAULT_RECORD_DIR;
}

function startTimeOf(pid: number): number | undefined {
  try {
    return readProcStatSync(DEFAULT_PROC_ROOT, pid)?.startTime;
  } catch {
    return undefined;
  }
}

function recordAlive(r: KnobRecord): boolean {
  const st = startTimeOf(r.pid);
  return st !== undefined && st === r.startTime;
}

/**
 * A knob a record may hold: a file name under the KSM sysfs directory (lower-case letters and _, so never a
 * path), not a counter pagefuse knows, with a value of the knob's form: advisor_mode's words, else a whole
 * number from 0 (a writable knob pagefuse does not know yet included: every KSM knob the kernel has is one).
 */
function recordableKnob(name: string, value: unknown): boolean {
  if (!knobName(name)) return false;
  const rule = isTunable(name) ? TUNABLES[name] : undefined;
  if (rule?.kind === 'enum') return typeof value === 'string' && (rule.values as readonly string[]).includes(value);
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function knobName(name: string): boolean {
  return /^[a-z_]{1,64}$/.test(name) && !(COUNTER_NAMES as readonly string[]).includes(name);
}

/** A value from a record, for a warning: JSON, printable ASCII only (no newline, no terminal control), cut short. */
function shown(v: unknown): string {
  const text = (JSON.stringify(v) ?? String(v)).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** A record's text, checked field by field: the record, or why it is refused. `pid`: the one its file's name gives. */
function parseRecord(text: string, pid: number): KnobRecord | string {
  let r: Partial<Record<keyof KnobRecord, unknown>> | null;
  try {
    r = JSON.parse(text) as typeof r;
  } catch {
    return 'it is not JSON';
  }
  if (typeof r !== 'object' || r === null || Array.isArray(r)) return 'it is not a JSON object';
  if (r.version !== 1) return `version ${shown(r.version)} is not 1`;
  if (r.pid !== pid) return "its pid is not the one in the file's name";
  if (typeof r.startTime !== 'number' || !Number.isSafeInteger(r.startTime) || r.startTime < 0) return 'startTime is not a whole number';
  if (typeof r.at !== 'number' || !Number.isFinite(r.at)) return 'at is not a number';
  if (typeof r.owner !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(r.owner)) return 'owner is not a name';
  if (typeof r.sysfsRoot !== 'string' || r.sysfsRoot === '') return 'sysfsRoot is not a path';
  if (typeof r.knobs !== 'object' || r.knobs === null || Array.isArray(r.knobs)) return 'knobs is not an object';
  for (const [k, v] of Object.entries(r.knobs)) {
    if (!knobName(k)) return `knob ${shown(k)} is not the name of a KSM knob`;
    if (!recordableKnob(k, v)) return `knob ${k}=${shown(v)} is not a value of its form`;
  }
  if (r.only !== undefined && !(Array.isArray(r.only) && r.only.every((k) => typeof k === 'string' && knobName(k)))) {
    return 'only is not a list of KSM knob names';
  }
  return r as KnobRecord;
}

/** The most a record may hold: the knobs of a kernel are a few hundred bytes. */
const MAX_RECORD_BYTES = 64 * 1024;

/**
 * A record file's text, opened without following a link and without blocking, or why it is refused: it must be
 * a regular file of root's (or this user's) that group and others cannot write. Undefined when it is gone.
 */
function readRecordFile(file: string): string | { refused: string } | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined; // another recoverer got there first
    return { refused: code === 'ELOOP' ? 'it is a symbolic link' : `it cannot be read (${code ?? 'error'})` };
  }
  try {
    const st = fstatSync(fd);
    const why = distrustReason(st, 'file');
    if (why !== undefined) return { refused: why };
    const bytes = st.size > MAX_RECORD_BYTES ? null : readUpToSync(fd, MAX_RECORD_BYTES);
    if (bytes === null) return { refused: `it holds more than ${MAX_RECORD_BYTES} bytes` };
    return bytes.toString('utf8');
  } catch (err) {
    return { refused: `it cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
  } finally {
    closeSync(fd);
  }
}

/** Each refused record is said once per process: `tune --restore` lists the directory more than once. */
const warned = new Set<string>();

function warnRefused(file: string, why: string): void {
  const line = `pagefuse: skipped the knob record ${file}: ${why}`;
  if (warned.has(line)) return;
  warned.add(line);
  process.stderr.write(`${line}\n`);
}

function listRecords(dir: string): { file: string; record: KnobRecord }[] {
  let names: string[];
  let dirWhy: string | undefined;
  try {
    dirWhy = distrustReason(lstatSync(dir), 'directory');
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: { file: string; record: KnobRecord }[] = [];
  for (const name of names) {
    const m = /^knobs-([1-9]\d{0,15})-\d+\.json$/.exec(name);
    if (m === null) continue;
    const file = join(dir, name);
    if (dirWhy !== undefined) {
      warnRefused(file, `its directory ${dir}: ${dirWhy}`);
      continue;
    }
    const text = readRecordFile(file);
    if (text === undefined) continue;
    const record = typeof text === 'string' ? parseRecord(text, Number(m[1])) : text.refused;
    if (typeof record === 'string') warnRefused(file, record);
    else out.push({ file, record });
  }
  return out;
}

/** The records of live writers (this process's own included). */
export function liveRecords(dir: string = recordDir()): KnobRecord[] {
  return listRecords(dir)
    .map((r) => r.record)
    .filter((r) => recordAlive(r));
}

/** Dead writers' records for `sysfsRoot`, newest first. */
function deadRecords(dir: string, sysfsRoot: string): { file: string; record: KnobRecord }[] {
  const dead: { file: string; record: KnobRecord }[] = [];
  for (const { file, record } of listRecords(dir)) {
    if (record.sysfsRoot !== sysfsRoot) continue;
    if (!recordAlive(record)) dead.push({ file, record });
  }
  return dead.sort((a, b) => b.record.at - a.record.at);
}

/** Puts one dead writer's record back and removes it. */
function recoverRecord({ file, record }: { file: string; record: KnobRecord }): RecoveredKnobs {
  const { written } = restoreKnobs(record.knobs, { sysfsRoot: record.sysfsRoot, ...(record.only === undefined ? {} : { only: record.only }) });
  removeFile(file);
  return { owner: record.owner, pid: record.pid, at: record.at, written, file };
}

/**
 * Puts back what every dead writer recorded (newest first, so nested writers unwind in order) and
 * removes their records. Records of live processes are left alone. Only records for `sysfsRoot` (default
 * /sys/kernel/mm/ksm) are touched. A record refused (listRecords) is skipped whole, with a line on
 * stderr, and left in place.
 */
export function recoverKnobs(options: { dir?: string; sysfsRoot?: string } = {}): RecoveredKnobs[] {
  const dir = options.dir ?? recordDir();
  removeStaleTempsSync(dir);
  return deadRecords(dir, options.sysfsRoot ?? DEFAULT_KSM_SYSFS).map(recoverRecord);
}

function removeFile(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone (another recoverer got there first)
  }
}

export interface KnobGuardOptions {
  /** KSM's sysfs directory (default /sys/kernel/mm/ksm). */
  sysfsRoot?: string;
  /** Directory of crash records (default PAGEFUSE_STATE_DIR or /run/pagefuse); false: keep none. */
  recordDir?: string | false;
  /** The knobs that will be put back; all found when absent. */
  only?: Iterable<string>;
  /** Put dead writers' records back before the snapshot (default true). */
  recover?: boolean;
  /** Keep a record of its own (default true; false for a writer that means to leave its knobs set). */
  persist?: boolean;
}

let sequence = 0;
/** This process's guards not yet restored or released, oldest first. */
const active: KnobGuard[] = [];

/**
 * One writer's promise to put the knobs back. begin() recovers dead writers' records, snapshots every
 * writable knob, and persists the record before the caller's first write; restore() puts the found
 * knobs back and removes the record; release() only removes it (the writer keeps what it set).
 */
export class KnobGuard {
  readonly owner: string;
  readonly sysfsRoot: string;
  /** Every writable knob as found (after any recovery). */
  readonly found: KnobSnapshot;
  /** Dead writers' records put back before the snapshot. */
  readonly recovered: RecoveredKnobs[];
  private only: string[] | undefined;
  private readonly file: string | undefined;
  private readonly dir: string | false;
  private readonly at: number;
  private done = false;

  private constructor(
    owner: string,
    sysfsRoot: string,
    found: KnobSnapshot,
    recovered: RecoveredKnobs[],
    dir: string | false,
    file: string | undefined,
    only: string[] | undefined,
  ) {
    this.owner = owner;
    this.dir = dir;
    this.sysfsRoot = sysfsRoot;
    this.found = found;
    this.recovered = recovered;
    this.file = file;
    this.only = only;
    this.at = performance.timeOrigin + performance.now();
  }

  static begin(owner: string, options: KnobGuardOptions = {}): KnobGuard {
    const sysfsRoot = options.sysfsRoot ?? DEFAULT_KSM_SYSFS;
    const dir = options.recordDir === undefined ? recordDir() : options.recordDir;
    const recovered = dir !== false && options.recover !== false ? recoverKnobs({ dir, sysfsRoot }) : [];
    const found = snapshotKnobs(sysfsRoot);
    let file: string | undefined;
    if (dir !== false && options.persist !== false) {
      ensureStateDirSync(dir);
      file = join(dir, `knobs-${process.pid}-${++sequence}.json`);
    }
    const guard = new KnobGuard(owner, sysfsRoot, found, recovered, dir, file, options.only === undefined ? undefined : [...options.only]);
    guard.persist();
    active.push(guard);
    return guard;
  }

  /** The knobs this guard will put back. */
  get knobs(): string[] {
    return this.only ?? Object.keys(this.found);
  }

  /** Widens what is put back (the Tuner, before writing a knob for the first time); persisted at once. */
  cover(keys: Iterable<string>): void {
    if (this.only === undefined || this.done) return;
    const before = this.only.length;
    const next = new Set([...this.only, ...keys]);
    if (next.size === before) return;
    this.only = [...next];
    this.persist();
  }

  private persist(): void {
    if (this.file === undefined) return;
    const record: KnobRecord = {
      version: 1,
      owner: this.owner,
      pid: process.pid,
      startTime: startTimeOf(process.pid) ?? 0,
      at: this.at,
      sysfsRoot: this.sysfsRoot,
      // What the reader takes back: a knob of a form it would refuse (a newer kernel's word) would cost the whole record.
      knobs: Object.fromEntries(Object.entries(this.found).filter(([k, v]) => recordableKnob(k, v))),
      ...(this.only === undefined ? {} : { only: this.only }),
    };
    writeFileAtomicSync(this.file, `${JSON.stringify(record)}\n`);
  }

  get active(): boolean {
    return !this.done;
  }

  /**
   * Puts the found knobs back (those covered), then drops the record. What was taken after this guard
   * and is nested in it is put back first, newest first: this process's later guards (a Tuner inside a
   * bench), and the records of writers that died since it began (a child it ran, killed). A dead
   * child's record left for the next writer to recover would replay what the child found over what
   * this guard put back. Safe to call again.
   */
  restore(): RestoreResult {
    if (this.done) return { written: [] };
    const at = active.indexOf(this);
    const inner = active.slice(at + 1).filter((g) => g.sysfsRoot === this.sysfsRoot);
    const dead = this.dir === false ? [] : deadRecords(this.dir, this.sysfsRoot).filter((d) => d.record.at > this.at);
    const steps = [
      ...inner.map((g) => ({ at: g.at, undo: () => void g.restore() })),
      ...dead.map((d) => ({ at: d.record.at, undo: () => void recoverRecord(d) })),
    ].sort((a, b) => b.at - a.at);
    for (const step of steps) step.undo();
    const result = restoreKnobs(this.found, { sysfsRoot: this.sysfsRoot, ...(this.only === undefined ? {} : { only: this.only }) });
    this.release();
    return result;
  }

  /** Drops the record without writing anything (the writer means to leave its knobs). */
  release(): void {
    if (this.done) return;
    this.done = true;
    active.splice(active.indexOf(this), 1);
    if (this.file !== undefined) removeFile(this.file);
  }
}
