// ksmd, the kernel thread that merges pages: finding it and reading its CPU time.
import { listPids, readProcStat, readProcText, USER_HZ } from './procfs.js';

/** The ksmd kernel thread: comm "ksmd", child of kthreadd (pid 2). */
export async function findKsmd(procRoot = '/proc'): Promise<number | undefined> {
  for (const pid of await listPids(procRoot)) {
    if (pid > 100_000) break; // kernel threads start early; no need to read every process
    const stat = await readProcStat(procRoot, pid);
    if (stat?.comm === 'ksmd' && stat.ppid === 2) return pid;
  }
  return undefined;
}

/** A thread's CPU time in seconds: schedstat's nanoseconds when present, else stat's utime+stime ticks. */
export async function cpuSeconds(procRoot: string, pid: number): Promise<number | undefined> {
  const sched = await readProcText(procRoot, pid, 'schedstat');
  const ns = sched === undefined ? NaN : Number(sched.trim().split(/\s+/)[0]);
  if (Number.isFinite(ns)) return ns / 1e9;
  const stat = await readProcStat(procRoot, pid);
  return stat === undefined ? undefined : (stat.utime + stat.stime) / USER_HZ;
}

/**
 * How long a search that found no ksmd is trusted. The kernel starts ksmd at boot or never, so a search
 * that misses it (a procfs without kernel threads: a PID namespace, a container) misses it again; each
 * search reads the stat of every process, which made it most of an idle daemon's per-process cost there.
 */
export const KSMD_MISSING_RETRY_MS = 10 * 60_000;

/** ksmd's cumulative CPU time in seconds, its pid looked up once (and again if it changes). */
export class KsmdClock {
  private pid: number | undefined;
  /** performance.now() of the last search that found no ksmd. */
  private missedAt: number | undefined;

  constructor(
    private readonly procRoot = '/proc',
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Undefined where ksmd cannot be found (no KSM, or a procfs without kernel threads). */
  async cpuSeconds(): Promise<number | undefined> {
    for (let attempt = 0; attempt < 2; attempt++) {
      if (this.pid === undefined) {
        if (this.missedAt !== undefined && this.now() - this.missedAt < KSMD_MISSING_RETRY_MS) return undefined;
        this.pid = await findKsmd(this.procRoot);
        this.missedAt = this.pid === undefined ? this.now() : undefined;
      }
      if (this.pid === undefined) return undefined;
      const seconds = await cpuSeconds(this.procRoot, this.pid);
      if (seconds !== undefined) return seconds;
      this.pid = undefined; // ksmd's pid changed: look again once
    }
    return undefined;
  }
}
