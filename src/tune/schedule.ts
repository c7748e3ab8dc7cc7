// Rescanning VMs with the scan engine within its own CPU budget, most promising first: new VMs, large VMs,
// VMs whose estimate and merged pages disagree, and VMs whose estimate moves between scans (volatility).
import type { VmInfo } from '../vm/discover.js';
import { vmMergedPages, type Estimate, type SlowSplit } from './types.js';
import type { ScanTarget } from '../scan/scan.js';

/** What the tuner needs of one scan target's result (the scan engine's `targets[]` entries). */
export interface ScanTargetOutcome {
  pid?: number;
  pages: number;
  /** Pages of this target that ksmd would merge (content found twice or more anywhere, zero pages too). */
  mergingPages: number;
  /** Pages that changed since this target's previous scan, when the engine tracks them. */
  volatilePages?: number;
  /** The process exited before or while it was read: it has no figures (and is not recorded). */
  vanished?: boolean;
  /**
   * Its huge pages ksmd splits one per full scan (use_zero_pages=0) and their zero subpages, not in
   * the estimate (the scan engine's thpSlowSplit*); absent when the scan could not read page flags.
   */
  thpSlowSplit?: SlowSplit;
  /**
   * Its pages mapped to the kernel's zero page, which the engine skips (zeroMappedPages; 0 when it cannot
   * tell them apart), and those of them KSM mapped there (ksmZeroMappedPages, in mergingPages and the
   * estimate already). The others, beyond the VM's count at its first scan, are zero subpages ksmd freed
   * by splitting their huge pages: saved, though not in ksm_stat.
   */
  zeroMappedPages?: number;
  ksmZeroMappedPages?: number;
}

/** What the tuner needs of a scan result. */
export interface ScanOutcome {
  pages: number;
  estimatedSavedBytes: number;
  targets: ScanTargetOutcome[];
}

/** `threads`: hashing threads for this round (default 1). */
export type ScanFn = (targets: ScanTarget[], options: { signal?: AbortSignal; threads?: number }) => Promise<ScanOutcome>;

export interface VmRecord {
  pid: number;
  startTime: number;
  /** When the VM was last scanned (ms), and what the scan said. */
  at: number;
  pages: number;
  mergingPages: number;
  /** This VM's share of the pages the joint scan says can be saved, plus the zero subpages ksmd already split out of its huge pages. */
  savedPages: number;
  /**
   * Its pages mapped to the zero page by others than KSM at its first scan (never written, as ksmd had not
   * run on it), or, when the tuner first saw it already merged, before KSM first merged it where a reader of
   * the host shared that (options.zeroBaselines), else at its first scan (split out of huge pages before: those
   * are then not counted as freed); null when the scan could not tell.
   */
  zeroBaseline: number | null;
  /** Its own huge pages ksmd splits one per full scan, not in savedPages; null when unknown. */
  thpSlowSplit: SlowSplit | null;
  /** EWMA of the share of pages that changed between successive scans (0–1): the engine's count of
   *  changed pages where it keeps them, else |Δ savedPages| / pages. */
  volatility: number;
  scans: number;
  /** Successive scans that found (almost) the same: each doubles the wait before the next one. */
  steadyScans: number;
  /** The VM's page faults and RSS when it was scanned (VmInfo.faults, rssBytes): unchanged since, its memory is
   *  taken as unchanged. */
  faults?: number;
  rssBytes: number;
}

export interface SchedulerOptions {
  scan: ScanFn;
  /** CPUs the scans may use on average. */
  scanCpuBudget: number;
  pageSize: number;
  /** Rescan a VM this long (ms) after its last scan; doubled for each steady scan, up to 16 times. */
  rescanMs?: number;
  /** Most pages one round may scan (on huge hosts a round covers the most promising VMs only). */
  maxRoundPages?: number;
  now?: () => number;
  /**
   * VMs' zero-page mappings while KSM had merged none of their pages, by pid, where a reader of the host
   * recorded them (HostSource.zeroBaselinesOf: the baselines status, top, serve and the tuner share); a VM
   * none recorded is left out. Asked for the VMs first scanned with pages already merged: their own count
   * then holds the zero subpages ksmd split out of huge pages before (a tuner restarted after merging would
   * lose them).
   */
  zeroBaselines?: (vms: VmInfo[]) => Promise<ReadonlyMap<number, number>>;
}

/** A rescan that moved the estimate by less than this share of the VM's pages counts as steady. */
const STEADY_SHARE = 0.01;
const MAX_STEADY_DOUBLINGS = 4;
/**
 * A VM that took no page fault and kept its RSS since its last scan is rescanned this often at most: no page
 * came in, none was swapped in, no merged page was written. Writes to pages already resident and unmerged
 * fault nothing, and can still make new duplicates (a guest zeroing memory it freed): this bounds how long
 * those go unseen.
 */
export const UNCHANGED_RESCAN_MS = 30 * 60_000;

/** Most hashing threads a scan round takes (the scan engine's own default cap). */
const MAX_SCAN_THREADS = 8;

/**
 * Hashing threads for a scan round: one, within the scan budget; but a first look at a VM while ksmd is
 * stopped (the scan before merging starts) also takes the whole CPUs of ksmd's budget, which ksmd is not
 * using, up to the CPUs there are. At budget 1 on the tuner bench's 1.3 GiB the scan before ksmd started
 * took 0.058-0.091 s on two threads against 0.089-0.117 on one (docs/kernel.md, Cost). Rescans keep one:
 * a round on more threads keeps a 4 MiB read buffer a thread for process targets until a later round on
 * fewer.
 */
export function scanThreadsFor(o: { ksmdRuns: boolean; firstLook: boolean; cpuBudget: number; cpus: number }): number {
  if (o.ksmdRuns || !o.firstLook) return 1;
  return Math.max(1, Math.min(o.cpus, MAX_SCAN_THREADS, 1 + Math.floor(o.cpuBudget)));
}

/** Scan time that may be spent at once before the budget makes the scheduler wait (ms). */
const BURST_MS = 2_000;

export class ScanScheduler {
  readonly records = new Map<number, VmRecord>();
  private tokensMs = BURST_MS;
  private lastRefill: number;
  private readonly now: () => number;
  private readonly rescanMs: number;
  private readonly maxRoundPages: number;
  /** What the last round found in targets that are no process (registered Regions). */
  private extra: { savedPages: number; mergingPages: number; pages: number; thpSlowSplit: SlowSplit | null } = {
    savedPages: 0,
    mergingPages: 0,
    pages: 0,
    thpSlowSplit: { hugePages: 0, zeroPages: 0 },
  };
  private lastRound = -Infinity;
  scanning = false;

  constructor(private readonly options: SchedulerOptions) {
    this.now = options.now ?? (() => performance.now());
    this.lastRefill = this.now();
    this.rescanMs = options.rescanMs ?? 15_000;
    this.maxRoundPages = options.maxRoundPages ?? Number.MAX_SAFE_INTEGER;
  }

  private refill(): void {
    const t = this.now();
    this.tokensMs = Math.min(BURST_MS, this.tokensMs + (t - this.lastRefill) * this.options.scanCpuBudget);
    this.lastRefill = t;
  }

  /** This VM's record: undefined when it was never scanned (or only an earlier process with its pid was). */
  recordOf(vm: VmInfo): VmRecord | undefined {
    const r = this.records.get(vm.pid);
    return r !== undefined && r.startTime === vm.startTime ? r : undefined;
  }

  /** How promising a rescan of this VM is: Infinity for one never scanned. */
  priority(vm: VmInfo, t = this.now()): number {
    const r = this.recordOf(vm);
    if (r === undefined) return Infinity;
    const pages = Math.max(1, r.pages);
    const merged = vmMergedPages(vm) ?? r.mergingPages;
    const disagreement = Math.min(1, Math.abs(r.mergingPages - merged) / pages);
    const ageS = (t - r.at) / 1000;
    const sizeWeight = Math.log2(2 + vm.rssBytes / this.options.pageSize);
    return ageS * sizeWeight * (1 + 4 * disagreement + 4 * r.volatility);
  }

  /** The VMs worth scanning now, most promising first; empty when none is due or the budget is spent. */
  due(vms: VmInfo[], requested: readonly number[] = []): VmInfo[] {
    this.refill();
    const t = this.now();
    // Asked at every look at /proc (twice a second): whether anything is due is settled before the VMs are
    // ranked, so an idle tuner does not sort them each time.
    const due = vms.some((vm) => {
      const r = this.recordOf(vm);
      if (r === undefined || requested.includes(vm.pid)) return true; // new, or asked for
      const unchanged = vm.faults !== undefined && r.faults === vm.faults && r.rssBytes === vm.rssBytes;
      return t - r.at >= (unchanged ? UNCHANGED_RESCAN_MS : this.rescanMs * 2 ** Math.min(r.steadyScans, MAX_STEADY_DOUBLINGS));
    });
    if (!due || this.tokensMs <= 0) return [];
    const ranked = vms
      .map((vm) => ({ vm, p: this.priority(vm, t) }))
      .sort((a, b) => b.p - a.p || b.vm.rssBytes - a.vm.rssBytes);
    const chosen: VmInfo[] = [];
    let pages = 0;
    for (const { vm } of ranked) {
      const vmPages = vm.rssBytes / this.options.pageSize;
      if (chosen.length > 0 && pages + vmPages > this.maxRoundPages) break;
      chosen.push(vm);
      pages += vmPages;
    }
    return chosen;
  }

  /**
   * Scans `vms` (and `extra` targets such as registered Regions) jointly and records what each holds. With
   * `threads` above 1 the round's scan time counts that many times against the budget.
   */
  async run(vms: VmInfo[], extra: readonly ScanTarget[] = [], signal?: AbortSignal, threads = 1): Promise<ScanOutcome> {
    this.scanning = true;
    const started = this.now();
    try {
      const outcome = await this.options.scan([...vms.map((vm) => ({ pid: vm.pid })), ...extra], {
        ...(signal ? { signal } : {}),
        ...(threads > 1 ? { threads } : {}),
      });
      const ended = this.charge(started, threads);
      this.record(vms, outcome, ended, await this.sharedBaselines(vms));
      return outcome;
    } catch (err) {
      // A round that failed spent its time too. Uncharged, its VMs (still unscanned, so first in line) were
      // scanned again at every look at /proc, a second apart, whatever made the round fail.
      this.charge(started, threads);
      throw err;
    } finally {
      this.scanning = false;
    }
  }

  /** Counts a round's scan time (times its threads) against the budget; returns when it ended. */
  private charge(started: number, threads: number): number {
    const ended = this.now();
    this.refill();
    this.tokensMs -= (ended - started) * threads;
    return ended;
  }

  /**
   * The zero-page baselines of `vms` first scanned in the last round with nothing merged (by their ksm_stat
   * before it): their own count of zero-page mappings, to share with the host's other readers (the Tuner
   * does, HostSource.recordZeroBaselines, when ksmd was stopped through the round). A tuner that reads the
   * host only after it started ksmd may find them merged already, and record none itself.
   */
  firstBaselines(vms: VmInfo[]): { pid: number; start: number; zeroMappedPages: number }[] {
    return vms.flatMap((vm) => {
      const r = this.recordOf(vm);
      return r !== undefined && r.scans === 1 && r.zeroBaseline !== null && vmMergedPages(vm) === 0 ? [{ pid: vm.pid, start: vm.startTime, zeroMappedPages: r.zeroBaseline }] : [];
    });
  }

  /** The shared zero-page baselines (options.zeroBaselines) of the VMs first scanned with pages already merged. */
  private async sharedBaselines(vms: VmInfo[]): Promise<ReadonlyMap<number, number>> {
    const first = vms.filter((vm) => this.recordOf(vm) === undefined && (vmMergedPages(vm) ?? 0) > 0);
    return this.options.zeroBaselines === undefined || first.length === 0 ? new Map() : this.options.zeroBaselines(first);
  }

  /** `shared`: zero-page baselines from before KSM first merged, by pid (sharedBaselines()). */
  private record(vms: VmInfo[], outcome: ScanOutcome, at: number, shared: ReadonlyMap<number, number>): void {
    const savedTotal = outcome.estimatedSavedBytes / this.options.pageSize;
    const dupTotal = outcome.targets.reduce((s, t) => s + t.mergingPages, 0);
    const share = (dup: number) => (dupTotal > 0 ? (savedTotal * dup) / dupTotal : 0);
    const others = outcome.targets.filter((x) => x.pid === undefined);
    this.lastRound = at;
    const othersMerging = others.reduce((s, x) => s + x.mergingPages, 0);
    this.extra = {
      savedPages: share(othersMerging),
      mergingPages: othersMerging,
      pages: others.reduce((s, x) => s + x.pages, 0),
      thpSlowSplit: addSlowSplit(others.map((x) => x.thpSlowSplit ?? null)),
    };
    for (const vm of vms) {
      const t = outcome.targets.find((x) => x.pid === vm.pid);
      if (t === undefined || t.vanished === true) continue;
      const prev = this.recordOf(vm);
      const same = prev !== undefined;
      // The joint saving is shared out in proportion to each VM's merging pages. The scan skips pages mapped
      // to the zero page: those KSM mapped there it counts itself; the zero subpages ksmd split out of huge
      // pages since the VM's first scan (or since a shared baseline from before KSM first merged it) count back
      // in here, as saved (not in ksm_stat).
      const otherZero = t.zeroMappedPages === undefined ? undefined : t.zeroMappedPages - (t.ksmZeroMappedPages ?? 0);
      const zeroBaseline = same ? prev.zeroBaseline : otherZero === undefined ? null : (shared.get(vm.pid) ?? otherZero);
      const split = zeroBaseline === null || otherZero === undefined ? 0 : Math.max(0, otherZero - zeroBaseline);
      const saved = share(t.mergingPages) + split;
      const change = !same ? 0 : (t.volatilePages ?? Math.abs(saved - prev.savedPages)) / Math.max(1, t.pages);
      this.records.set(vm.pid, {
        pid: vm.pid,
        startTime: vm.startTime,
        at,
        pages: t.pages,
        mergingPages: t.mergingPages,
        savedPages: saved,
        zeroBaseline,
        thpSlowSplit: t.thpSlowSplit ?? null,
        volatility: same ? Math.min(1, 0.5 * prev.volatility + 0.5 * change) : 0,
        scans: same ? prev.scans + 1 : 1,
        steadyScans: same && change < STEADY_SHARE && Math.abs(t.mergingPages - prev.mergingPages) < STEADY_SHARE * Math.max(1, t.pages) ? prev.steadyScans + 1 : 0,
        rssBytes: vm.rssBytes,
        ...(vm.faults === undefined ? {} : { faults: vm.faults }),
      });
    }
  }

  /**
   * Forgets VMs that are gone, and returns the pids of the VMs left that were scanned with one of them: their
   * records share out a joint saving that counted the pages they had in common with it, which they no longer
   * have in common with anyone (three guests of one image, one gone: its copies counted in the other two's
   * savedPages as if they still merged), so they want a rescan.
   */
  prune(vms: VmInfo[]): number[] {
    const alive = new Map(vms.map((vm) => [vm.pid, vm.startTime]));
    let gone = false;
    for (const [pid, r] of this.records) {
      if (alive.get(pid) !== r.startTime) {
        this.records.delete(pid);
        gone = true;
      }
    }
    return gone ? [...this.records.keys()] : [];
  }

  /** The estimate over the VMs alive now, or null before any of them was scanned. */
  estimate(vms: VmInfo[]): Estimate | null {
    let saved = this.extra.savedPages;
    let merging = this.extra.mergingPages;
    let pages = this.extra.pages;
    let weightedVol = 0;
    let at = this.extra.pages > 0 ? this.lastRound : -Infinity;
    let covered = 0;
    const slow = [this.extra.thpSlowSplit];
    for (const vm of vms) {
      const r = this.recordOf(vm);
      if (r === undefined) continue;
      covered++;
      slow.push(r.thpSlowSplit);
      saved += r.savedPages;
      merging += r.mergingPages;
      pages += r.pages;
      weightedVol += r.volatility * r.pages;
      at = Math.max(at, r.at);
    }
    if (covered === 0 && this.extra.pages === 0) return null;
    const slowSum = addSlowSplit(slow);
    return {
      at,
      savedPages: Math.round(saved),
      mergingPages: merging,
      pages,
      volatility: pages > 0 ? weightedVol / pages : 0,
      complete: covered === vms.length,
      ...(slowSum === null ? {} : { thpSlowSplit: slowSum }),
    };
  }
}

/** The sum, or null when any part is unknown. */
function addSlowSplit(parts: readonly (SlowSplit | null)[]): SlowSplit | null {
  let hugePages = 0;
  let zeroPages = 0;
  for (const p of parts) {
    if (p === null) return null;
    hugePages += p.hugePages;
    zeroPages += p.zeroPages;
  }
  return { hugePages, zeroPages };
}
