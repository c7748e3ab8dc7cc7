// Reads a Snapshot of this host: KSM's knobs and counters (Ksm), every process's ksm_stat, ksmd's CPU
// time, KSM pages per NUMA node, VM names and the tuner's latest decision. Roots are options so tests
// can point at a fake sysfs/procfs.
import { readMemInfo } from '../host/meminfo.js';
import { KsmdClock } from '../host/ksmd.js';
import { PAGE_SIZE } from '../host/page-size.js';
import type { NodeSample, Snapshot } from './model.js';
import { readTunerState } from './tuner-state.js';
import { Ksm } from '../ksm/ksm.js';
import { knownCounters } from '../ksm/counters.js';
import { listKsmProcesses, processKsm } from '../ksm/process.js';
import { FrameInfo, readFootprint, type Footprint } from '../ksm/footprint.js';
import { numaTopology } from '../numa/topology.js';
import { ksmPagesByNode } from '../numa/ksm-nodes.js';
import { vmNames as discoverVmNames } from '../safety/vms.js';

export interface SnapshotSource {
  read(): Promise<Snapshot>;
}

export interface HostSourceOptions {
  sysfsRoot?: string;
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
  private readonly ksm: Ksm;
  private readonly nodes: (pagesShared: number) => Promise<NodeSample[] | undefined>;
  private footprintCache: { at: number; byPid: Map<number, Footprint> } | undefined;
  /**
   * Per process, its zero-page mappings while KSM had merged none of its pages: huge pages of zeros the
   * kernel split before ksmd ran look exactly like ksmd's own splits (docs/savings.md), so they are
   * subtracted once it merges. Only processes seen before their first merge have one.
   */
  private readonly zeroBaseline = new Map<number, number>();

  constructor(private readonly options: HostSourceOptions = {}) {
    this.clock = new KsmdClock(options.procRoot);
    const roots: { sysfsRoot?: string; procRoot?: string } = {};
    if (options.sysfsRoot !== undefined) roots.sysfsRoot = options.sysfsRoot;
    if (options.procRoot !== undefined) roots.procRoot = options.procRoot;
    this.ksm = new Ksm(roots);
    this.nodes = options.nodes ?? nodesSource();
  }

  private async footprints(pids: number[]): Promise<Map<number, Footprint>> {
    const o = this.options;
    const cached = this.footprintCache;
    const fresh = cached !== undefined && Date.now() - cached.at <= (o.footprintMaxAgeMs ?? 5000) && pids.every((p) => cached.byPid.has(p));
    if (fresh) return cached.byPid;
    // One frame cache per reading: a KSM page mapped by several processes is looked up once.
    const frames = new FrameInfo(o.procRoot);
    const byPid = new Map<number, Footprint>();
    for (const pid of pids) {
      const fp = await readFootprint(pid, { frames, ...(o.procRoot === undefined ? {} : { procRoot: o.procRoot }) });
      if (fp !== undefined) byPid.set(pid, fp);
    }
    this.footprintCache = { at: Date.now(), byPid };
    return byPid;
  }

  /** Zero-page mappings beyond those the process had before KSM first merged its pages (0 until then). */
  private sinceFirstMerge(pid: number, unmerged: boolean, zeroMapped: number | null): number | null {
    if (zeroMapped === null) return null;
    if (unmerged) {
      this.zeroBaseline.set(pid, zeroMapped);
      return 0;
    }
    const base = this.zeroBaseline.get(pid);
    return base === undefined ? zeroMapped : Math.max(0, zeroMapped - base);
  }

  async read(): Promise<Snapshot> {
    const o = this.options;
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
    const footprints = o.footprints === false ? new Map<number, Footprint>() : await this.footprints(list.processes.map((p) => p.pid));
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
          ...footprintFields(fp, this.sinceFirstMerge(p.pid, unmergedNow.has(p.pid), fp?.zeroMappedPages ?? null)),
        };
      }),
    };
    const listed = new Set(list.processes.map((p) => p.pid));
    for (const pid of this.zeroBaseline.keys()) if (!listed.has(pid)) this.zeroBaseline.delete(pid);
    if (cpu !== undefined) snapshot.ksmdCpuSeconds = cpu;
    if (nodes !== undefined) snapshot.nodes = nodes;
    if (tuner !== undefined) snapshot.tuner = tuner;
    snapshot.mem = mem;
    return snapshot;
  }
}

function footprintFields(fp: Footprint | undefined, zeroMapped: number | null): { pssBytes?: number; zeroMappedPages: number | null; sharingWeight: number | null } {
  if (fp === undefined) return { zeroMappedPages: null, sharingWeight: null };
  return { pssBytes: fp.pssBytes, zeroMappedPages: zeroMapped, sharingWeight: fp.sharingWeight };
}

/** VM discovery as the report needs it: pid → guest name, for VMMs and registered processes (by their registered name). */
export async function vmNames(procRoot?: string): Promise<Map<number, string>> {
  return discoverVmNames(procRoot === undefined ? {} : { procRoot });
}

/** This host, with VM names from VM discovery. */
export function hostSource(options: HostSourceOptions = {}): HostSource {
  return new HostSource({ vms: () => vmNames(options.procRoot), ...options });
}
