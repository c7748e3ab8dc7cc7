// The observation a policy decides on: /proc/meminfo, PSI, the VMs, KSM knobs and counters, ksmd's CPU time.
import { availableParallelism } from 'node:os';
import { readMemInfo } from '../host/meminfo.js';
import { readMemoryPressure } from '../host/pressure.js';
import { KsmdClock } from '../host/ksmd.js';
import { knownCounters } from '../ksm/counters.js';
import type { VmInfo } from '../vm/discover.js';
import type { Estimate, KsmKnobs, Observation } from './types.js';
import type { PaceSample } from './policies/adaptive.js';

/** What the tuner needs of KSM control: the Ksm class fits it; tests may pass a fake sysfs through it. */
export interface KsmControl {
  read(): Promise<{ settings: Record<string, number | string | undefined>; counters: Record<string, number | string | undefined> }>;
  configure(settings: Partial<KsmKnobs>): Promise<unknown>;
  /**
   * One knob or counter, one file (Ksm.get). With set, what the pacer uses between decisions, 4 times a
   * second: read() looks at every file of the directory (24 on 6.18) and configure() reads them all before
   * and after its write. Without them the pacer goes through read() and configure().
   */
  get?(name: string): Promise<number | string | undefined>;
  /** One knob written, checked, without configure()'s reads (Ksm.set). */
  set?(key: keyof KsmKnobs, value: number | string): Promise<unknown>;
}

/** The files the pacer reads (PaceSample): pages_scanned and the knobs its step depends on. */
const PACE_FILES = ['pages_scanned', 'run', 'pages_to_scan', 'sleep_millisecs'] as const;

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

export interface ObserverOptions {
  procRoot: string;
  ksm: KsmControl;
  pageSize: number;
  cpus?: number;
  /** Monotonic ms clock (tests pass their own). */
  now?: () => number;
}

export class Observer {
  private readonly clock: KsmdClock;
  private readonly cpus: number;
  private readonly now: () => number;

  constructor(private readonly options: ObserverOptions) {
    this.cpus = options.cpus ?? availableParallelism();
    this.now = options.now ?? (() => performance.now());
    this.clock = new KsmdClock(options.procRoot);
  }

  /** ksmd's CPU time so far, seconds; null when ksmd is not found. */
  async ksmdCpu(): Promise<number | null> {
    return (await this.clock.cpuSeconds()) ?? null;
  }

  /**
   * The pacer's light look between decisions: pages_scanned, run, pages_to_scan and sleep_millisecs (one
   * file each, through KsmControl.get; all of KSM's sysfs through read() where there is no get) and ksmd's
   * CPU clock; no /proc/meminfo, PSI or VMs.
   */
  async paceSample(): Promise<PaceSample> {
    const ksm = this.options.ksm;
    if (ksm.get === undefined) {
      const [state, ksmdCpuSeconds] = await Promise.all([ksm.read(), this.ksmdCpu()]);
      return { time: this.now(), pagesScanned: num(state.counters.pages_scanned), ksmdCpuSeconds, knobs: knobsFrom(state.settings) };
    }
    const [values, ksmdCpuSeconds] = await Promise.all([Promise.all(PACE_FILES.map((name) => ksm.get!(name))), this.ksmdCpu()]);
    const [pagesScanned, run, pages, sleep] = values;
    return { time: this.now(), pagesScanned: num(pagesScanned), ksmdCpuSeconds, knobs: knobsFrom({ run, pages_to_scan: pages, sleep_millisecs: sleep }) };
  }

  async observe(vms: VmInfo[], estimate: Estimate | null): Promise<Observation> {
    const root = this.options.procRoot;
    const [memory, pressure, state, ksmdCpuSeconds] = await Promise.all([
      readMemInfo(root),
      readMemoryPressure(root),
      this.options.ksm.read(),
      this.ksmdCpu(),
    ]);
    return {
      time: this.now(),
      memory,
      pressure,
      vms,
      knobs: knobsFrom(state.settings),
      counters: knownCounters(state.counters),
      ksmdCpuSeconds,
      estimate,
      cpus: this.cpus,
      pageSize: this.options.pageSize,
    };
  }
}
