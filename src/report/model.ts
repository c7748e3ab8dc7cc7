// The savings model: the one place that turns KSM's counters into the figures every output shows
// (top, Prometheus, HTML, bench). Pure functions over plain snapshots, so each output agrees; it never
// loads the addon (test/pure-modules.test.ts).

import { unshareExposure, type Exposure } from '../safety/exposure.js';
import type { MemInfo } from '../host/meminfo.js';
import { RMAP_ITEM_BYTES, profitFromCounters, savedPages, type KnownKsmCounters } from '../ksm/counters.js';
import type { KsmSettings } from '../ksm/knobs.js';
import { apportion, sharingShares, totalSavedPages, type SavedPages } from '../ksm/savings.js';
import { invalidNumber } from '../errors.js';

/** One process's /proc/<pid>/ksm_stat, with its name (the VM's name when it is a guest). */
export interface ProcessSample {
  pid: number;
  name: string;
  /** Set when VM discovery recognised the process as a guest (qemu, firecracker…). */
  vm?: boolean;
  rmapItems: number;
  zeroPages: number;
  mergingPages: number;
  /** ksm_process_profit: (merging + zero pages) × page size − rmap items × rmap_item size. */
  profitBytes: number;
  /** Registered with KSM (mergeable memory) even if nothing merged yet. */
  registered?: boolean;
  /** Proportional set size (smaps), bytes: what the process costs, a shared page counting 1/k. */
  pssBytes?: number;
  /** Root: pages of its mergeable areas mapped to the 4 KiB zero page (KSM's own included); null unknown. */
  zeroMappedPages?: number | null;
  /** Root: Σ (k − 1)/k over its mappings of KSM pages shared k ways; null unknown. */
  sharingWeight?: number | null;
  /**
   * Set when zeroMappedPages has no baseline from before KSM first merged this process's pages (it was
   * first seen already merged): it then counts huge pages split before too, by the kernel or an earlier
   * ksmd run, and is an upper bound (docs/savings.md).
   */
  thpSplitUpperBound?: boolean;
}

/** KSM pages held on one NUMA node. */
export interface NodeSample {
  id: number;
  ksmPages: number;
}

/** What the tuner last decided: the knobs it set and why. */
export interface DecisionRecord {
  /** ms since the epoch */
  at: number;
  policy: string;
  settings: Partial<Record<string, number>>;
  reason: string;
  /** The overcommit guard at this decision: the un-share margin fell under its threshold. */
  atRisk?: boolean;
  /** The tuner's process, whether it only decided (--dry-run) and when it wrote this (ms since the epoch). */
  pid?: number;
  dryRun?: boolean;
  writtenAt?: number;
  /** Set by the reader: whether that process still runs. A decision of a tuner that exited is not in force. */
  running?: boolean;
  /** The latest would-save estimate of the tuner's scans (docs/savings.md), bytes; absent before its first scan. */
  estimatedBytes?: number;
  /**
   * Beside it, what that estimate leaves out: the huge pages ksmd splits only one per full scan
   * (use_zero_pages=0) and their zero subpages, bytes; absent when unknown (docs/savings.md).
   */
  thpSlowSplitPages?: number;
  thpSlowSplitZeroBytes?: number;
}

/** Pages shared between scan targets (scan()'s `sharing` matrix), for the heat map. */
export interface SharingMatrix {
  labels: string[];
  pages: number[][];
}

/** Everything the outputs need at one instant. */
export interface Snapshot {
  /** ms since the epoch */
  at: number;
  pageSize: number;
  settings: KsmSettings;
  counters: KnownKsmCounters;
  /** ksmd's cumulative CPU time, in seconds, or undefined when ksmd cannot be found. */
  ksmdCpuSeconds?: number;
  processes: ProcessSample[];
  nodes?: NodeSample[];
  tuner?: DecisionRecord;
  sharing?: SharingMatrix;
  /** /proc/meminfo in bytes, for the un-share exposure. */
  mem?: MemInfo;
  /** A would-save estimate from a scan made with this snapshot (report's duplicate scan). */
  estimate?: WouldSave;
  /**
   * The reader saw every process of the host (root, in the initial PID namespace): KSM pages that no
   * process listed holds then belong to processes that have exited.
   */
  wholeHost?: boolean;
}

/** What merging would give back, from the latest scan (docs/savings.md). */
export interface WouldSave {
  /** ms since the epoch */
  at: number;
  /** The scan's estimate: what saved reaches by ksmd's second full scan (docs/savings.md). */
  bytes: number;
  /**
   * What comes later, not in `bytes`: with use_zero_pages=0, huge pages holding zero subpages and
   * otherwise unique data, which ksmd splits only one per full scan, and the zero subpages that frees.
   * bytes + slowSplit.bytes is what merging gives back once ksmd has split them all. null when the scan
   * could not read page flags (not root) or the tuner's state file does not say.
   */
  slowSplit: { hugePages: number; bytes: number } | null;
  /** Who scanned: the tuner daemon, or a scan made for this output. */
  source: 'tuner' | 'scan';
}

/** The would-save figure a tuner published with its decision, or null when it has none. */
export function tunerWouldSave(t: DecisionRecord | undefined): WouldSave | null {
  if (t?.estimatedBytes === undefined) return null;
  const slowSplit =
    t.thpSlowSplitPages === undefined || t.thpSlowSplitZeroBytes === undefined ? null : { hugePages: t.thpSlowSplitPages, bytes: t.thpSlowSplitZeroBytes };
  return { at: t.at, bytes: t.estimatedBytes, slowSplit, source: 'tuner' };
}

/** sizeof(struct ksm_stable_node) on 64-bit kernels: one per KSM page (and per chain head). */
export const STABLE_NODE_BYTES = process.arch.endsWith('64') ? 64 : 32;

/**
 * What KSM gives back, host-wide (docs/savings.md): the memory returned to the merged processes, as
 * their cgroup or summed PSS sees it, in three parts, and KSM's own metadata as a host cost beside it.
 */
export interface HostSavings {
  /** The parts, in pages: pages_sharing, ksm_zero_pages, and zero subpages freed by THP splits. */
  saved: SavedPages;
  /** Σ of the parts. */
  savedPages: number;
  /**
   * Pages pages_sharing still counts for processes that have exited, left out of `saved.ksmPages`: the kernel
   * keeps an exited process's merged pages in its counters until ksmd next passes (mm/ksm.c's __ksm_exit
   * leaves its rmap items to ksmd), though their memory is freed already. 0 unless figures() could tell
   * (root, seeing every process of the host: Snapshot.wholeHost).
   */
  exitedPages: number;
  savedBytes: number;
  /** Whether the THP-split part was measured (root reads pagemap/kpageflags); 0 in `saved` when not. */
  thpSplitKnown: boolean;
  /**
   * Whether the THP-split part (and so savedPages) is an upper bound: part of it comes from processes
   * first seen already merged, which have no baseline (docs/savings.md).
   */
  thpSplitUpperBound: boolean;
  /** KSM's own kernel memory: rmap_items × 64 B + stable nodes (pages_shared + chains) × 64 B. Not charged to the processes. */
  metadataBytes: number;
  /** savedBytes − metadataBytes: what the host as a whole is better off. */
  netBytes: number;
  /** The kernel's general_profit: (pages_sharing + ksm_zero_pages) × page size − rmap_items × 64 B (or the same formula on kernels without it). */
  kernelProfitBytes: number;
  /** pages_sharing / pages_shared: sharers per KSM page; null with no KSM pages. */
  sharingRatio: number | null;
  profitSource: 'general_profit' | 'computed';
}

/**
 * Host-wide savings. `thpSplitZeroPages` is measured per process (root: zero-page mappings in the
 * mergeable areas, less ksm_zero_pages) and summed by figures(); undefined when unknown.
 */
export function hostSavings(counters: KnownKsmCounters, pageSize: number, thpSplitZeroPages?: number, thpSplitUpperBound = false, exitedPages = 0): HostSavings {
  const saved: SavedPages = {
    ksmPages: counters.pages_sharing - exitedPages,
    ksmZeroPages: counters.ksm_zero_pages ?? 0,
    thpSplitZeroPages: thpSplitZeroPages ?? 0,
  };
  const total = totalSavedPages(saved);
  const kernelProfitBytes = profitFromCounters(counters, pageSize);
  // general_profit's metadata is rmap_items × 64 B; the stable nodes come on top.
  const rmapBytes = savedPages(counters) * pageSize - kernelProfitBytes;
  const stableNodes = counters.pages_shared + (counters.stable_node_chains ?? 0);
  const metadataBytes = rmapBytes + stableNodes * STABLE_NODE_BYTES;
  return {
    saved,
    savedPages: total,
    exitedPages,
    savedBytes: total * pageSize,
    thpSplitKnown: thpSplitZeroPages !== undefined,
    thpSplitUpperBound: thpSplitZeroPages !== undefined && thpSplitUpperBound,
    metadataBytes,
    netBytes: total * pageSize - metadataBytes,
    kernelProfitBytes,
    sharingRatio: counters.pages_shared > 0 ? counters.pages_sharing / counters.pages_shared : null,
    profitSource: counters.general_profit !== undefined ? 'general_profit' : 'computed',
  };
}

export interface Rates {
  /** Seconds between the two snapshots. */
  seconds: number;
  /** Change in saved pages (pages_sharing + ksm_zero_pages) per second; negative when pages unmerge. */
  mergePagesPerSecond: number;
  /** ksmd's CPU use over the interval, as a fraction of one CPU (0.25 = 25 %), or null if unknown. */
  ksmdCpu: number | null;
  /** Pages ksmd scanned per second (pages_scanned, kernel 6.8+), or null. */
  scannedPagesPerSecond: number | null;
  /** Full scans completed over the interval. */
  fullScans: number;
}

/** Rates between two snapshots of the same host; null when they are not in time order. */
export function rates(prev: Snapshot, cur: Snapshot): Rates | null {
  const seconds = (cur.at - prev.at) / 1000;
  if (!(seconds > 0)) return null;
  const cpu =
    prev.ksmdCpuSeconds !== undefined && cur.ksmdCpuSeconds !== undefined
      ? Math.max(0, cur.ksmdCpuSeconds - prev.ksmdCpuSeconds) / seconds
      : null;
  const scanned =
    prev.counters.pages_scanned !== undefined && cur.counters.pages_scanned !== undefined
      ? Math.max(0, cur.counters.pages_scanned - prev.counters.pages_scanned) / seconds
      : null;
  // run=2 resets full_scans to 0: count from the reset rather than going negative.
  const scans = cur.counters.full_scans - prev.counters.full_scans;
  return {
    seconds,
    mergePagesPerSecond: (savedPages(cur.counters) - savedPages(prev.counters)) / seconds,
    ksmdCpu: cpu,
    scannedPagesPerSecond: scanned,
    fullScans: scans >= 0 ? scans : cur.counters.full_scans,
  };
}

export interface ProcessFigures {
  pid: number;
  /** The guest's name for a VM (VM discovery), else the command name: the same everywhere. */
  name: string;
  vm: boolean;
  mergingPages: number;
  zeroPages: number;
  rmapItems: number;
  /** This process's share of the host's saved pages (docs/savings.md); the rows sum to host.saved. */
  saved: SavedPages;
  savedBytes: number;
  /** Its THP-split part is an upper bound: first seen already merged, it has no baseline. */
  thpSplitUpperBound: boolean;
  /** PSS in bytes (what the process costs now), or null when it could not be read. */
  pssBytes: number | null;
  /** Its rmap_items × 64 B: KSM metadata spent on it (a host cost, not in pssBytes). */
  metadataBytes: number;
  /** The kernel's ksm_process_profit: counts every merged page as saved in every process mapping it, so these do not sum to the host. */
  kernelProfitBytes: number;
}

export interface NodeFigures {
  id: number;
  ksmPages: number;
  bytes: number;
}

/** The figures every output shows, for one snapshot (and rates against the one before it). */
export interface Figures {
  at: number;
  pageSize: number;
  settings: KsmSettings;
  counters: KnownKsmCounters;
  host: HostSavings;
  /** Why the processes' shares do not sum to host.saved, or null when they do. */
  sharesNote: string | null;
  /** The latest would-save estimate, or null when nothing has scanned. */
  wouldSave: WouldSave | null;
  /** ksmd's cumulative CPU seconds, or null when ksmd cannot be found. */
  ksmdCpuSeconds: number | null;
  rates: Rates | null;
  /** Processes with KSM state or registered with KSM (VMs even while KSM is stopped), most saved first. */
  processes: ProcessFigures[];
  nodes: NodeFigures[];
  tuner: DecisionRecord | null;
  sharing: SharingMatrix | null;
  /** What comes back if every merged page is written, against MemAvailable + SwapFree; null without meminfo. */
  exposure: Exposure | null;
}

/** Zero subpages freed by THP splits in one process: its zero-page mappings less KSM's own. */
export function thpSplitOf(p: ProcessSample): number | undefined {
  if (p.zeroMappedPages === undefined || p.zeroMappedPages === null) return undefined;
  return Math.max(0, p.zeroMappedPages - p.zeroPages);
}

/**
 * The pages pages_sharing still counts for processes that have exited. Each merged page of a process is one
 * of the kernel's pages_shared + pages_sharing (its ksm_merging_pages), and an exited process keeps its part
 * there until ksmd next passes: while ksmd is stopped, for good. Seen only by a reader of every process with
 * their exact sharing weights (the page tables as they are now: Σ (k − 1)/k over the mappings left), whose
 * sum is then what KSM saves; 0 otherwise, and when the listed processes hold every merged page.
 */
function exitedPages(cur: Snapshot, listed: readonly ProcessSample[], exact: boolean): number {
  if (cur.wholeHost !== true || !exact) return 0;
  const held = listed.reduce((a, p) => a + p.mergingPages, 0);
  if (held >= cur.counters.pages_shared + cur.counters.pages_sharing) return 0;
  const weights = listed.reduce((a, p) => a + (p.sharingWeight as number), 0);
  return Math.max(0, cur.counters.pages_sharing - Math.round(weights));
}

export function figures(cur: Snapshot, prev?: Snapshot): Figures {
  const ps = cur.pageSize;
  const listed = cur.processes.filter((p) => p.rmapItems > 0 || p.mergingPages > 0 || p.zeroPages > 0 || p.registered === true || p.vm === true);
  const split = listed.map(thpSplitOf);
  // With nobody listed the part is 0 only if KSM holds nothing either (otherwise: unreadable, not root).
  const splitKnown = listed.length > 0 ? split.every((v) => v !== undefined) : savedPages(cur.counters) === 0;
  const bounded = listed.map((p, i) => p.thpSplitUpperBound === true && (split[i] ?? 0) > 0);
  const exact = listed.length > 0 && listed.every((p) => typeof p.sharingWeight === 'number');
  const host = hostSavings(cur.counters, ps, splitKnown ? split.reduce<number>((a, v) => a + (v ?? 0), 0) : undefined, bounded.includes(true), exitedPages(cur, listed, exact));
  // Shares: pages_sharing (less the exited processes' pages) by each process's exact (k − 1)/k weight where
  // known for all, else by its merging pages; ksm_zero_pages by its own zero pages (so a read racing the
  // counters still sums).
  const sharing = sharingShares(host.saved.ksmPages, listed.map((p) => (exact ? (p.sharingWeight as number) : p.mergingPages)));
  const zero = apportion(host.saved.ksmZeroPages, listed.map((p) => p.zeroPages));
  const processes = listed
    .map((p, i): ProcessFigures => {
      const saved: SavedPages = { ksmPages: sharing[i], ksmZeroPages: zero[i], thpSplitZeroPages: splitKnown ? (split[i] ?? 0) : 0 };
      return {
        pid: p.pid,
        name: p.name,
        vm: p.vm === true,
        mergingPages: p.mergingPages,
        zeroPages: p.zeroPages,
        rmapItems: p.rmapItems,
        saved,
        savedBytes: totalSavedPages(saved) * ps,
        thpSplitUpperBound: splitKnown && bounded[i],
        pssBytes: p.pssBytes ?? null,
        metadataBytes: p.rmapItems * RMAP_ITEM_BYTES,
        kernelProfitBytes: p.profitBytes,
      };
    })
    .sort((a, b) => b.savedBytes - a.savedBytes || b.mergingPages - a.mergingPages || a.pid - b.pid);
  const rowSum = processes.reduce((a, p) => a + p.savedBytes, 0);
  let sharesNote: string | null = null;
  if (rowSum !== host.savedBytes) {
    sharesNote =
      processes.length === 0
        ? 'no process with KSM state could be read (other users\' processes need root)'
        : `the processes listed hold ${host.saved.ksmPages + host.saved.ksmZeroPages > 0 && rowSum === 0 ? 'none' : 'part'} of the host's KSM pages (the others could not be read: run as root)`;
  }
  return {
    at: cur.at,
    pageSize: ps,
    settings: cur.settings,
    counters: cur.counters,
    host,
    sharesNote,
    wouldSave: cur.estimate ?? tunerWouldSave(cur.tuner),
    ksmdCpuSeconds: cur.ksmdCpuSeconds ?? null,
    rates: prev === undefined ? null : rates(prev, cur),
    processes,
    nodes: (cur.nodes ?? []).map((n) => ({ id: n.id, ksmPages: n.ksmPages, bytes: n.ksmPages * ps })),
    tuner: cur.tuner ?? null,
    sharing: cur.sharing ?? null,
    exposure:
      cur.mem === undefined
        ? null
        : unshareExposure({ pagesSharing: cur.counters.pages_sharing, ksmZeroPages: cur.counters.ksm_zero_pages ?? 0, pageSize: ps, mem: cur.mem }),
  };
}

/** A fixed-size ring buffer: the short history behind rates and charts. */
export class History<T> {
  readonly capacity: number;
  private readonly items: (T | undefined)[];
  private start = 0;
  private count = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw invalidNumber(`History: capacity must be a whole number ≥ 1`, capacity);
    }
    this.capacity = capacity;
    this.items = new Array<T | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  push(item: T): void {
    const end = (this.start + this.count) % this.capacity;
    this.items[end] = item;
    if (this.count < this.capacity) this.count++;
    else this.start = (this.start + 1) % this.capacity;
  }

  /** The newest item, or the one `back` places before it. */
  last(back = 0): T | undefined {
    if (back < 0 || back >= this.count) return undefined;
    return this.items[(this.start + this.count - 1 - back) % this.capacity];
  }

  /** Oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.items[(this.start + i) % this.capacity] as T);
    return out;
  }
}

/** One point of a savings-over-time series (snake_case: it is also the history file's format). */
export interface SeriesPoint {
  /** ms since the epoch */
  t: number;
  /** What the processes got back (docs/savings.md): saved bytes, all parts. */
  saved_bytes: number;
  /** The kernel's general_profit at this point. */
  profit_bytes: number;
  saved_pages: number;
  /** ksmd CPU as a fraction of one CPU over the interval ending here, or null for the first point. */
  ksmd_cpu: number | null;
}

/** The chart series for a run of snapshots, oldest first. */
export function series(snapshots: readonly Snapshot[]): SeriesPoint[] {
  return snapshots.map((s, i) => {
    const h = figures(s).host;
    const r = i > 0 ? rates(snapshots[i - 1], s) : null;
    return { t: s.at, saved_bytes: h.savedBytes, profit_bytes: h.kernelProfitBytes, saved_pages: h.savedPages, ksmd_cpu: r?.ksmdCpu ?? null };
  });
}
