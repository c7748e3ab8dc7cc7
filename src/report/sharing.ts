// The sharing matrix for the heat map: one duplicate scan (pagefuse's scan engine, fast mode) over the
// VMs, or over the processes with KSM state when fewer than two VMs run.
import { scan } from '../scan/scan.js';
import { PAGE_SIZE } from '../host/page-size.js';
import { thpSplitOf, type ProcessSample, type SharingMatrix, type WouldSave } from './model.js';

/** The matrix, or why there is none. Reading other processes' memory needs root (process_vm_readv). */
export async function processSharing(
  processes: readonly ProcessSample[],
  maxTargets = 12,
): Promise<(SharingMatrix & { estimate: WouldSave }) | { why: string }> {
  const vms = processes.filter((p) => p.vm === true);
  // Mergeable processes count even before ksmd merged anything: the scan says what it would save.
  const chosen = (vms.length >= 2 ? vms : processes.filter((p) => p.vm === true || p.registered === true || p.rmapItems > 0)).slice(0, maxTargets);
  if (chosen.length < 2) return { why: 'fewer than two processes with KSM state to compare' };
  try {
    const r = await scan(
      chosen.map((p) => ({ pid: p.pid, name: p.name })),
      { mode: 'fast' },
    );
    return {
      labels: r.targets.map((t, i) => t.name ?? chosen[i].name),
      pages: r.sharing,
      estimate: {
        at: Date.now(),
        bytes: r.estimatedSavedBytes + chosen.reduce((sum, p) => sum + (thpSplitOf(p) ?? 0), 0) * PAGE_SIZE,
        slowSplit: r.thpKnown ? { hugePages: r.thpSlowSplitPages, bytes: r.thpSlowSplitZeroPages * PAGE_SIZE } : null,
        source: 'scan',
      },
    };
  } catch (err) {
    return { why: `the duplicate scan failed: ${(err as Error).message.split('\n')[0]}` };
  }
}
