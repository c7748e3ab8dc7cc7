// The observation a policy decides on: /proc/meminfo, PSI, the VMs, KSM knobs and counters, ksmd's CPU time.
import { availableParallelism } from 'node:os';
import { listPids, parseKeyValues, parseStat, readProcText, USER_HZ } from '../host/procfs.js';
import type { VmInfo } from '../vm/discover.js';
import type { Estimate, KsmCounters, KsmKnobs, MemoryInfo, MemoryPressure, Observation } from './types.js';

/** What the tuner needs of KSM control: the Ksm class fits it; tests may pass a fake sysfs through it. */
export interface KsmControl {
  read(): Promise<{ settings: Record<string, number | string | undefined>; counters: Record<string, number | string | undefined> }>;
  configure(settings: Partial<KsmKnobs>): Promise<unknown>;
}

export async function readMemory(procRoot: string): Promise<MemoryInfo> {
  const text = await readProcText(procRoot, 'meminfo');
  if (text === undefined) throw new Error(`cannot read ${procRoot}/meminfo`);
  const m = parseKeyValues(text);
  return {
    memTotalKiB: m.MemTotal ?? 0,
    memFreeKiB: m.MemFree ?? 0,
    // Kernels before 3.14 lack MemAvailable: free + page cache is the old approximation.
    memAvailableKiB: m.MemAvailable ?? (m.MemFree ?? 0) + (m.Cached ?? 0),
    buffersKiB: m.Buffers ?? 0,
    cachedKiB: m.Cached ?? 0,
    swapTotalKiB: m.SwapTotal ?? 0,
    swapFreeKiB: m.SwapFree ?? 0,
  };
}

/** /proc/pressure/memory, or null where the kernel has no PSI (CONFIG_PSI off, or psi=0). */
export async function readPressure(procRoot: string): Promise<MemoryPressure | null> {
  const text = await readProcText(procRoot, 'pressure', 'memory');
  if (text === undefined) return null;
  const avg = (kind: string) => Number(new RegExp(`^${kind} avg10=([\\d.]+)`, 'm').exec(text)?.[1] ?? 0);
  return { someAvg10: avg('some'), fullAvg10: avg('full') };
}

/** The ksmd kernel thread: comm "ksmd", child of kthreadd (pid 2). */
export async function findKsmd(procRoot: string): Promise<number | undefined> {
  for (const pid of await listPids(procRoot)) {
    if (pid > 100_000) break; // kernel threads start early; no need to read every process
    const text = await readProcText(procRoot, pid, 'stat');
    const stat = text === undefined ? undefined : parseStat(text);
    if (stat?.comm === 'ksmd' && stat.ppid === 2) return pid;
  }
  return undefined;
}

/** ksmd's CPU time in seconds: schedstat's nanoseconds when present, else stat's utime+stime ticks. */
export async function cpuSeconds(procRoot: string, pid: number): Promise<number | null> {
  const sched = await readProcText(procRoot, pid, 'schedstat');
  const ns = sched === undefined ? NaN : Number(sched.trim().split(/\s+/)[0]);
  if (Number.isFinite(ns)) return ns / 1e9;
  const text = await readProcText(procRoot, pid, 'stat');
  const stat = text === undefined ? undefined : parseStat(text);
  return stat === undefined ? null : (stat.utime + stat.stime) / USER_HZ;
}

function num(v: number | string | undefined): number | undefined {
  return typeof v === 'number' ? v : undefined;
}

export function knobsFrom(settings: Record<string, number | string | undefined>): KsmKnobs {
  const knobs: KsmKnobs = {
    run: num(settings.run) ?? 0,
    pages_to_scan: num(settings.pages_to_scan) ?? 0,
    sleep_millisecs: num(settings.sleep_millisecs) ?? 0,
  };
  const mode = settings.advisor_mode;
  if (mode === 'none' || mode === 'scan-time') knobs.advisor_mode = mode;
  const maxCpu = num(settings.advisor_max_cpu);
  if (maxCpu !== undefined) knobs.advisor_max_cpu = maxCpu;
  return knobs;
}

export function countersFrom(counters: Record<string, number | string | undefined>): KsmCounters {
  const c: KsmCounters = {
    pages_shared: num(counters.pages_shared) ?? 0,
    pages_sharing: num(counters.pages_sharing) ?? 0,
    pages_unshared: num(counters.pages_unshared) ?? 0,
    pages_volatile: num(counters.pages_volatile) ?? 0,
    full_scans: num(counters.full_scans) ?? 0,
  };
  const scanned = num(counters.pages_scanned);
  if (scanned !== undefined) c.pages_scanned = scanned;
  const zero = num(counters.ksm_zero_pages);
  if (zero !== undefined) c.ksm_zero_pages = zero;
  return c;
}

export interface ObserverOptions {
  procRoot: string;
  ksm: KsmControl;
  pageSize: number;
  cpus?: number;
  /** Monotonic ms clock (tests pass their own). */
  now?: () => number;
}

export class Observer {
  private ksmdPid: number | undefined;
  private readonly cpus: number;
  private readonly now: () => number;

  constructor(private readonly options: ObserverOptions) {
    this.cpus = options.cpus ?? availableParallelism();
    this.now = options.now ?? (() => performance.now());
  }

  async ksmdCpu(): Promise<number | null> {
    const root = this.options.procRoot;
    if (this.ksmdPid !== undefined) {
      const s = await cpuSeconds(root, this.ksmdPid);
      if (s !== null) return s;
    }
    this.ksmdPid = await findKsmd(root);
    return this.ksmdPid === undefined ? null : cpuSeconds(root, this.ksmdPid);
  }

  async observe(vms: VmInfo[], estimate: Estimate | null): Promise<Observation> {
    const root = this.options.procRoot;
    const [memory, pressure, state, ksmdCpuSeconds] = await Promise.all([
      readMemory(root),
      readPressure(root),
      this.options.ksm.read(),
      this.ksmdCpu(),
    ]);
    return {
      time: this.now(),
      memory,
      pressure,
      vms,
      knobs: knobsFrom(state.settings),
      counters: countersFrom(state.counters),
      ksmdCpuSeconds,
      estimate,
      cpus: this.cpus,
      pageSize: this.options.pageSize,
    };
  }
}
