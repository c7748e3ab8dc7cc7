// What "saved" means, in one place (docs/savings.md): the memory given back to the merged processes,
// as their memory cgroup or their summed PSS sees it. Three parts free memory; KSM's own metadata is
// a host cost, shown beside them and never netted into them. Pure: no addon, no I/O, so the live
// savings model (report/model.ts), the scan's prediction (scan/scan.ts) and the bench share it.

/** The parts of what KSM gives back, in pages. */
export interface SavedPages {
  /** Page mappings served by a KSM page instead of a page of their own: pages_sharing. */
  ksmPages: number;
  /** Pages KSM mapped to the kernel's zero page (use_zero_pages=1): ksm_zero_pages. */
  ksmZeroPages: number;
  /**
   * Zero-filled subpages of transparent huge pages freed when ksmd split the huge page to merge a
   * neighbour: the split maps them to the shared zero page. KSM's counters do not see them.
   */
  thpSplitZeroPages: number;
}

/** Total pages given back: the sum of the three parts. */
export function totalSavedPages(s: SavedPages): number {
  return s.ksmPages + s.ksmZeroPages + s.thpSplitZeroPages;
}

/** The parts of several rows added up (a table's total, or the tuner's VMs' share of the host's figure). */
export function sumSaved(rows: readonly SavedPages[]): SavedPages {
  const sum: SavedPages = { ksmPages: 0, ksmZeroPages: 0, thpSplitZeroPages: 0 };
  for (const r of rows) {
    sum.ksmPages += r.ksmPages;
    sum.ksmZeroPages += r.ksmZeroPages;
    sum.thpSplitZeroPages += r.thpSplitZeroPages;
  }
  return sum;
}

/**
 * Splits `total` whole units among rows in proportion to `weights`, so that the parts are whole and
 * sum to `total` exactly (largest remainder; ties go to the earlier row). All-zero weights give zeros
 * (and then the parts do not sum to a non-zero total: the caller says why).
 */
export function apportion(total: number, weights: readonly number[]): number[] {
  const sum = weights.reduce((a, w) => a + Math.max(0, w), 0);
  if (!(sum > 0) || !(total > 0)) return weights.map(() => 0);
  const exact = weights.map((w) => (Math.max(0, w) * total) / sum);
  const parts = exact.map(Math.floor);
  let left = total - parts.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => [e - Math.floor(e), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (let k = 0; left > 0 && k < order.length; k++, left--) parts[order[k][1]]++;
  return parts;
}

/**
 * Each process's share of pages_sharing. A KSM page mapped k times saves k − 1 pages; like PSS, each
 * mapping is credited (k − 1)/k of a page. `sharingWeights` are per process: either the exact
 * Σ (k − 1)/k over its KSM mappings (root: pagemap + kpagecount), or its ksm_merging_pages, which
 * credits every mapping the host's mean (k − 1)/k = pages_sharing / (pages_shared + pages_sharing) —
 * exact when every KSM page has the same number of sharers, as with N identical guests. Either way the
 * shares are whole pages that sum to `pagesSharing` exactly.
 */
export function sharingShares(pagesSharing: number, sharingWeights: readonly number[]): number[] {
  return apportion(pagesSharing, sharingWeights);
}
