// The scan engine as the scheduler calls it: one hashing thread unless the round asks for more (the
// scheduler budgets scan wall time × threads as CPU time), and the previous result passed on so pages
// that changed in between are counted as volatile and left out, as ksmd leaves them. A VM that exits before or while it is read
// is a target without pages marked vanished (the VM watcher reports it gone), not a failed scan. No
// sharing matrix: the scheduler reads totals and each VM's merging pages, which a scan without the
// per-content bitmask of targets gives the same, and the bitmask is 8 bytes per index slot per 64 VMs.
// Each process's pages mapped to the zero page, which the engine skips, go to the scheduler with those of
// them KSM mapped there (counted in the estimate already): the rest, beyond the VM's count at its first
// scan, are zero subpages ksmd freed by splitting their huge pages, saved too.
import { scan, type TotalsScanResult } from '../scan/scan.js';
import type { ScanFn, ScanOutcome } from './schedule.js';

/** A scan function with its own memory of the previous result (one per Tuner). */
export function createTunerScan(): ScanFn {
  let previous: TotalsScanResult | undefined;
  return async (targets, options): Promise<ScanOutcome> => {
    const result = await scan(targets, {
      mode: 'exact',
      threads: options.threads ?? 1,
      sharing: false,
      skipMissing: true,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(previous === undefined ? {} : { previous }),
    });
    previous = result;
    return {
      pages: result.pages,
      estimatedSavedBytes: result.estimatedSavedBytes,
      targets: result.targets.map((t) => ({
        ...(t.pid === undefined ? {} : { pid: t.pid }),
        ...(t.vanished ? { vanished: true } : {}),
        pages: t.pages,
        // What ksm_stat will count: merging pages (zero pages merged as one KSM page included) plus
        // the zero pages KSM maps to the zero page itself (use_zero_pages=1).
        mergingPages: t.mergingPages + t.estimate.ksmZeroPages,
        volatilePages: t.volatilePages,
        ...(t.pid === undefined ? {} : { zeroMappedPages: t.zeroMappedPages, ksmZeroMappedPages: t.ksmZeroMappedPages }),
        ...(result.thpKnown ? { thpSlowSplit: { hugePages: t.thpSlowSplitPages, zeroPages: t.thpSlowSplitZeroPages } } : {}),
      })),
    };
  };
}
