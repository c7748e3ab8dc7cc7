// What a policy sees (an Observation) and what it answers (a Decision with its reasons).
import type { VmInfo } from '../vm/discover.js';
import type { MemInfo } from '../host/meminfo.js';
import type { MemoryPressure } from '../host/pressure.js';
import { savedPages, type KnownKsmCounters } from '../ksm/counters.js';
import type { SavedPages } from '../ksm/savings.js';

/** The sysfs knobs the tuner writes, under the kernel's names. */
export interface KsmKnobs {
  run: number;
  pages_to_scan: number;
  sleep_millisecs: number;
  advisor_mode?: 'none' | 'scan-time';
  advisor_max_cpu?: number;
}

/** What the scan engine says could be saved across the VMs it covered. */
export interface Estimate {
  /** When the scan ended (ms, same clock as Observation.time). */
  at: number;
  /** Pages KSM would save once every duplicate (and zero page) is merged, counting those already merged. */
  savedPages: number;
  /** Predicted Σ ksm_merging_pages + ksm_zero_pages of the covered VMs once ksmd has converged. */
  mergingPages: number;
  /** Pages the scan looked at. */
  pages: number;
  /** Share of pages that changed between successive scans (0–1), when known. */
  volatility: number;
  /** Whether every VM alive now is covered by a scan. */
  complete: boolean;
  /**
   * Huge pages that, with use_zero_pages=0, ksmd splits only one per full scan (zero subpages and
   * otherwise unique data, docs/savings.md), and their zero subpages: not in savedPages, which ksmd reaches by
   * its second full scan. Absent when a covered scan could not read page flags (not root).
   */
  thpSlowSplit?: SlowSplit;
}

/** Huge pages ksmd splits only one per full scan, and the zero subpages that frees (docs/savings.md). */
export interface SlowSplit {
  hugePages: number;
  zeroPages: number;
}

/**
 * What KSM gives back to the tuner's VMs now, by the one definition of saved (docs/savings.md): the
 * memory returned to them as their memory cgroup or summed PSS sees it. The same figure `pagefuse
 * status`, `top`, `serve` and `report` show for those processes: each VM's share of the host's KSM
 * pages (a page mapped by k processes credits each (k − 1)/k), its zero pages, and the zero subpages
 * freed when ksmd split its huge pages. KSM's own metadata is a host cost, not taken off.
 */
export interface VmSaved {
  /**
   * Σ of `saved`'s parts, bytes. Exact at a decision that leaves ksmd stopped (the converged one); while
   * ksmd runs the VMs' page maps are walked at most every 30 s, so the THP-split part may lag that much
   * (docs/savings.md, "In the API").
   */
  savedBytes: number;
  /** The parts, pages, summed over the tuner's VMs (watched VMMs, registered processes, this process for its Regions). */
  saved: SavedPages;
  /**
   * Whether the THP-split part was measured: it needs root (pagemap, kpageflags). false: that part is
   * 0 in `saved` and savedBytes is low by it.
   */
  savedThpSplitKnown: boolean;
  /**
   * Whether the THP-split part is only an upper bound: a VM was first seen already merged, with no
   * count of its zero-page mappings from before (huge pages split earlier count too; docs/savings.md).
   */
  savedUpperBound: boolean;
  /** The same figure for every process with KSM state on the host, the tuner's VMs and any others, bytes. */
  hostSavedBytes: number;
}

export interface Observation {
  /** ms, monotonic. */
  time: number;
  /** /proc/meminfo, bytes. */
  memory: MemInfo;
  pressure: MemoryPressure | null;
  vms: VmInfo[];
  knobs: KsmKnobs;
  counters: KnownKsmCounters;
  /** ksmd's CPU time so far, seconds; null when ksmd is not found. */
  ksmdCpuSeconds: number | null;
  estimate: Estimate | null;
  cpus: number;
  pageSize: number;
}

export interface Decision {
  /** Knob values to write (only those that differ from Observation.knobs are written). */
  knobs: Partial<KsmKnobs>;
  /** Pids the scan scheduler should rescan soon. */
  rescan: number[];
}

export interface PolicyResult<S> {
  decision: Decision;
  reasons: string[];
  nextState: S;
}

export type PolicyFn<S, C> = (observation: Observation, state: S, config: C) => PolicyResult<S>;

/** The pages KSM has merged in this VM, by its ksm_stat (ksm_merging_pages + ksm_zero_pages); null without one. */
export function vmMergedPages(vm: VmInfo): number | null {
  return vm.ksm === null ? null : (vm.ksm.mergingPages ?? 0) + (vm.ksm.zeroPages ?? 0);
}

/**
 * Pages the VMs save now, in the estimate's units: their own merged pages (ksm_stat) scaled by the
 * estimate's saved/merging ratio, so other KSM users on the host do not count. Host-wide counts where
 * the kernel has no ksm_stat.
 */
export function vmSavedPages(o: Observation): number {
  const est = o.estimate;
  const withStat = o.vms.filter((vm) => vm.ksm !== null);
  if (est === null || est.mergingPages <= 0 || withStat.length === 0) return savedPages(o.counters);
  const merged = withStat.reduce((sum, vm) => sum + (vmMergedPages(vm) ?? 0), 0);
  return Math.round((merged * est.savedPages) / est.mergingPages);
}
