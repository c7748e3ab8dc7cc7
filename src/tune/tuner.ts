// The Tuner: watches VMs, schedules scans, asks the policy, writes the knobs it decides, and puts back
// the knobs it found when it stops, when its process exits or crashes, and (through its crash record)
// after a SIGKILL, at the next start. One tuner per host: start() takes the host lock. Everything is asynchronous: scans run off the event loop, /proc and
// sysfs reads are small async file reads.
import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import { PagefuseError, abortError, invalidArgType, invalidNumber, throwIfAborted } from '../errors.js';
import { Ksm } from '../ksm/ksm.js';
import type { KsmSettings } from '../ksm/knobs.js';
import { KnobGuard, restorePlan, type KnobSnapshot, type RecoveredKnobs } from '../ksm/snapshot.js';
import { lockTuner, type TunerLock } from '../host/lock.js';
import { installExitCleanup } from './cleanup.js';
import { PAGE_SIZE, Region } from '../region.js';
import { DEFAULT_PROC_ROOT } from '../host/procfs.js';
import { VmWatcher, type VmInfo } from '../vm/discover.js';
import { checkCpuBudget, checkPolicy, defaultConfig, type PolicyName, type TuneConfig } from './config.js';
import { Observer, knobsFrom, type KsmControl } from './observe.js';
import { ScanScheduler, scanThreadsFor, type ScanFn } from './schedule.js';
import { createTunerScan } from './scan-adapter.js';
import { adaptive, initialAdaptiveState, memoryTight, PACE_MS, repace, type AdaptiveConfig, type AdaptiveState, type PaceSample } from './policies/adaptive.js';
import { readMemInfoSync } from '../host/meminfo.js';
import { readMemoryPressureSync } from '../host/pressure.js';
import { kernelAdvisor } from './policies/kernel-advisor.js';
import { initialKsmtunedState, ksmtuned, type KsmtunedState } from './policies/ksmtuned.js';
import type { Decision, KsmKnobs, Observation, VmSaved } from './types.js';
import type { KsmCounters } from '../ksm/counters.js';
import { sumSaved, totalSavedPages } from '../ksm/savings.js';
import { HostSource } from '../report/source.js';
import { figures as savingsFigures, hostSavings } from '../report/model.js';
import { OvercommitGuard, type OvercommitRisk } from '../safety/exposure.js';
import { parseIsolation, readIsolation, type Isolation } from '../safety/isolation.js';
import { Registry, onRegistryChange } from '../safety/registry.js';
import { admit } from '../safety/admission.js';

export const DEFAULT_CPU_BUDGET = 0.25;
const DEFAULT_ADAPTIVE_INTERVAL_MS = 2_000;
// A second: a VM that lives a few seconds is still seen coming and going (scripts/soak-tune.ts), and an
// exit within about two even when the poll waits behind a decision. A poll reads /proc's directory and what
// is new in it; the VMs' figures are read at decisions. The look itself is most of an idle daemon's CPU:
// at 500 ms, 4 idle VMs cost 0.34 % of a CPU, at 1 s 0.22 % (scripts/idle-cost.ts, 120 s, load 10).
const VM_POLL_MS = 1_000;
/**
 * While ksmd is stopped and nothing changes, a decision is made this often at most (ksmtuned's own interval
 * is 60 s). Decisions come sooner when a VM comes or goes, a scan ends, memory turns tight or eases, a
 * hold ends, or on SIGUSR1; while ksmd runs, one comes every interval.
 */
const IDLE_DECIDE_MS = 60_000;
/**
 * The VMs' saved figure walks their page maps (about 1 ms per 100 MiB, more on a busy host): while ksmd
 * runs, at most this often; at a decision that leaves it stopped, afresh, then not again for
 * SAVED_REUSE_MS while KSM's counters and the VMs hold still.
 */
const SAVED_WALK_MS = 30_000;
const SAVED_REUSE_MS = 10 * 60_000;

export interface TunerOptions {
  policy?: PolicyName;
  /** ksmd's CPU allowance in CPUs, in (0, number of CPUs]; default 0.25 (or the config's). */
  cpuBudget?: number;
  /** ms between decisions; ksmtuned: KSM_MONITOR_INTERVAL, adaptive and kernel-advisor: 2000. */
  intervalMs?: number;
  /** Decide and report, write nothing. */
  dryRun?: boolean;
  /** Leave the knobs as the tuner set them when it stops. */
  keepKnobs?: boolean;
  /**
   * Put the knobs found back when the process exits, on an uncaught exception, and on SIGINT/SIGTERM
   * (raised again afterwards). Default true; false leaves it to the caller's stop().
   */
  restoreOnExit?: boolean;
  /** With restoreOnExit: handle SIGINT/SIGTERM too (default true; pagefuse tune handles them itself). */
  handleSignals?: boolean;
  /**
   * The host's single-instance lock taken by start() (default PAGEFUSE_TUNE_LOCK, else
   * /run/pagefuse/tune.lock); `force` goes on without it when another tuner holds it; false takes none.
   * Dry runs and tuners on an injected `ksm` control take none unless a path is given.
   */
  lock?: false | { path?: string; force?: boolean };
  /** Where the crash record goes (default PAGEFUSE_STATE_DIR, else /run/pagefuse); false keeps none. */
  recordDir?: string | false;
  config?: TuneConfig;
  /** KSM control (default: the Ksm class on /sys/kernel/mm/ksm). */
  ksm?: KsmControl;
  /** The scan engine (default: pagefuse's scan()). */
  scan?: ScanFn;
  procRoot?: string;
  /** ms between looks at /proc's directory for VMs coming and going (default 1000). */
  pollMs?: number;
  /** Run the first decision at once even for ksmtuned (which waits one interval, as the script does). */
  immediate?: boolean;
  /**
   * Which VMs may share pages (default: readIsolation(), i.e. PAGEFUSE_ISOLATION or the config file).
   * Under 'zero-only' the tuner never runs ksmd; under 'tenant' register() refuses a second tenant.
   */
  isolation?: Isolation;
  /** Where register() records processes with their tenant (default: the host's registry). */
  registry?: Registry;
  /**
   * The 'risk' event fires when MemAvailable + SwapFree minus the un-share exposure falls below this
   * many bytes. Default: 10 % of MemTotal.
   */
  riskMarginBytes?: number;
}

export interface RegisterOptions {
  tenant?: string;
  name?: string;
  /** Register although another tenant's VMs are mergeable (isolation 'tenant'). */
  force?: boolean;
}

export interface TuneDecision extends VmSaved {
  policy: PolicyName;
  /** Date.now() when decided. */
  at: number;
  /** The knob values the policy wants. */
  knobs: Partial<KsmKnobs>;
  /** The knobs that were (or, with dryRun, would have been) written because they differed. */
  changed: Partial<KsmKnobs>;
  /** The values those knobs had before: changed[k] replaced previous[k]. */
  previous: Partial<KsmKnobs>;
  dryRun: boolean;
  reasons: string[];
  rescan: number[];
  /** What the scans say KSM could save in the VMs by ksmd's second full scan, bytes (null before any scan). */
  estimatedBytes: number | null;
  /**
   * With use_zero_pages=0, the huge pages ksmd splits only one per full scan and the zero subpages that
   * frees, bytes (docs/savings.md): not in estimatedBytes, which ksmd reaches by its second full scan. null before
   * any scan, or when a scan could not read page flags.
   */
  thpSlowSplitPages: number | null;
  thpSlowSplitZeroBytes: number | null;
  vms: { pid: number; vmm: string; name: string; rss_bytes: number }[];
  /** The overcommit guard's reading at this decision. */
  risk: OvercommitRisk;
}

/** The 'savings' event, after every decision: what KSM gives back to the tuner's VMs now (VmSaved), and the estimate. */
export interface TuneSavings extends VmSaved {
  /** When the decision behind it was taken, ms since the epoch. */
  at: number;
  /** What the latest scans say merging gives back once ksmd has converged (docs/savings.md), bytes; null before any scan. */
  estimatedBytes: number | null;
  /** ksmd's CPU time since boot, seconds (its thread's utime + stime): subtract two events' for the CPU between them. null when ksmd cannot be found. */
  ksmdCpuSeconds: number | null;
  /** KSM's full_scans counter: full passes over all mergeable memory since boot (reset by run=2). */
  fullScans: number;
}

type PolicyState = AdaptiveState | KsmtunedState;

/** What restore() writes: the knobs the tuner changed, back to the values it found. */
function restoreSet(found: KnobSnapshot, current: KnobSnapshot, touched: Set<string>): Partial<KsmKnobs> {
  return Object.fromEntries(restorePlan(found, current, touched)) as Partial<KsmKnobs>;
}

function snapshotOf(settings: Record<string, number | string | undefined>): KnobSnapshot {
  const out: KnobSnapshot = {};
  for (const [k, v] of Object.entries(settings)) if (v !== undefined) out[k] = v;
  return out;
}

/** VMs (and registered processes) that appeared or went away since the last look. */
export interface VmsChange {
  added: VmInfo[];
  removed: number[];
}

/** One VM's KSM figures (its /proc/<pid>/ksm_stat) at a moment. */
export interface VmFigures {
  pid: number;
  name: string;
  vmm: VmInfo['vmm'];
  /** Date.now() when read: for vm-exited, the last look before the process went away. */
  at: number;
  /** Pages of the VM merged onto KSM pages (ksm_merging_pages); null where the kernel has no ksm_stat. */
  mergingPages: number | null;
  /** Its zero pages mapped to the kernel's zero page (ksm_zero_pages, use_zero_pages=1). */
  zeroPages: number | null;
  /** What KSM saves in it net of its rmap items, as the kernel counts it (ksm_process_profit). */
  profitBytes: number | null;
  rssBytes: number;
}

/** The events a Tuner emits, with their arguments: on, once, off, addListener and emit are typed by it. */
export interface TunerEvents {
  decision: [decision: TuneDecision];
  savings: [savings: TuneSavings];
  error: [error: Error];
  vms: [change: VmsChange];
  /** Fires when the host enters (atRisk true) or leaves (atRisk false) the overcommit risk zone. */
  risk: [risk: OvercommitRisk];
  /** The decision that stopped merging (ksmd off with every VM scanned); again after merging resumed and stopped. */
  converged: [decision: TuneDecision];
  /** A VM's figures when merging converged with it there (once per VM until it exits). */
  'vm-merged': [vm: VmFigures];
  /** A VM (or registered process) went away: its last figures. */
  'vm-exited': [vm: VmFigures];
}

export interface StartOptions {
  /** Aborts the start: nothing is left running, and the promise rejects with an AbortError. */
  signal?: AbortSignal;
}

export interface ConvergenceOptions {
  signal?: AbortSignal;
  /** Rejects with ETIMEDOUT after this many ms (default: no limit). */
  timeoutMs?: number;
}

function figures(vm: VmInfo, at: number): VmFigures {
  return {
    pid: vm.pid,
    name: vm.name,
    vmm: vm.vmm,
    at,
    mergingPages: vm.ksm?.mergingPages ?? null,
    zeroPages: vm.ksm?.zeroPages ?? null,
    profitBytes: vm.ksm?.profitBytes ?? null,
    rssBytes: vm.rssBytes,
  };
}

/** The longest delay setInterval keeps: a longer one fires after 1 ms, as a busy loop. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The Tuner's options that are no policy's (policy, cpuBudget and the config are checked where they are read):
 * one of the wrong type would not fail later but change what the tuner does, a typo'd dryRun turning into a
 * live tuner, a pollMs of 0 into a busy loop.
 */
function checkTunerOptions(options: TunerOptions): void {
  for (const key of ['intervalMs', 'pollMs'] as const) {
    const v = options[key];
    if (v !== undefined && !(typeof v === 'number' && v > 0 && v <= MAX_TIMER_MS)) throw invalidNumber(`Tuner: ${key} must be a number of ms above 0, at most 2^31-1`, v);
  }
  for (const key of ['dryRun', 'keepKnobs', 'restoreOnExit', 'handleSignals', 'immediate'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'boolean') throw invalidArgType(`Tuner: ${key} must be a boolean`, options[key]);
  }
  if (options.recordDir !== undefined && options.recordDir !== false && typeof options.recordDir !== 'string') {
    throw invalidArgType('Tuner: recordDir must be a path or false', options.recordDir);
  }
  if (options.procRoot !== undefined && typeof options.procRoot !== 'string') throw invalidArgType('Tuner: procRoot must be a path', options.procRoot);
  const lock = options.lock as unknown;
  if (lock !== undefined && lock !== false) {
    const o = lock as { path?: unknown; force?: unknown };
    if (lock === null || typeof lock !== 'object' || (o.path !== undefined && typeof o.path !== 'string') || (o.force !== undefined && typeof o.force !== 'boolean')) {
      throw invalidArgType('Tuner: lock must be false or { path?: string, force?: boolean }', lock);
    }
  }
}

export class Tuner extends EventEmitter<TunerEvents> {
  readonly policy: PolicyName;
  private budget: number;
  private readonly explicitCpuBudget: number | undefined;
  readonly dryRun: boolean;
  readonly keepKnobs: boolean;
  private config: TuneConfig;
  private readonly procRoot: string;
  private readonly pollMs: number;
  private readonly immediate: boolean;
  private readonly explicitIntervalMs: number | undefined;
  private ksm: KsmControl | undefined;
  private scanFn: ScanFn | undefined;
  private readonly watcher: VmWatcher;
  private scheduler: ScanScheduler | undefined;
  private observer: Observer | undefined;
  /** Reads the saved figure as status and serve do (report/source.ts), through this tuner's KSM control. */
  private savingsSource: HostSource | undefined;
  /** The last saved figure read, kept for a decision whose reading fails. */
  private lastSaved: VmSaved = { savedBytes: 0, saved: { ksmPages: 0, ksmZeroPages: 0, thpSplitZeroPages: 0 }, savedThpSplitKnown: false, savedUpperBound: false, hostSavedBytes: 0 };
  private readonly procRootGiven: boolean;
  /** KSM's counters and the VMs at the last saved reading, when it was taken, and whether it walked the page maps afresh. */
  private savedKey: string | undefined;
  private savedAt = 0;
  private savedFresh = false;
  private readonly regions: Region[] = [];
  private state: PolicyState;
  private found: KsmKnobs | undefined;
  /** Every writable knob as found at start. */
  private foundAll: KnobSnapshot | undefined;
  private readonly restoreOnExit: boolean;
  private readonly handleSignals: boolean;
  private readonly lockOption: false | { path?: string; force?: boolean } | undefined;
  private readonly recordDir: string | false | undefined;
  private lock: TunerLock | undefined;
  private knobGuard: KnobGuard | undefined;
  private uninstallCleanup: (() => void) | undefined;
  private recoveredRecords: RecoveredKnobs[] = [];
  private readonly touched = new Set<string>();
  private pollTimer: NodeJS.Timeout | undefined;
  private decideTimer: NodeJS.Timeout | undefined;
  /** Corrects ksmd's pace every PACE_MS between decisions while it runs under a budget below one CPU. */
  private paceTimer: NodeJS.Timeout | undefined;
  private pacePrev: PaceSample | undefined;
  private pollQueued = false;
  private decideQueued = false;
  /** Scan rounds ended, and the most of them a decision has read the estimate after. */
  private roundsDone = 0;
  private roundsSeen = 0;
  private running = false;
  private chain: Promise<void> = Promise.resolve();
  private pendingRescan: number[] = [];
  /** The pids of the scan round in flight: a decision asking for them again waits for that round. */
  private scanRound: ReadonlySet<number> = new Set();
  private scanAbort: AbortController | undefined;
  private scanDone: Promise<void> = Promise.resolve();
  readonly isolation: Isolation;
  private readonly registry: Registry;
  private readonly guard: OvercommitGuard;
  /** The decision that stopped merging, while merging stays stopped. */
  private convergedAt: TuneDecision | undefined;
  /** VMs reported by 'vm-merged' (pid → start time), until they exit. */
  private readonly reportedMerged = new Map<number, number>();
  private readonly stopWaiters = new Set<(err: Error) => void>();
  private unsubscribeRegistry: (() => void) | undefined;
  /** Stops the inotify watch on the registry; while none runs, every poll reads the registry. */
  private unwatchRegistry: (() => void) | undefined;
  private registryDirty = true;
  /** The run value of the last decision, when (Date.now()) it was made, and whether memory was tight then. */
  private lastRun: number | undefined;
  private lastDecided = 0;
  private lastTight: boolean | undefined;
  /** The last decision's observation: while ksmd is stopped its counters stand (only CoW writes lower them). */
  private lastObservation: Observation | undefined;
  /** The start() under way, if any. */
  private starting: Promise<void> | undefined;
  /** When /proc was last looked at: the time of a vanished VM's last figures. */
  private lastLook = Date.now();

  constructor(options: TunerOptions = {}) {
    super();
    if (options === null || typeof options !== 'object') throw invalidArgType(`Tuner: options must be an object`, options);
    this.config = options.config ?? defaultConfig();
    this.policy = checkPolicy(options.policy ?? this.config.policy ?? 'adaptive');
    this.explicitCpuBudget = options.cpuBudget;
    this.budget = checkCpuBudget(options.cpuBudget ?? this.config.cpuBudget ?? DEFAULT_CPU_BUDGET, availableParallelism());
    checkTunerOptions(options);
    this.explicitIntervalMs = options.intervalMs;
    this.dryRun = options.dryRun === true;
    this.keepKnobs = options.keepKnobs === true;
    this.restoreOnExit = options.restoreOnExit !== false;
    this.handleSignals = options.handleSignals !== false;
    this.lockOption = options.lock;
    this.recordDir = options.recordDir;
    this.procRoot = options.procRoot ?? DEFAULT_PROC_ROOT;
    this.procRootGiven = options.procRoot !== undefined;
    this.pollMs = options.pollMs ?? VM_POLL_MS;
    this.immediate = options.immediate === true;
    this.ksm = options.ksm;
    this.scanFn = options.scan;
    this.watcher = new VmWatcher({ procRoot: this.procRoot });
    this.state = this.initialState();
    this.isolation = options.isolation === undefined ? readIsolation() : parseIsolation(options.isolation, 'Tuner: isolation');
    this.registry = options.registry ?? new Registry({ procRoot: this.procRoot });
    this.guard = new OvercommitGuard(options.riskMarginBytes, 'Tuner: riskMarginBytes');
  }

  private initialState(): PolicyState {
    return this.policy === 'ksmtuned' ? initialKsmtunedState() : initialAdaptiveState();
  }

  /** ksmd's CPU allowance in CPUs (the option, else the config's PAGEFUSE_CPU_BUDGET, else 0.25). */
  get cpuBudget(): number {
    return this.budget;
  }

  /** ms between decisions under the current config. */
  get intervalMs(): number {
    if (this.explicitIntervalMs !== undefined) return this.explicitIntervalMs;
    if (this.config.intervalSeconds !== undefined) return this.config.intervalSeconds * 1000;
    return this.policy === 'ksmtuned' ? this.config.ksmtuned.KSM_MONITOR_INTERVAL * 1000 : DEFAULT_ADAPTIVE_INTERVAL_MS;
  }

  /** Every writable knob as found at start (those it writes are put back by stop() unless keepKnobs). */
  get foundKnobs(): KsmSettings | undefined {
    return this.foundAll === undefined ? undefined : { ...this.foundAll };
  }

  /** Knobs a dead tuner (or set, or bench) had recorded, put back by start() before it looked. */
  get recovered(): RecoveredKnobs[] {
    return this.recoveredRecords.map((r) => ({ ...r, written: [...r.written] }));
  }

  get vms(): VmInfo[] {
    return this.watcher.vms;
  }

  private get adaptiveConfig(): AdaptiveConfig {
    return {
      cpuBudget: this.cpuBudget,
      minSavingsBytes: this.config.minSavingsBytes,
      availablePercent: this.config.availablePercent,
      pressureAvg10: this.config.pressureAvg10,
    };
  }

  private wire(): void {
    this.ksm ??= new Ksm({ procRoot: this.procRoot });
    this.observer = new Observer({ procRoot: this.procRoot, ksm: this.ksm, pageSize: PAGE_SIZE });
    const ksm = this.ksm;
    const savings = (this.savingsSource ??= new HostSource({
      ksm: {
        read: async () => {
          const s = await ksm.read();
          return { settings: s.settings as KsmSettings, counters: s.counters as KsmCounters };
        },
      },
      // On the live host it shares the zero-page baselines with status, top and serve (docs/savings.md).
      ...(this.procRootGiven ? { procRoot: this.procRoot } : {}),
      pageSize: PAGE_SIZE,
      nodes: async () => undefined,
    }));
    if (this.policy !== 'ksmtuned') {
      this.scanFn ??= createTunerScan();
      this.scheduler = new ScanScheduler({
        scan: this.scanFn,
        scanCpuBudget: this.config.scanCpuBudget,
        pageSize: PAGE_SIZE,
        // A VM first scanned already merged (the tuner restarted) keeps its zero pages ksmd freed before.
        zeroBaselines: (vms) => savings.zeroBaselinesOf(vms.map((vm) => ({ pid: vm.pid, start: vm.startTime }))),
      });
    }
  }

  /**
   * What KSM gives back to the VMs now: the savings model's rows for them (report/model.ts figures(), as
   * status shows them), summed. Where the kernel has no per-process KSM statistics (before Linux 5.19),
   * the host's pages_sharing + ksm_zero_pages, as the policy counts then. A failed reading is reported
   * ('error') and the last one kept.
   */
  private async vmSaved(o: Observation, running: boolean): Promise<VmSaved> {
    // ksmd stopped and no page written: nothing it counts has changed since the last reading, which walked
    // the page maps afresh (zero-page writes by the VMs are seen after SAVED_REUSE_MS).
    const key = JSON.stringify([o.counters, o.vms.map((vm) => vm.pid).sort((a, b) => a - b)]);
    if (!running && key === this.savedKey && this.savedFresh && Date.now() - this.savedAt < SAVED_REUSE_MS) {
      return { ...this.lastSaved, saved: { ...this.lastSaved.saved } };
    }
    try {
      const f = savingsFigures(await this.savingsSource!.read({ footprintMaxAgeMs: running ? SAVED_WALK_MS : 0 }));
      this.savedKey = key;
      this.savedAt = Date.now();
      this.savedFresh = !running;
      const pids = new Set(o.vms.map((vm) => vm.pid));
      const rows = f.processes.filter((p) => pids.has(p.pid));
      const saved = sumSaved(rows.map((p) => p.saved));
      this.lastSaved = {
        savedBytes: totalSavedPages(saved) * f.pageSize,
        saved,
        savedThpSplitKnown: f.host.thpSplitKnown,
        savedUpperBound: rows.some((p) => p.thpSplitUpperBound),
        hostSavedBytes: f.host.savedBytes,
      };
    } catch (err) {
      if ((err as PagefuseError).code !== 'ENOKSM') this.fail(err);
      else {
        const host = hostSavings(o.counters, o.pageSize);
        this.lastSaved = { savedBytes: host.savedBytes, saved: host.saved, savedThpSplitKnown: false, savedUpperBound: false, hostSavedBytes: host.savedBytes };
      }
    }
    return { ...this.lastSaved, saved: { ...this.lastSaved.saved } };
  }

  /** The sysfs directory behind the KSM control, when it is a real one (not an injected fake). */
  private sysfsRoot(): string | undefined {
    return this.ksm instanceof Ksm ? this.ksm.sysfsRoot : undefined;
  }

  /**
   * Takes the host lock, puts back what a dead tuner recorded, and records what it finds before the
   * first write, so that a SIGKILL of this one is undone by the next.
   */
  private async takeHost(): Promise<void> {
    const root = this.sysfsRoot();
    const wantsLock = this.lockOption !== false && (this.lockOption?.path !== undefined || (root !== undefined && !this.dryRun));
    if (wantsLock) this.lock = await lockTuner(this.lockOption ?? {});
    if (root === undefined || this.dryRun) return;
    try {
      this.knobGuard = KnobGuard.begin('tune', {
        sysfsRoot: root,
        only: [],
        ...(this.recordDir === undefined ? {} : { recordDir: this.recordDir }),
        persist: !this.keepKnobs,
      });
      this.recoveredRecords = this.knobGuard.recovered;
      if (this.restoreOnExit && !this.keepKnobs) {
        this.uninstallCleanup = installExitCleanup({
          restoreSync: () => {
            this.running = false;
            this.knobGuard?.restore();
            this.lock?.release();
          },
          stop: () => this.stop(),
          signals: this.handleSignals,
        });
      }
    } catch (err) {
      this.releaseHost();
      throw err;
    }
  }

  private releaseHost(): void {
    this.uninstallCleanup?.();
    this.uninstallCleanup = undefined;
    this.knobGuard?.release();
    this.knobGuard = undefined;
    this.lock?.release();
    this.lock = undefined;
  }

  private async prepare(signal?: AbortSignal): Promise<void> {
    this.wire();
    await this.takeHost();
    try {
      const settings = (await this.ksm!.read()).settings;
      this.foundAll = snapshotOf(settings);
      this.found = knobsFrom(settings);
      throwIfAborted(signal);
      if (this.policy === 'kernel-advisor' && this.found.advisor_mode === undefined) {
        throw new PagefuseError('ENOTSUP', 'this kernel has no KSM scan-time advisor (/sys/kernel/mm/ksm/advisor_mode needs Linux 6.8+): use --policy adaptive');
      }
    } catch (err) {
      this.releaseHost();
      throw err;
    }
    this.running = true;
    try {
      await this.refresh();
      throwIfAborted(signal);
    } catch (err) {
      this.running = false;
      this.releaseHost();
      throw err;
    }
  }

  /**
   * Processes registered with pagefuse host-wide (pagefuse exec, spawnMerged, another embedder) are
   * watched as this tuner's own registrations are, under their registered names; an unregistered
   * one is no longer watched (unless it is a VMM).
   */
  private syncRegistry(force: boolean): void {
    // Watched: read only after a change notice (or at a decision, which also drops dead entries).
    if (!force && !this.registryDirty && this.unwatchRegistry !== undefined) return;
    this.registryDirty = false;
    try {
      this.watcher.setRegistered(this.registry.list());
    } catch (err) {
      this.fail(err);
    }
  }

  /**
   * Looks at /proc and the registry: 'vms' for what came and went, 'vm-exited' with the last figures
   * of what went. Every decision starts with one, so none lists a process that has exited.
   */
  private async refresh(withFigures = true): Promise<VmsChange> {
    const lastLook = this.lastLook;
    this.syncRegistry(withFigures);
    const { added, removed, gone } = await this.watcher.poll(Date.now(), { figures: withFigures });
    this.lastLook = Date.now();
    if (added.length === 0 && removed.length === 0) return { added, removed };
    const peers = this.scheduler?.prune(this.watcher.vms) ?? [];
    this.pendingRescan.push(...added.map((vm) => vm.pid), ...peers);
    this.emit('vms', { added, removed });
    for (const last of gone) {
      if (this.reportedMerged.get(last.pid) === last.startTime) this.reportedMerged.delete(last.pid);
      this.emit('vm-exited', figures(last, lastLook));
    }
    return { added, removed };
  }

  /**
   * Reads the knobs it will restore, then starts watching and deciding. Resolves once running; an
   * aborted start leaves nothing running and rejects with an AbortError.
   */
  async start(options: StartOptions = {}): Promise<void> {
    throwIfAborted(options?.signal, 'Tuner.start');
    if (this.running) return;
    // A start() while one is under way settles with it: it would otherwise find the host lock taken by this very tuner.
    this.starting ??= this.startNow(options).finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async startNow(options: StartOptions): Promise<void> {
    await this.prepare(options.signal);
    // Registrations and exits in this process (spawnMerged children) are seen at once, others at the next poll.
    this.unsubscribeRegistry = onRegistryChange(() => {
      this.registryDirty = true;
      this.pollVms();
    });
    // Other processes' registrations (pagefuse exec, another embedder) are seen at once through inotify.
    this.unwatchRegistry = this.registry.watch(
      () => {
        this.registryDirty = true;
        this.pollVms();
      },
      (err) => {
        this.unwatchRegistry = undefined;
        this.fail(err);
      },
    );
    this.startTimers();
    // The VMs found by prepare() are scanned from now: starting the scan only from the first decision's
    // rescan list left ksmd idle for its length (0.1-0.25 s, an eighth of a 2 s run at budget 1).
    this.maybeScan();
    if (this.policy === 'ksmtuned') {
      if (this.immediate) void this.retune();
    } else if (this.scheduler?.scanning !== true || this.memoryTightNow()) {
      void this.retune();
    }
    // Else the round's end decides (or the first tick, if the round outlasts intervalMs). A decision
    // while it ran could only say "no estimate yet", unless memory is tight, and its reading of what the
    // VMs have saved (a walk of their page maps) delayed the decision that starts ksmd at the round's
    // end: ksmd started 0.3 s after start() on the tuner bench's 1.3 GiB, of which the scan took 0.15.
  }

  /**
   * The VM poll every pollMs and the decision timer every intervalMs. When the interval is a whole number
   * of polls (2 s and 1 s by default), the timer's ticks come with every so many polls, in the same wake-up:
   * an idle daemon then wakes once a second, not three times in two (a wake-up of this process costs about
   * 0.4 ms of CPU here, as much as the poll's own work; scripts/idle-cost.ts).
   */
  private startTimers(): void {
    clearInterval(this.pollTimer);
    clearInterval(this.decideTimer);
    this.decideTimer = undefined;
    const polls = this.intervalMs / this.pollMs;
    if (Number.isInteger(polls)) {
      let n = 0;
      this.pollTimer = setInterval(() => {
        this.pollVms();
        if (++n % polls === 0) this.tick();
      }, this.pollMs);
    } else {
      this.pollTimer = setInterval(() => this.pollVms(), this.pollMs);
      this.decideTimer = setInterval(() => this.tick(), this.intervalMs);
    }
  }

  /** /proc/meminfo and PSI read now, synchronously: what the policy's memory test and the overcommit guard read between decisions. */
  private memoryNow(): Pick<Observation, 'memory' | 'pressure'> {
    return { memory: readMemInfoSync(this.procRoot), pressure: readMemoryPressureSync(this.procRoot) };
  }

  /** Memory is tight now (the policy's test on memoryNow()); false when unreadable. */
  private memoryTightNow(): boolean {
    try {
      return memoryTight(this.memoryNow(), this.adaptiveConfig) !== undefined;
    } catch {
      return false;
    }
  }

  /**
   * Resolves with the decision that stopped merging: ksmd turned off (or left off) with every VM
   * scanned, because merging flattened or there is little to merge. Resolves at once when merging
   * is stopped already. Rejects with an AbortError (signal), ETIMEDOUT (timeoutMs) or
   * ERR_TUNER_STOPPED when the tuner stops first.
   */
  waitForConvergence(options: ConvergenceOptions = {}): Promise<TuneDecision> {
    if (options === null || typeof options !== 'object') throw invalidArgType('waitForConvergence: options must be an object', options);
    const { signal, timeoutMs } = options;
    throwIfAborted(signal, 'waitForConvergence');
    if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && timeoutMs >= 0 && timeoutMs <= 2 ** 31 - 1)) {
      throw invalidNumber('waitForConvergence: timeoutMs must be a number of ms from 0 to 2^31-1', timeoutMs);
    }
    if (this.convergedAt !== undefined) return Promise.resolve(this.convergedAt);
    if (!this.running) return Promise.reject(new PagefuseError('ERR_TUNER_STOPPED', 'waitForConvergence: the tuner is not running; start() it first'));
    return new Promise<TuneDecision>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const settle = (): void => {
        this.off('converged', onConverged);
        signal?.removeEventListener('abort', onAbort);
        this.stopWaiters.delete(onStop);
        clearTimeout(timer);
      };
      const onConverged = (d: TuneDecision): void => {
        settle();
        resolve(d);
      };
      const onAbort = (): void => {
        settle();
        reject(abortError(signal));
      };
      const onStop = (err: Error): void => {
        settle();
        reject(err);
      };
      this.on('converged', onConverged);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.stopWaiters.add(onStop);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          settle();
          reject(new PagefuseError('ETIMEDOUT', `waitForConvergence: merging had not converged after ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  /** One decision, the knobs left as decided (pagefuse tune --once): scans first where the policy scans. */
  async tuneOnce(): Promise<TuneDecision | undefined> {
    if (this.running) throw new PagefuseError('EBUSY', 'tuneOnce: the tuner is already running');
    await this.prepare();
    try {
      const vms = this.scanVms();
      if (this.scheduler !== undefined && (vms.length > 0 || this.regions.length > 0)) {
        const stopped = !this.ksmdRuns();
        await this.scheduler.run(vms, this.regions);
        await this.shareFirstBaselines(vms, stopped);
      }
      return await this.decide();
    } finally {
      this.running = false;
      this.releaseHost();
    }
  }

  /**
   * Stops deciding, waits for work in flight, and puts back the knobs it found (unless keepKnobs).
   * Registrations stay: the processes stay merged, and the next tuner (or pagefuse tune) watches them.
   */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.unsubscribeRegistry?.();
    this.unsubscribeRegistry = undefined;
    this.unwatchRegistry?.();
    this.unwatchRegistry = undefined;
    for (const reject of this.stopWaiters) reject(new PagefuseError('ERR_TUNER_STOPPED', 'waitForConvergence: the tuner stopped before merging converged'));
    this.convergedAt = undefined;
    clearInterval(this.pollTimer);
    clearInterval(this.decideTimer);
    this.stopPacer();
    this.scanAbort?.abort();
    await this.scanDone;
    await this.chain;
    try {
      if (!this.keepKnobs && !this.dryRun) await this.restore();
    } finally {
      this.releaseHost();
    }
  }

  private async restore(): Promise<void> {
    if (this.knobGuard !== undefined) {
      this.knobGuard.restore();
      this.touched.clear();
      return;
    }
    if (this.foundAll === undefined || this.touched.size === 0) return;
    // An injected control (no sysfs behind it): the same plan, written through it; a mode switch may
    // reset pages_to_scan after it was compared, so look once more.
    for (let pass = 0; pass < 2; pass++) {
      const want = restoreSet(this.foundAll, snapshotOf((await this.ksm!.read()).settings), this.touched);
      if (Object.keys(want).length > 0) await this.ksm!.configure(want);
    }
    this.touched.clear();
  }

  /**
   * Takes a new config (SIGHUP): thresholds, budget and interval apply from the next decision (options
   * given to the constructor still win). The policy stays: changing it needs a new Tuner.
   */
  reconfigure(config: TuneConfig): void {
    const budget = checkCpuBudget(this.explicitCpuBudget ?? config.cpuBudget ?? DEFAULT_CPU_BUDGET, availableParallelism());
    this.config = config;
    this.budget = budget;
    if (this.policy === 'ksmtuned') this.state = { npages: (this.state as KsmtunedState).npages };
    if (this.running) {
      // The decision interval may have changed.
      this.startTimers();
      this.lastDecided = 0; // the new thresholds apply at the next tick
    }
  }

  /**
   * Adds a process (any, VMM or not) or a Region to what the tuner scans and counts, recorded in the
   * host's registry with its tenant and name, where it stays after this tuner stops (until the process
   * exits or unregister()). Refused (ERR_ISOLATION) under 'zero-only', and under 'tenant' when another
   * tenant's VMs are mergeable (unless force); under 'tenant' it waits while another admission holds the
   * state directory's admission lock (milliseconds; EBUSY after 10 s).
   */
  register(target: number | Region, options: RegisterOptions = {}): void {
    if (options === null || typeof options !== 'object') throw invalidArgType('register: options must be an object', options);
    if (options.name !== undefined && (typeof options.name !== 'string' || options.name === '')) {
      throw invalidArgType('register: name must be a non-empty string', options.name);
    }
    const pid = typeof target === 'number' ? target : process.pid;
    if (typeof target === 'number' && !(Number.isInteger(target) && target > 0)) {
      throw invalidNumber(`register: pid must be a positive integer`, target);
    }
    if (typeof target !== 'number' && !(target instanceof Region)) {
      throw invalidArgType(`register: expected a pid or a Region`, target);
    }
    const admitted = admit(this.registry, {
      merge: true,
      isolation: this.isolation,
      ...(options.tenant === undefined ? {} : { tenant: options.tenant }),
      ...(options.force === undefined ? {} : { force: options.force }),
    });
    admitted.record(pid, { via: 'register', ...(options.name === undefined ? {} : { name: options.name }) });
    if (typeof target === 'number') {
      this.watcher.register(target, options.name);
      this.pendingRescan.push(target);
      if (this.running) this.pollVms();
      return;
    }
    // A Region is scanned as itself; its merged pages show in this process's ksm_stat, so watch it too.
    this.regions.push(target);
    this.watcher.register(process.pid, options.name);
    if (this.running) void this.retune();
  }

  /**
   * Takes a process (or a Region) out of what the tuner scans and out of the registry. A VMM found in
   * /proc is still watched as one. Its pages stay merged until it unmerges or exits.
   */
  unregister(target: number | Region): void {
    if (target instanceof Region) {
      const i = this.regions.indexOf(target);
      if (i >= 0) this.regions.splice(i, 1);
      if (this.regions.length > 0) return;
      target = process.pid;
    }
    if (typeof target !== 'number') throw invalidArgType('unregister: expected a pid or a Region', target);
    if (!(Number.isInteger(target) && target > 0)) throw invalidNumber('unregister: pid must be a positive integer', target);
    this.registry.remove(target);
    this.watcher.unregister(target);
    if (this.running) this.pollVms();
  }

  /** The VMs the scan engine reads by pid: this process is covered through its registered Regions. */
  private scanVms(): VmInfo[] {
    const vms = this.watcher.vms;
    return this.regions.length === 0 ? vms : vms.filter((vm) => vm.pid !== process.pid);
  }

  private fail(err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    if (this.listenerCount('error') > 0) this.emit('error', e);
  }

  private pollVms(): void {
    // One poll waits in the queue at most: a slow decision must not pile polls up behind it.
    if (this.pollQueued) return;
    this.pollQueued = true;
    this.chain = this.chain.then(async () => {
      this.pollQueued = false;
      if (!this.running) return;
      try {
        const { added, removed } = await this.refresh(false);
        // ksmtuned decides on its interval only, as the script does.
        if ((added.length > 0 || removed.length > 0) && this.policy !== 'ksmtuned') this.enqueueDecide();
        this.maybeScan();
      } catch (err) {
        this.fail(err);
      }
    });
  }

  /** Starts a scan round in the background when one is due; its end triggers a decision. */
  private maybeScan(): void {
    const scheduler = this.scheduler;
    if (scheduler === undefined || scheduler.scanning || !this.running) return;
    const vms = scheduler.due(this.scanVms(), this.pendingRescan);
    if (vms.length === 0 && !this.regionsUnscanned()) return;
    this.pendingRescan = [];
    this.scanRound = new Set(vms.map((vm) => vm.pid));
    const abort = new AbortController();
    this.scanAbort = abort;
    const stopped = !this.ksmdRuns();
    this.scanDone = scheduler
      .run(vms, this.regions, abort.signal, this.scanThreads(vms))
      .then(() => this.shareFirstBaselines(vms, stopped))
      .then(() => {
        const round = ++this.roundsDone;
        // A decision begun while the round ran may have read its estimate already (scan rounds end at any time).
        if (this.running) this.enqueueDecide(() => this.roundsSeen < round);
      })
      .catch((err) => {
        if (!abort.signal.aborted) this.fail(err);
      })
      .finally(() => {
        this.scanRound = new Set();
      });
  }

  /** Regions are registered and no round has scanned them yet. */
  private regionsUnscanned(): boolean {
    return this.regions.length > 0 && this.scheduler?.estimate([]) === null;
  }

  /**
   * Hashing threads for a scan round (scanThreadsFor): more than one only for a first look at a VM (or at
   * the registered Regions) while ksmd is stopped, the scan that stands between it and merging.
   */
  private scanThreads(vms: VmInfo[]): number {
    const scheduler = this.scheduler!;
    const firstLook = vms.some((vm) => scheduler.recordOf(vm) === undefined) || this.regionsUnscanned();
    return scanThreadsFor({ ksmdRuns: this.ksmdRuns(), firstLook, cpuBudget: this.budget, cpus: availableParallelism() });
  }

  /** Whether ksmd runs as far as this tuner knows: as it last set run (a dry run: as it last saw it), else as found. */
  private ksmdRuns(): boolean {
    return (this.dryRun ? (this.lastObservation?.knobs.run ?? this.found?.run) : (this.lastRun ?? this.found?.run)) === 1;
  }

  /**
   * After a scan round through which ksmd was stopped (`stoppedBefore`, and still now): the zero-page counts of
   * the VMs it first scanned with nothing merged go to the baselines the host's readers share, so that a
   * `status`, or this tuner restarted, counts the zero pages ksmd then frees. The reading behind the saved
   * figure records them too, but only after the decision that starts ksmd: by then ksmd may have merged them.
   */
  private async shareFirstBaselines(vms: VmInfo[], stoppedBefore: boolean): Promise<void> {
    if (!stoppedBefore || this.ksmdRuns() || this.scheduler === undefined || this.savingsSource === undefined) return;
    const first = this.scheduler.firstBaselines(vms);
    if (first.length > 0) await this.savingsSource.recordZeroBaselines(first);
  }

  /** Decides now (SIGUSR1): looks at /proc, asks the policy, writes what changed. Resolves to the decision. */
  retune(): Promise<TuneDecision | undefined> {
    this.decideQueued = true;
    const run = this.chain.then(async () => {
      this.decideQueued = false;
      return this.running ? this.decide() : undefined;
    });
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /**
   * The decision timer: while ksmd runs (or for ksmtuned, which decides on its interval) a decision; while
   * it is stopped, only a look at whether memory turned tight or eased, or the overcommit guard would flip
   * (meminfo and PSI: two small reads), unless a hold ended or IDLE_DECIDE_MS passed since the last decision.
   */
  private tick(): void {
    const hold = (this.state as AdaptiveState).holdUntil;
    const due =
      this.policy === 'ksmtuned' ||
      this.lastRun !== 0 ||
      Date.now() - this.lastDecided >= IDLE_DECIDE_MS ||
      (hold !== undefined && performance.now() >= hold);
    if (due) {
      void this.retune();
      return;
    }
    this.chain = this.chain.then(async () => {
      if (!this.running) return;
      try {
        const now = this.memoryNow();
        const last = this.lastObservation;
        const tight = memoryTight(now, this.adaptiveConfig) !== undefined;
        if (tight !== this.lastTight || (last !== undefined && this.guard.wouldChange(last.counters, now.memory, last.pageSize))) await this.decide();
      } catch (err) {
        this.fail(err);
      }
    });
  }

  /**
   * After each decision: the pacer runs while the adaptive policy keeps ksmd running under a budget below
   * one CPU (not in a dry run, which writes nothing), and starts each window afresh from the decision's knobs.
   */
  private updatePacer(run: number): void {
    this.pacePrev = undefined;
    // Not after stop(): a decision it waits for must not start the pacer again once stop() has stopped it.
    const throttled = this.running && this.policy === 'adaptive' && !this.dryRun && this.budget < 1 && run === 1 && (this.state as AdaptiveState).running;
    if (!throttled) this.stopPacer();
    else this.paceTimer ??= setInterval(() => this.pace(), PACE_MS);
  }

  private stopPacer(): void {
    clearInterval(this.paceTimer);
    this.paceTimer = undefined;
    this.pacePrev = undefined;
  }

  /**
   * One pacer step (policies/adaptive.ts repace), in turn with decisions: pages_to_scan only, from four of
   * KSM's files and ksmd's clock (Observer.paceSample), written alone (write's `single`): about 1 ms of CPU a
   * step where read() and configure() took 11–14 ms, four times a second beside ksmd (docs/kernel.md, Cost).
   */
  private pace(): void {
    this.chain = this.chain.then(async () => {
      if (!this.running || this.paceTimer === undefined) return;
      try {
        const now = await this.observer!.paceSample();
        const prev = this.pacePrev;
        if (prev === undefined || now.knobs.run !== 1) {
          this.pacePrev = now;
          return;
        }
        const r = repace(this.state as AdaptiveState, prev, now, this.budget);
        if (!r.used) return; // too little CPU time in the window: keep its start, look again later
        this.state = r.nextState;
        const pages = r.pace!.pages_to_scan;
        if (pages !== now.knobs.pages_to_scan) {
          await this.write({ pages_to_scan: pages }, true);
        }
        this.pacePrev = { ...now, knobs: { ...now.knobs, pages_to_scan: pages } };
      } catch (err) {
        this.fail(err);
      }
    });
  }

  /**
   * Queues a decision unless one is queued and not begun yet: that one will see what prompted this. `stale`
   * is asked when the decision's turn comes: false skips it (a decision since has seen it all).
   */
  private enqueueDecide(stale: () => boolean = () => true): void {
    if (this.decideQueued) return;
    this.decideQueued = true;
    this.chain = this.chain.then(async () => {
      this.decideQueued = false;
      if (stale()) await this.decide();
    });
  }

  private async decide(): Promise<TuneDecision | undefined> {
    if (!this.running) return undefined;
    try {
      await this.refresh().catch((err) => this.fail(err));
      this.roundsSeen = this.roundsDone;
      const estimate = this.scheduler?.estimate(this.scanVms()) ?? null;
      const o = await this.observer!.observe(this.watcher.vms, estimate);
      const result =
        this.policy === 'ksmtuned'
          ? ksmtuned(o, this.state as KsmtunedState, this.config.ksmtuned)
          : (this.policy === 'adaptive' ? adaptive : kernelAdvisor)(o, this.state as AdaptiveState, this.adaptiveConfig);
      this.state = result.nextState;
      if (this.isolation === 'zero-only' && result.decision.knobs.run === 1) {
        result.decision.knobs.run = 0;
        result.reasons.push('isolation is zero-only: KSM content merging stays off, so ksmd is not run');
      }
      const decision = await this.apply(o, result.decision, result.reasons);
      this.lastRun = decision.knobs.run ?? o.knobs.run;
      this.updatePacer(this.lastRun);
      this.lastDecided = Date.now();
      this.lastTight = memoryTight(o, this.adaptiveConfig) !== undefined;
      this.lastObservation = o;
      this.checkConvergence(o, decision);
      this.emit('savings', {
        at: Date.now(),
        savedBytes: decision.savedBytes,
        saved: { ...decision.saved },
        savedThpSplitKnown: decision.savedThpSplitKnown,
        savedUpperBound: decision.savedUpperBound,
        hostSavedBytes: decision.hostSavedBytes,
        estimatedBytes: decision.estimatedBytes,
        ksmdCpuSeconds: o.ksmdCpuSeconds,
        fullScans: o.counters.full_scans,
      } satisfies TuneSavings);
      if (decision.rescan.length > 0) {
        this.pendingRescan.push(...decision.rescan.filter((pid) => !this.scanRound.has(pid)));
        this.maybeScan();
      }
      return decision;
    } catch (err) {
      this.fail(err);
      return undefined;
    }
  }

  /**
   * Merging has converged when a decision leaves ksmd off with every VM scanned (ksmtuned: off).
   * 'converged' fires on the way in, with 'vm-merged' for each VM not reported yet.
   */
  private checkConvergence(o: Observation, decision: TuneDecision): void {
    const stopped = decision.knobs.run === 0 && (this.policy === 'ksmtuned' || o.estimate?.complete === true);
    if (!stopped) {
      if (decision.knobs.run === 1) this.convergedAt = undefined;
      return;
    }
    const entering = this.convergedAt === undefined;
    this.convergedAt ??= decision;
    if (entering) this.emit('converged', decision);
    for (const vm of o.vms) {
      if (this.reportedMerged.get(vm.pid) === vm.startTime) continue;
      this.reportedMerged.set(vm.pid, vm.startTime);
      this.emit('vm-merged', figures(vm, decision.at));
    }
  }

  /** The overcommit guard's reading of this observation; 'risk' fires on entering or leaving the zone. */
  private assessRisk(o: Observation): OvercommitRisk {
    const { risk, changed } = this.guard.assess(o.counters, o.memory, o.pageSize);
    if (changed) this.emit('risk', risk);
    return risk;
  }

  /**
   * Writes knobs, each recorded as touched (and in the crash record) before it is written: a SIGKILL from
   * here on is undone by the next start. `single`: one knob, straight to its file where the control can
   * (KsmControl.set), without configure()'s reads of every KSM file before and after (the pacer's rewrites).
   */
  private async write(changed: Partial<KsmKnobs>, single = false): Promise<void> {
    const keys = Object.keys(changed) as (keyof KsmKnobs)[];
    for (const key of keys) this.touched.add(key);
    this.knobGuard?.cover(this.touched);
    const ksm = this.ksm!;
    if (single && keys.length === 1 && ksm.set !== undefined) await ksm.set(keys[0]!, changed[keys[0]!]!);
    else await ksm.configure(changed);
  }

  private async apply(o: Observation, d: Decision, reasons: string[]): Promise<TuneDecision> {
    const changed: Partial<KsmKnobs> = {};
    for (const [key, value] of Object.entries(d.knobs) as [keyof KsmKnobs, KsmKnobs[keyof KsmKnobs]][]) {
      if (value !== undefined && o.knobs[key] !== value) (changed as Record<string, unknown>)[key] = value;
    }
    // The kernel refuses pages_to_scan while its advisor runs (someone else turned it on): turn it off.
    if (changed.pages_to_scan !== undefined && o.knobs.advisor_mode === 'scan-time' && d.knobs.advisor_mode === undefined) {
      changed.advisor_mode = 'none';
    }
    const previous: Partial<KsmKnobs> = {};
    for (const key of Object.keys(changed) as (keyof KsmKnobs)[]) (previous as Record<string, unknown>)[key] = o.knobs[key];
    if (!this.dryRun && Object.keys(changed).length > 0) {
      await this.write(changed);
    }
    const slow = o.estimate?.thpSlowSplit;
    // Whether ksmd runs after this decision (a dry run writes nothing): while it does, the figure may lag.
    const saved = await this.vmSaved(o, (this.dryRun ? o.knobs.run : (d.knobs.run ?? o.knobs.run)) === 1);
    const decision: TuneDecision = {
      policy: this.policy,
      at: Date.now(),
      knobs: d.knobs,
      changed,
      previous,
      dryRun: this.dryRun,
      reasons,
      rescan: d.rescan,
      ...saved,
      estimatedBytes: o.estimate === null ? null : o.estimate.savedPages * o.pageSize,
      thpSlowSplitPages: slow === undefined ? null : slow.hugePages,
      thpSlowSplitZeroBytes: slow === undefined ? null : slow.zeroPages * o.pageSize,
      vms: o.vms.map((vm) => ({ pid: vm.pid, vmm: vm.vmm, name: vm.name, rss_bytes: vm.rssBytes })),
      risk: this.assessRisk(o),
    };
    this.emit('decision', decision);
    return decision;
  }
}
