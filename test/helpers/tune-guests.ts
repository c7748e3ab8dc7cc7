// Generated guests as the tuner sees VMs: src/workload's children started through a qemu-system-x86_64
// symlink with -name guest=… and -m (Workload.start's asQemu), so VM discovery and the daemon find them.
import { PAGE_SIZE } from '../../src/region.js';
import { Workload } from '../../src/workload/workload.js';

export interface GuestSizes {
  commonMiB: number;
  uniqueMiB: number;
  zeroMiB: number;
  /** Rewritten every 50 ms: never stays merged. */
  changingMiB: number;
}

export interface Guests {
  pids: number[];
  /** Pages KSM can save once everything stable is merged: (n−1)·common + (n·zero − 1). */
  achievablePages: number;
  stop(): Promise<void>;
}

export async function startGuests(n: number, sizes: GuestSizes, namePrefix = 'guest'): Promise<Guests> {
  const pages = (mib: number) => Math.round((mib * 1024 * 1024) / PAGE_SIZE);
  const w = await Workload.start({
    processes: n,
    imagePages: pages(sizes.commonMiB),
    zeroPages: pages(sizes.zeroMiB),
    uniquePages: pages(sizes.uniqueMiB),
    volatilePages: pages(sizes.changingMiB),
    rewriteIntervalMs: 50,
    seed: 1,
    asQemu: { namePrefix },
  });
  return { pids: w.pids, achievablePages: w.expected.achievablePages, stop: () => w.stop() };
}
