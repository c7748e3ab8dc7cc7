// One tuner per host: flock(2) on a lock file held open for the holder's life, and a look for other
// tuners that would write the same knobs: ksmtuned (its process or pid file), or a pagefuse tune
// (installed, or run from a checkout's dist/ or src/).
import { closeSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { ensureDirSync } from './atomic.js';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { PagefuseError, explain } from '../errors.js';
import { listPids, parseStat, processAlive, readProcText, splitCmdline } from './procfs.js';

export const DEFAULT_LOCK_PATH = '/run/pagefuse/tune.lock';
export const KSMTUNED_PID_FILES = ['/run/ksmtune.pid', '/var/run/ksmtune.pid'];

/**
 * Whether argv is a `pagefuse tune …` that drives ksmd (the installed bin, or node running the CLI's bin
 * script). A dry run, `--restore` and `--help` write no knob while they run, and are not counted.
 */
export function isPagefuseTune(argv: readonly string[]): boolean {
  for (let i = 0; i < argv.length - 1; i++) {
    const a = argv[i];
    const isCli = basename(a) === 'pagefuse' || /(^|[/\\])(dist|src)[/\\]cli[/\\]bin\.[jt]s$/.test(a);
    if (!isCli) continue;
    const rest = argv.slice(i + 1);
    const command = rest.findIndex((x) => !x.startsWith('-'));
    if (command < 0 || rest[command] !== 'tune') return false;
    return !rest.slice(command + 1).some((x) => x === '--dry-run' || x === '--restore' || x === '--help' || x === '-h');
  }
  return false;
}

export interface OtherTuner {
  pid: number;
  what: string;
  /** The tuner: ksmtuned or another pagefuse tune. */
  kind: 'ksmtuned' | 'pagefuse tune';
  /** The pid file it was found by, if any. */
  pidFile?: string;
}

/** Other tuners running now (never this process). */
export async function findOtherTuners(procRoot = '/proc', pidFiles = KSMTUNED_PID_FILES): Promise<OtherTuner[]> {
  const found: OtherTuner[] = [];
  for (const file of pidFiles) {
    const text = await readFile(file, 'utf8').catch(() => undefined);
    const pid = Number(text?.trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) found.push({ pid, what: `ksmtuned (pid file ${file})`, kind: 'ksmtuned', pidFile: file });
  }
  for (const pid of await listPids(procRoot)) {
    if (pid === process.pid || found.some((f) => f.pid === pid)) continue;
    const statText = await readProcText(procRoot, pid, 'stat');
    const comm = statText === undefined ? undefined : parseStat(statText)?.comm;
    if (comm === undefined) continue;
    const cmdline = await readProcText(procRoot, pid, 'cmdline');
    const argv = cmdline === undefined ? [] : splitCmdline(cmdline);
    if (comm === 'ksmtuned' || argv.slice(0, 2).some((a) => basename(a) === 'ksmtuned')) {
      found.push({ pid, what: 'ksmtuned', kind: 'ksmtuned' });
    } else if (isPagefuseTune(argv)) {
      found.push({ pid, what: 'pagefuse tune', kind: 'pagefuse tune' });
    }
  }
  return found;
}

/** The lock file: PAGEFUSE_TUNE_LOCK, else /run/pagefuse/tune.lock. */
export function tuneLockPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.PAGEFUSE_TUNE_LOCK || DEFAULT_LOCK_PATH;
}

/** The host's single-instance tuner lock, held until release() or the process's end. */
export interface TunerLock {
  readonly path: string;
  /** Whether this process holds it (false only when taken with force while another holder had it). */
  readonly held: boolean;
  release(): void;
}

export interface TunerLockOptions {
  /** The lock file (default PAGEFUSE_TUNE_LOCK, else /run/pagefuse/tune.lock). */
  path?: string;
  /** Go on without the lock when another holder has it (pagefuse tune --force). */
  force?: boolean;
}

function holderPid(fd: number): number | undefined {
  try {
    const buf = Buffer.alloc(32);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const pid = Number(buf.subarray(0, n).toString().trim());
    // The holder writes its pid just after it locks: until then the file may name a dead one.
    return Number.isInteger(pid) && pid > 0 && processAlive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes the host's tuner lock: flock(2) on a file held open for the life of the holder, so a crash
 * releases it and of two starters exactly one wins, whatever the file says. The file is never removed
 * (a starter could otherwise lock a file that is no longer the lock). A held lock is refused with
 * EBUSY, naming the holder's pid, unless `force`. Every tuner takes it: the pagefuse tune daemon, an
 * in-process Tuner, and embedders who drive the knobs themselves.
 */
export async function lockTuner(options: TunerLockOptions = {}): Promise<TunerLock> {
  const path = options.path ?? tuneLockPath();
  const { native } = await import('../native.js');
  let fd: number;
  try {
    ensureDirSync(dirname(path));
    fd = openSync(path, 'a+', 0o644);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      throw explain(err, `needs root: creating the tuner lock ${path} (PAGEFUSE_TUNE_LOCK names another file)`, 'EACCES');
    }
    throw explain(err, `cannot open the tuner lock ${path}: ${(err as Error).message}`);
  }
  let taken: boolean;
  try {
    taken = native.tryLockExclusive(fd);
  } catch (err) {
    closeSync(fd);
    throw explain(err, `cannot lock ${path}: ${(err as Error).message}`);
  }
  if (!taken) {
    const pid = holderPid(fd);
    closeSync(fd);
    if (!options.force) {
      const who = pid === undefined ? 'another pagefuse tuner' : pid === process.pid ? `a Tuner in this process (pid ${pid})` : `another pagefuse tuner (pid ${pid})`;
      throw new PagefuseError('EBUSY', `${who} holds ${path}: stop it first, or force it (--force; lock: { force: true } in the API)`, { path });
    }
    return { path, held: false, release: () => undefined };
  }
  try {
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
  } catch {
    // The pid is only for messages: the lock itself is the flock.
  }
  let open = true;
  return {
    path,
    held: true,
    release() {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
  };
}

/** lockTuner() for the CLI: resolves to its release function. */
export async function acquireTuneLock(path = tuneLockPath(), force = false): Promise<() => Promise<void>> {
  const lock = await lockTuner({ path, force });
  return async () => lock.release();
}
