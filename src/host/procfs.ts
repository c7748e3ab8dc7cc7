// Readers for /proc files, with the proc root injectable so tests can use fixture trees. Every other
// module reads a process's comm, cmdline, stat and status through these.
import { readFileSync } from 'node:fs';
import { readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { native } from '../native.js';

export const DEFAULT_PROC_ROOT = '/proc';

/** Errors that mean "the process (or file) is gone or not ours to see": the caller moves on. */
const VANISHED = new Set(['ENOENT', 'ESRCH', 'ENOTDIR', 'EACCES', 'EPERM', 'EINVAL']);

function vanished(err: unknown): boolean {
  return VANISHED.has((err as NodeJS.ErrnoException)?.code ?? '');
}

/** A /proc file's text, or undefined when it (or its process) does not exist or is not readable. */
export async function readProcText(procRoot: string, ...parts: (string | number)[]): Promise<string | undefined> {
  try {
    return await readFile(join(procRoot, ...parts.map(String)), 'utf8');
  } catch (err) {
    if (vanished(err)) return undefined;
    throw err;
  }
}

/**
 * readProcText without a trip through the thread pool, for small files read often (stat, uptime): a
 * promise read costs four pool round trips. Not for files whose read takes the target's mmap lock
 * (cmdline, smaps), which can block behind it.
 */
export function readProcTextSync(procRoot: string, ...parts: (string | number)[]): string | undefined {
  try {
    return readFileSync(join(procRoot, ...parts.map(String)), 'utf8');
  } catch (err) {
    if (vanished(err)) return undefined;
    throw err;
  }
}

export async function readProcLink(procRoot: string, ...parts: (string | number)[]): Promise<string | undefined> {
  try {
    return await readlink(join(procRoot, ...parts.map(String)));
  } catch (err) {
    if (vanished(err)) return undefined;
    throw err;
  }
}

/**
 * Whether this process sees every process of the host under `procRoot`: it is in the initial PID namespace,
 * its NSpid line (Linux 4.1+) naming one pid. False in a container's or `unshare -p`'s namespace, and for a
 * proc root that is not this process's (a fixture without `self`).
 */
export async function seesWholeHost(procRoot: string): Promise<boolean> {
  const status = await readProcText(procRoot, 'self', 'status').catch(() => undefined);
  const m = status === undefined ? null : /^NSpid:\s*(.*)$/m.exec(status);
  return m !== null && m[1].trim().split(/\s+/).length === 1;
}

/** Every numeric entry of the proc root: the pids alive right now. */
export async function listPids(procRoot: string): Promise<number[]> {
  return pidsOf(await readdir(procRoot));
}

/**
 * The pids under the proc root with their directories' inodes, [pid, inode, …] by pid, in one pass in the
 * addon; null when exactly `previous` (no process came or went, and no pid names a new one). A pid whose
 * inode changed names a new process, or the same one whose cached entry the kernel dropped (its start time tells).
 */
export function listPidEntriesSync(procRoot: string, previous?: Float64Array): Float64Array | null {
  return native.procPids(procRoot, previous);
}

function pidsOf(names: string[]): number[] {
  const pids: number[] = [];
  for (const name of names) {
    if (/^[1-9][0-9]*$/.test(name)) pids.push(Number(name));
  }
  return pids.sort((a, b) => a - b);
}

/** /proc/<pid>/cmdline: NUL-separated arguments (the last one NUL-terminated). */
/**
 * Whether a process with this pid exists (one of another user included: EPERM means it does). A pid that is
 * not a positive integer is never alive: kill(0) and kill(-1) would signal whole groups.
 */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function splitCmdline(raw: string): string[] {
  if (raw.length === 0) return [];
  const args = raw.split('\0');
  if (args[args.length - 1] === '') args.pop();
  return args;
}

/** "Key:   123 kB" lines (/proc/meminfo, /proc/<pid>/status) → numbers as written (kB stay kB). */
export function parseKeyValues(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^([^:\s]+):\s+(\d+)(?:\s+kB)?\s*$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

/**
 * One "Key:   123 kB" line's number, as parseKeyValues reads it, found without parsing the other lines:
 * what the idle tuner reads every few seconds (meminfo) and at each decision for every VM (status), where
 * a regular expression per line is most of the cost under --jitless (no regexp compiler either).
 */
export function keyValue(text: string, key: string): number | undefined {
  const head = `${key}:`;
  let start: number;
  if (text.startsWith(head)) {
    start = head.length;
  } else {
    const at = text.indexOf(`\n${head}`);
    if (at < 0) return undefined;
    start = at + 1 + head.length;
  }
  const end = text.indexOf('\n', start);
  const m = /^\s+(\d+)(?:\s+kB)?\s*$/.exec(text.slice(start, end < 0 ? text.length : end));
  return m === null ? undefined : Number(m[1]);
}

export interface ProcStat {
  comm: string;
  state: string;
  ppid: number;
  /** Page faults the process took that needed no I/O (minflt) and that did (majflt). */
  minflt: number;
  majflt: number;
  /** Clock ticks (USER_HZ) in user and system mode. */
  utime: number;
  stime: number;
  /** Clock ticks after boot when the process started: with the pid, it names one process. */
  startTime: number;
  /** The kernel's PF_* flags (field 9): PF_KTHREAD marks a kernel thread. */
  flags: number;
}

/** A kernel thread (ksmd, kthreadd…): it has no user memory. */
export const PF_KTHREAD = 0x00200000;

/** /proc/<pid>/stat: the comm is parenthesised and may itself contain spaces and parentheses. */
export function parseStat(text: string): ProcStat | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const rest = text.slice(close + 2).trim().split(/\s+/);
  // rest[0] is field 3 (state); field n is rest[n - 3].
  const field = (n: number) => Number(rest[n - 3]);
  return {
    comm: text.slice(open + 1, close),
    state: rest[0] ?? '?',
    ppid: field(4),
    minflt: field(10),
    majflt: field(12),
    utime: field(14),
    stime: field(15),
    startTime: field(22),
    flags: field(9),
  };
}

/** /proc/<pid>/stat parsed, or undefined when the process is gone or not ours to see. */
export async function readProcStat(procRoot: string, pid: number | 'self'): Promise<ProcStat | undefined> {
  const text = await readProcText(procRoot, pid, 'stat');
  return text === undefined ? undefined : parseStat(text);
}

/** readProcStat for callers that must not yield (spawnMerged registers its child before it returns). */
export function readProcStatSync(procRoot: string, pid: number | 'self'): ProcStat | undefined {
  const text = readProcTextSync(procRoot, pid, 'stat');
  return text === undefined ? undefined : parseStat(text);
}

/** The command name (/proc/<pid>/comm, at most 15 bytes, set by the process itself: untrusted). */
export async function readComm(procRoot: string, pid: number | 'self'): Promise<string | undefined> {
  const text = await readProcText(procRoot, pid, 'comm');
  return text === undefined ? undefined : stripNewline(text);
}

/** readComm for synchronous callers (scan() names its targets before it starts the native job). */
export function readCommSync(procRoot: string, pid: number | 'self'): string | undefined {
  try {
    return stripNewline(readFileSync(join(procRoot, String(pid), 'comm'), 'utf8'));
  } catch (err) {
    if (vanished(err)) return undefined;
    throw err;
  }
}

function stripNewline(text: string): string {
  return text.endsWith('\n') ? text.slice(0, -1) : text;
}

/** /proc/<pid>/cmdline as arguments (empty for kernel threads and zombies). */
export async function readCmdline(procRoot: string, pid: number | 'self'): Promise<string[] | undefined> {
  const text = await readProcText(procRoot, pid, 'cmdline');
  return text === undefined ? undefined : splitCmdline(text);
}

/** /proc/<pid>/status: its numeric lines (kB as written, e.g. VmRSS). */
export async function readStatus(procRoot: string, pid: number | 'self'): Promise<Record<string, number> | undefined> {
  const text = await readProcText(procRoot, pid, 'status');
  return text === undefined ? undefined : parseKeyValues(text);
}

/** USER_HZ: 100 on every Linux architecture Node runs on (the kernel fixes it for userspace ABI). */
export const USER_HZ = 100;

/** The CPU's model name and flags from /proc/cpuinfo (its first processor), or undefined where unreadable. */
export async function readCpuInfo(procRoot = DEFAULT_PROC_ROOT): Promise<{ model: string; flags: string[] } | undefined> {
  const text = await readProcText(procRoot, 'cpuinfo');
  if (text === undefined) return undefined;
  const field = (name: string): string | undefined => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim();
  return { model: field('model name') ?? 'unknown', flags: (field('flags') ?? '').split(/\s+/).filter((f) => f.length > 0) };
}
