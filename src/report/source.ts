// Reads a Snapshot of this host: KSM's knobs and counters (Ksm), every process's ksm_stat, ksmd's CPU
// time, KSM pages per NUMA node, VM names and the tuner's latest decision. Roots are options so tests
// can point at a fake sysfs/procfs.
import { readMemInfo } from '../host/meminfo.js';
import { KsmdClock } from '../host/ksmd.js';
import { PAGE_SIZE } from '../host/page-size.js';
import type { NodeSample, Snapshot } from './model.js';
import { readTunerState } from './tuner-state.js';
import { Ksm } from '../ksm/ksm.js';
import { knownCounters, type KsmCounters } from '../ksm/counters.js';
import type { KsmSettings } from '../ksm/knobs.js';
import { listKsmProcesses, processKsm } from '../ksm/process.js';
import { FrameInfo, readFootprint, type Footprint } from '../ksm/footprint.js';
import { numaTopology } from '../numa/topology.js';
import { ksmPagesByNode } from '../numa/ksm-nodes.js';
import { vmNames as discoverVmNames } from '../safety/vms.js';
import { USER_HZ, readProcStat, readProcText, seesWholeHost } from '../host/procfs.js';
import { readZeroBaselines, writeZeroBaselines, zeroBaselinesPath, type ZeroBaseline } from './zero-baselines.js';

/** What HostSource reads KSM's knobs and counters through: the Ksm class, or a Tuner's KSM control. */
export interface KsmReader {
  read(): Promise<{ settings: KsmSettings; counters: KsmCounters }>;
}

export interface SnapshotSource {
  read(): Promise<Snapshot>;
}

export interface HostSourceOptions {
  sysfsRoot?: string;
  /** KSM's knobs and counters (default: the Ksm class on sysfsRoot); the Tuner passes its own control. */
  ksm?: KsmReader;
  procRoot?: string;
  pageSize?: number;
  /** Where the tuner daemon writes its latest decision; see tuner-state.ts. */
  tunerStatePath?: string;
  /** VM discovery: pid → guest name, for the processes that are VMs. */
  vms?: () => Promise<Map<number, string>>;
  /** KSM pages per NUMA node; default: nodesSource(). */
  nodes?: () => Promise<NodeSample[] | undefined>;
  /** Read each listed process's PSS and (root) page-level footprint for the savings model. Default true. */
  footprints?: boolean;
  /**
   * How old footprints may be before they are read again (ms; default 5000): the page walk costs about
   * a millisecond per 100 MiB of mergeable memory. New processes are always read at once.
   */
  footprintMaxAgeMs?: number;
  /**
   * The file each process's zero-page baseline is shared through with pagefuse's other readers
   * (zero-baselines.ts), so one that first sees a process already merged can use another's; false keeps
   * them in this reader. Default: zeroBaselinesPath() on the live host, false with a procRoot.
   */
  zeroBaselines?: string | false;
}

/**
 * KSM pages per node. One node holds every KSM page, so pages_shared is the answer without reading
 * /proc/kpageflags; with several nodes the kpageflags walk (≈ 0.35 s per 24 GiB here, root only) is
 * cached for `maxAgeMs`. Undefined where it cannot be read.
 */
export function nodesSource(maxAgeMs = 10_000): (pagesShared: number) => Promise<NodeSample[] | undefined> {
  let cached: { at: number; nodes: NodeSample[] | undefined } | undefined;
  return async (pagesShared) => {
    let ids: number[];
    try {
      ids = numaTopology().nodes.map((n) => n.id);
    } catch {
      return undefined;
    }
    if (ids.length === 1) return [{ id: ids[0], ksmPages: pagesShared }];
    if (cached === undefined || Date.now() - cached.at > maxAgeMs) {
      const nodes = await ksmPagesByNode().then(
        (r) => r.map((n) => ({ id: n.node, ksmPages: n.ksmPages })),
        () => undefined,
      );
      cached = { at: Date.now(), nodes };
    }
    return cached.nodes;
  };
}

/** The live host: KSM sysfs, /proc, ksmd, VM names, NUMA nodes and the tuner's state file. */
export class HostSource implements SnapshotSource {
  private readonly clock: KsmdClock;
  private readonly ksm: KsmReader;
  private readonly nodes: (pagesShared: number) => Promise<NodeSample[] | undefined>;
  /** The last page walk, with each process's ksm_merging_pages at the time. */
  private footprintCache: { at: number; byPid: Map<number, Footprint>; merging: Map<number, number> } | undefined;
  /**
   * Per process, its zero-page mappings while KSM had merged none of its pages: huge pages of zeros the
   * kernel split before ksmd ran look exactly like ksmd's own splits (docs/savings.md), so they are
   * subtracted once it merges. Only processes seen before their first merge (by this reader, or by one
   * that shared it through the baselines file) have one.
   */
  private readonly zeroBaseline = new Map<number, ZeroBaseline>();
  private readonly baselinesPath: string | false;
  /** The baselines as last written to the file, to write only when they change. */
  private written = '[]';
  /** Whether this reader sees every process of the host (seesWholeHost), once known. */
  private wholeHost: boolean | undefined;
  /** When this reader first read the host, in clock ticks since boot (/proc/uptime); undefined before. */
  private watchingSince: number | undefined;

  constructor(private readonly options: HostSourceOptions = {}) {
    this.clock = new KsmdClock(options.procRoot);
    const roots: { sysfsRoot?: string; procRoot?: string } = {};
    if (options.sysfsRoot !== undefined) roots.sysfsRoot = options.sysfsRoot;
    if (options.procRoot !== undefined) roots.procRoot = options.procRoot;
    this.ksm = options.ksm ?? new Ksm(roots);
    this.nodes = options.nodes ?? nodesSource();
    this.baselinesPath = options.zeroBaselines ?? (options.procRoot === undefined ? zeroBaselinesPath() : false);
  }

  /**
   * Footprints of `processes`, from the last walk when it is at most `maxAgeMs` old and covers them all.
   * A cached footprint of a process whose ksm_merging_pages moved since has no sharing weight: weights
   * from before a merge would give its share of today's pages_sharing to the others (figures() then
   * weights every process by its merging pages).
   */
  private async footprints(processes: { pid: number; mergingPages: number }[], maxAgeMs: number): Promise<Map<number, Footprint>> {
    const o = this.options;
    const cached = this.footprintCache;
    // Covered: walked last time, whether or not its footprint could be read (one that cannot must not force a walk at every reading).
    // And none walked then is gone: the sharing weights of the others were taken with it mapping their KSM pages.
    const fresh =
      cached !== undefined && Date.now() - cached.at <= maxAgeMs && cached.merging.size === processes.length && processes.every((p) => cached.merging.has(p.pid));
    if (fresh) {
      const out = new Map(cached.byPid);
      for (const p of processes) {
        const fp = out.get(p.pid);
        if (fp !== undefined && cached.merging.get(p.pid) !== p.mergingPages) out.set(p.pid, { ...fp, sharingWeight: null });
      }
      return out;
    }
    // One frame cache per reading: a KSM page mapped by several processes is looked up once.
    const frames = new FrameInfo(o.procRoot);
    const byPid = new Map<number, Footprint>();
    for (const { pid } of processes) {
      const fp = await readFootprint(pid, { frames, ...(o.procRoot === undefined ? {} : { procRoot: o.procRoot }) });
      if (fp !== undefined) byPid.set(pid, fp);
    }
    this.footprintCache = { at: Date.now(), byPid, merging: new Map(processes.map((p) => [p.pid, p.mergingPages])) };
    return byPid;
  }

  /**
   * Zero-page mappings beyond those the process had before KSM first merged its pages (0 until then),
   * and whether that is an upper bound: with no baseline (first seen already merged) every mapping is
   * counted, huge pages split before among them.
   */
  private sinceFirstMerge(pid: number, start: number, unmerged: boolean, zeroMapped: number | null): { pages: number | null; upperBound: boolean } {
    if (zeroMapped === null) return { pages: null, upperBound: false };
    if (unmerged) {
      this.zeroBaseline.set(pid, { start, zeroMappedPages: zeroMapped });
      return { pages: 0, upperBound: false };
    }
    const base = this.zeroBaseline.get(pid);
    if (base === undefined || base.start !== start) return { pages: zeroMapped, upperBound: zeroMapped > 0 };
    return { pages: Math.max(0, zeroMapped - base.zeroMappedPages), upperBound: false };
  }

  /**
   * Start times of `pids` (−1 for one whose stat cannot be read: its baseline is kept here only), and the
   * shared baselines of the merged ones this reader has none for.
   */
  private async baselinesFor(pids: number[], unmerged: Set<number>): Promise<Map<number, number>> {
    const procRoot = this.options.procRoot ?? '/proc';
    const starts = new Map<number, number>();
    await Promise.all(pids.map(async (pid) => starts.set(pid, (await readProcStat(procRoot, pid))?.startTime ?? -1)));
    const missing = (): number[] => pids.filter((pid) => !unmerged.has(pid) && this.zeroBaseline.get(pid)?.start !== starts.get(pid));
    await this.adoptShared(missing().map((pid) => ({ pid, start: starts.get(pid)! })));
    // A process that started after this reader began watching had no zero-page mapping at its start (its
    // memory was new), so that is its baseline even if ksmd merged it before this reader's next read: as
    // exact as one taken before the first merge, which also counts every later mapping as ksmd's. Unless
    // the huge zero page was ever allocated: a write to a huge zero page mapping splits it into 512
    // zero-page mappings that never held memory (not on kernels that never map it; docs/kernel.md).
    const young = missing().filter((pid) => this.watchingSince !== undefined && (starts.get(pid) ?? -1) > this.watchingSince);
    if (young.length > 0 && (await vmstatCounter(procRoot, 'thp_zero_page_alloc')) === 0) {
      for (const pid of young) this.zeroBaseline.set(pid, { start: starts.get(pid)!, zeroMappedPages: 0 });
    }
    return starts;
  }

  /**
   * Takes the shared baselines of `processes` (pid and start time) this reader has none for, reading the
   * baselines file once; an entry of another process with the same pid is not taken.
   */
  private async adoptShared(processes: readonly { pid: number; start: number }[]): Promise<void> {
    const missing = processes.filter(({ pid, start }) => this.zeroBaseline.get(pid)?.start !== start);
    if (this.baselinesPath === false || missing.length === 0) return;
    const shared = await readZeroBaselines(this.baselinesPath);
    for (const { pid, start } of missing) {
      const b = shared.get(pid);
      if (b !== undefined && b.start === start) this.zeroBaseline.set(pid, b);
    }
  }

  /**
   * The zero-page mappings of `processes` (pid and start time) while KSM had merged none of their pages, by
   * pid, as this reader recorded them or another shared them through the baselines file (read once); a
   * process none recorded is left out. The tuner's scan scheduler takes VMs it first sees already merged from
   * here (tune/schedule.ts), and `pagefuse scan` merged processes.
   */
  async zeroBaselinesOf(processes: readonly { pid: number; start: number }[]): Promise<Map<number, number>> {
    await this.adoptShared(processes);
    const out = new Map<number, number>();
    for (const { pid, start } of processes) {
      const b = this.zeroBaseline.get(pid);
      if (b?.start === start) out.set(pid, b.zeroMappedPages);
    }
    return out;
  }

  /**
   * Records the zero-page mappings of processes KSM has merged none of, counted by someone other than this
   * reader (`pagefuse scan`: the pages its scan found mapped to the zero page, ksm_stat read after it showing
   * nothing merged), and shares them with the other readers through the baselines file.
   */
  async recordZeroBaselines(entries: readonly { pid: number; start: number; zeroMappedPages: number }[]): Promise<void> {
    for (const { pid, start, zeroMappedPages } of entries) this.zeroBaseline.set(pid, { start, zeroMappedPages });
    await this.shareBaselines();
  }

  /** Shares this reader's baselines through the file when they changed since it last wrote them. */
  private async shareBaselines(): Promise<void> {
    if (this.baselinesPath === false) return;
    const now = JSON.stringify([...this.zeroBaseline].sort((a, b) => a[0] - b[0]));
    if (now === this.written) return;
    const procRoot = this.options.procRoot ?? '/proc';
    const failed = await writeZeroBaselines(this.baselinesPath, this.zeroBaseline, async (pid) => (await readProcStat(procRoot, pid))?.startTime);
    if (failed === undefined) this.written = now;
  }

  /** `footprintMaxAgeMs` overrides the option for this reading (0: walk the page maps now). */
  async read(options: { footprintMaxAgeMs?: number } = {}): Promise<Snapshot> {
    const o = this.options;
    if (this.watchingSince === undefined) {
      const uptime = await readProcText(o.procRoot ?? '/proc', 'uptime');
      const seconds = uptime === undefined ? NaN : Number.parseFloat(uptime);
      if (Number.isFinite(seconds)) this.watchingSince = Math.floor(seconds * USER_HZ);
    }
    const [ksm, list, cpu, vms, tuner, mem] = await Promise.all([
      this.ksm.read(),
      listKsmProcesses(o.procRoot === undefined ? { includeRegistered: true } : { procRoot: o.procRoot, includeRegistered: true }),
      this.clock.cpuSeconds(),
      o.vms?.() ?? Promise.resolve(new Map<number, string>()),
      readTunerState(o.tunerStatePath),
      readMemInfo(o.procRoot),
    ]);
    const counters = knownCounters(ksm.counters);
    const nodes = await this.nodes(counters.pages_shared);
    const footprints = o.footprints === false ? new Map<number, Footprint>() : await this.footprints(list.processes, options.footprintMaxAgeMs ?? o.footprintMaxAgeMs ?? 5000);
    // ksm_stat was read before the footprints: a process that ksmd began to merge in between (a THP split
    // maps zero subpages first) would set its baseline from a footprint that already counts ksmd's work.
    // It is a baseline only if it still shows nothing merged now that its footprint has been read.
    const unmergedNow = new Set<number>();
    await Promise.all(
      list.processes
        .filter((p) => p.mergingPages + p.zeroPages === 0 && footprints.has(p.pid))
        .map(async (p) => {
          const again = await processKsm(p.pid, o.procRoot === undefined ? {} : { procRoot: o.procRoot }).catch(() => undefined);
          if (again !== undefined && again.mergingPages + again.zeroPages === 0) unmergedNow.add(p.pid);
        }),
    );
    const measured = list.processes.filter((p) => (footprints.get(p.pid)?.zeroMappedPages ?? null) !== null).map((p) => p.pid);
    const starts = await this.baselinesFor(measured, unmergedNow);
    const snapshot: Snapshot = {
      at: Date.now(),
      pageSize: o.pageSize ?? PAGE_SIZE,
      settings: ksm.settings,
      counters,
      processes: list.processes.map((p) => {
        const vm = vms.get(p.pid);
        const fp = footprints.get(p.pid);
        return {
          pid: p.pid,
          name: vm ?? p.name,
          vm: vm !== undefined,
          rmapItems: p.rmapItems ?? 0,
          zeroPages: p.zeroPages,
          mergingPages: p.mergingPages,
          profitBytes: p.profitBytes,
          registered: (p.rmapItems ?? 0) > 0 || p.mergeable === true || p.mergeAny === true,
          ...footprintFields(fp, this.sinceFirstMerge(p.pid, starts.get(p.pid) ?? -1, unmergedNow.has(p.pid), fp?.zeroMappedPages ?? null)),
        };
      }),
    };
    const listed = new Set(list.processes.map((p) => p.pid));
    for (const pid of this.zeroBaseline.keys()) if (!listed.has(pid)) this.zeroBaseline.delete(pid);
    await this.shareBaselines();
    if (cpu !== undefined) snapshot.ksmdCpuSeconds = cpu;
    if (nodes !== undefined) snapshot.nodes = nodes;
    if (tuner !== undefined) snapshot.tuner = tuner;
    snapshot.mem = mem;
    this.wholeHost ??= await seesWholeHost(o.procRoot ?? '/proc');
    snapshot.wholeHost = this.wholeHost;
    return snapshot;
  }
}

/** A /proc/vmstat counter, or undefined when it cannot be read or the kernel has none by that name. */
async function vmstatCounter(procRoot: string, name: string): Promise<number | undefined> {
  const text = await readProcText(procRoot, 'vmstat');
  const m = text === undefined ? null : new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return m === null ? undefined : Number(m[1]);
}

function footprintFields(
  fp: Footprint | undefined,
  zero: { pages: number | null; upperBound: boolean },
): { pssBytes?: number; zeroMappedPages: number | null; sharingWeight: number | null; thpSplitUpperBound?: true } {
  if (fp === undefined) return { zeroMappedPages: null, sharingWeight: null };
  return { pssBytes: fp.pssBytes, zeroMappedPages: zero.pages, sharingWeight: fp.sharingWeight, ...(zero.upperBound ? { thpSplitUpperBound: true as const } : {}) };
}

/** VM discovery as the report needs it: pid → guest name, for VMMs and registered processes (by their registered name). */
export async function vmNames(procRoot?: string): Promise<Map<number, string>> {
  return discoverVmNames(procRoot === undefined ? {} : { procRoot });
}

/** This host, with VM names from VM discovery. */
export function hostSource(options: HostSourceOptions = {}): HostSource {
  return new HostSource({ vms: () => vmNames(options.procRoot), ...options });
}
