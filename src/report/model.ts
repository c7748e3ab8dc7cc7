// The savings model: the one place that turns KSM's counters into the figures every output shows
// (top, Prometheus, HTML, bench). Pure functions over plain snapshots, so each output agrees; it never
// loads the addon (test/pure-modules.test.ts).

import { unshareExposure, type Exposure } from '../safety/exposure.js';
import type { MemInfo } from '../host/meminfo.js';
import { profitFromCounters, savedPages, type KnownKsmCounters } from '../ksm/counters.js';
import type { KsmSettings } from '../ksm/knobs.js';
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
}

export interface HostSavings {
  /** Bytes saved net of KSM's own metadata: general_profit, or the kernel's formula when it is absent. */
  profitBytes: number;
  /** (pages_sharing + ksm_zero_pages) × page size: what merging freed before metadata. */
  grossBytes: number;
  /** rmap_items × 64 B. */
  metadataBytes: number;
  /** pages_sharing / pages_shared: sharers per KSM page; null with no KSM pages. */
  sharingRatio: number | null;
  /** Pages currently saved: pages_sharing + ksm_zero_pages. */
  savedPages: number;
  profitSource: 'general_profit' | 'computed';
}

/**
 * Host-wide savings. The kernel's general_profit is
 * (pages_sharing + ksm_zero_pages) × PAGE_SIZE − ksm_rmap_items × sizeof(rmap_item); sysfs does not
 * show ksm_rmap_items, so when general_profit is missing (kernels before 6.4) the admin guide's
 * approximation rmap_items ≈ shared + sharing + unshared + volatile stands in (as Ksm.read() does).
 */
export function hostSavings(counters: KnownKsmCounters, pageSize: number): HostSavings {
  const saved = savedPages(counters);
  const grossBytes = saved * pageSize;
  const profitBytes = profitFromCounters(counters, pageSize);
  const metadataBytes = grossBytes - profitBytes;
  const profitSource: HostSavings['profitSource'] = counters.general_profit !== undefined ? 'general_profit' : 'computed';
  const sharingRatio = counters.pages_shared > 0 ? counters.pages_sharing / counters.pages_shared : null;
  return { profitBytes, grossBytes, metadataBytes, sharingRatio, savedPages: saved, profitSource };
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
  name: string;
  vm: boolean;
  mergingPages: number;
  zeroPages: number;
  rmapItems: number;
  profitBytes: number;
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
  /** ksmd's cumulative CPU seconds, or null when ksmd cannot be found. */
  ksmdCpuSeconds: number | null;
  rates: Rates | null;
  /** Processes with KSM state, most profit first. */
  processes: ProcessFigures[];
  nodes: NodeFigures[];
  tuner: DecisionRecord | null;
  sharing: SharingMatrix | null;
  /** What comes back if every merged page is written, against MemAvailable + SwapFree; null without meminfo. */
  exposure: Exposure | null;
}

export function figures(cur: Snapshot, prev?: Snapshot): Figures {
  const processes = cur.processes
    .filter((p) => p.rmapItems > 0 || p.mergingPages > 0 || p.zeroPages > 0)
    .map((p) => ({
      pid: p.pid,
      name: p.name,
      vm: p.vm === true,
      mergingPages: p.mergingPages,
      zeroPages: p.zeroPages,
      rmapItems: p.rmapItems,
      profitBytes: p.profitBytes,
    }))
    .sort((a, b) => b.profitBytes - a.profitBytes || a.pid - b.pid);
  return {
    at: cur.at,
    pageSize: cur.pageSize,
    settings: cur.settings,
    counters: cur.counters,
    host: hostSavings(cur.counters, cur.pageSize),
    ksmdCpuSeconds: cur.ksmdCpuSeconds ?? null,
    rates: prev === undefined ? null : rates(prev, cur),
    processes,
    nodes: (cur.nodes ?? []).map((n) => ({ id: n.id, ksmPages: n.ksmPages, bytes: n.ksmPages * cur.pageSize })),
    tuner: cur.tuner ?? null,
    sharing: cur.sharing ?? null,
    exposure:
      cur.mem === undefined
        ? null
        : unshareExposure({ pagesSharing: cur.counters.pages_sharing, ksmZeroPages: cur.counters.ksm_zero_pages ?? 0, pageSize: cur.pageSize, mem: cur.mem }),
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
  profit_bytes: number;
  saved_pages: number;
  /** ksmd CPU as a fraction of one CPU over the interval ending here, or null for the first point. */
  ksmd_cpu: number | null;
}

/** The chart series for a run of snapshots, oldest first. */
export function series(snapshots: readonly Snapshot[]): SeriesPoint[] {
  return snapshots.map((s, i) => {
    const h = hostSavings(s.counters, s.pageSize);
    const r = i > 0 ? rates(snapshots[i - 1], s) : null;
    return { t: s.at, profit_bytes: h.profitBytes, saved_pages: h.savedPages, ksmd_cpu: r?.ksmdCpu ?? null };
  });
}
