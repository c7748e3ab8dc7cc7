// One tuner per host: a lock file holding the daemon's pid (a dead or foreign holder is stale), and a
// look for other tuners that would write the same knobs: ksmtuned (its process or pid file), or another
// pagefuse tune started with a different lock path.
import { mkdir, open, readFile, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { PagefuseError, explain } from '../errors.js';
import { listPids, parseStat, readProcText, splitCmdline } from './procfs.js';

export const DEFAULT_LOCK_PATH = '/run/pagefuse/tune.lock';
export const KSMTUNED_PID_FILES = ['/run/ksmtune.pid', '/var/run/ksmtune.pid'];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether argv is `pagefuse tune …` (the installed bin, or node running the CLI's bin script). */
export function isPagefuseTune(argv: readonly string[]): boolean {
  for (let i = 0; i < argv.length - 1; i++) {
    const a = argv[i];
    const isCli = basename(a) === 'pagefuse' || /pagefuse.*[/\\]cli[/\\]bin\.[jt]s$/.test(a) || /(^|[/\\])pagefuse[/\\].*bin\.[jt]s$/.test(a);
    if (isCli) return argv.slice(i + 1).find((x) => !x.startsWith('-')) === 'tune';
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
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) found.push({ pid, what: `ksmtuned (pid file ${file})`, kind: 'ksmtuned', pidFile: file });
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

/** A holder is live only while its pid runs pagefuse tune (a pid reused by another program is stale). */
async function isTuneProcess(pid: number): Promise<boolean> {
  if (!alive(pid)) return false;
  const cmdline = await readProcText('/proc', pid, 'cmdline');
  return cmdline !== undefined && isPagefuseTune(splitCmdline(cmdline));
}

async function holder(path: string): Promise<number | undefined> {
  const text = await readFile(path, 'utf8').catch(() => undefined);
  const pid = Number(text?.trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * Takes the host's tuner lock, replacing a stale one (holder gone). A live holder is refused with
 * EBUSY unless `force`. Resolves to the release function (removes the file if it still names us).
 */
export async function acquireTuneLock(path = DEFAULT_LOCK_PATH, force = false): Promise<() => Promise<void>> {
  try {
    return await takeTuneLock(path, force);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      throw explain(err, `needs root: creating the tuner lock ${path} (PAGEFUSE_TUNE_LOCK names another file)`, 'EACCES');
    }
    throw err;
  }
}

async function takeTuneLock(path: string, force: boolean): Promise<() => Promise<void>> {
  await mkdir(dirname(path), { recursive: true });
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o644);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return release(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const pid = await holder(path);
    const live = pid !== undefined && pid !== process.pid && (await isTuneProcess(pid));
    if (live && !force) {
      throw new PagefuseError('EBUSY', `another pagefuse tune (pid ${pid}) holds ${path}: stop it first, or pass --force`, { path });
    }
    if (force || !live) {
      // Stale (or forced): write ourselves in place.
      await writeFile(path, `${process.pid}\n`);
      return release(path);
    }
  }
  throw new PagefuseError('EBUSY', `could not take ${path}`, { path });
}

function release(path: string): () => Promise<void> {
  let done = false;
  return async () => {
    if (done) return;
    done = true;
    if ((await holder(path)) === process.pid) await unlink(path).catch(() => undefined);
  };
}
