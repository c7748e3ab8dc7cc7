// ksmtuned's adjust(), step for step (Red Hat's script, also Debian's), with two fixes: committed memory
// counts every VMM discovery finds (not only processes named qemu), and sums are exact integers on any host
// (the script's awk printed 3e+09 past 2 TiB and killed its loop).
import type { KsmtunedSettings } from '../config.js';
import type { Observation, PolicyFn } from '../types.js';
import { formatBytes } from '../../units.js';

/** KiB (the script's unit, /proc/meminfo's) in human units. */
const kib = (n: number): string => formatBytes(n * 1024);

export interface KsmtunedState {
  /** Computed at the first step and never again, as the script does at start-up (a retune keeps them). */
  total?: number;
  sleep?: number;
  thres?: number;
  npages: number;
}

export function initialKsmtunedState(): KsmtunedState {
  return { npages: 0 };
}

function clampNpages(npages: number, s: KsmtunedSettings): number {
  if (npages < s.KSM_NPAGES_MIN) return s.KSM_NPAGES_MIN;
  if (npages > s.KSM_NPAGES_MAX) return s.KSM_NPAGES_MAX;
  return npages;
}

/** KiB of memory committed to VMs: the RSS of every VMM process found (ps -o rsz, in KiB). */
export function committedKiB(observation: Observation): number {
  let sum = 0;
  for (const vm of observation.vms) sum += Math.floor(vm.rssBytes / 1024);
  return sum;
}

/** MemFree + Buffers + Cached, the script's free_memory. */
export function freeKiB(observation: Observation): number {
  const m = observation.memory;
  return (m.memFree + m.buffers + m.cached) / 1024;
}

export const ksmtuned: PolicyFn<KsmtunedState, KsmtunedSettings> = (observation, state, s) => {
  const reasons: string[] = [];
  let { total, sleep, thres } = state;
  if (total === undefined || sleep === undefined || thres === undefined) {
    total = observation.memory.memTotal / 1024; // the script's KiB
    // sleep=$[KSM_SLEEP_MSEC * 16 * 1024 * 1024 / total]; [ $sleep -le 10 ] && sleep=10
    sleep = Math.floor((s.KSM_SLEEP_MSEC * 16 * 1024 * 1024) / total);
    if (sleep <= 10) sleep = 10;
    thres = Math.floor((total * s.KSM_THRES_COEF) / 100);
    if (s.KSM_THRES_CONST > thres) thres = s.KSM_THRES_CONST;
    reasons.push(`total ${kib(total)}, sleep ${sleep} ms, threshold ${kib(thres)}`);
  }
  const free = freeKiB(observation);
  const committed = committedKiB(observation);
  reasons.push(`committed ${kib(committed)}, free ${kib(free)} (${observation.vms.length} VMM processes)`);
  const fixed = { total, sleep, thres };
  if (committed + thres < total && free > thres) {
    reasons.push(`committed + threshold ${kib(committed + thres)} < total ${kib(total)} and free ${kib(free)} > threshold ${kib(thres)}: stop ksm`);
    return { decision: { knobs: { run: 0 }, rescan: [] }, reasons, nextState: { ...fixed, npages: state.npages } };
  }
  reasons.push(
    committed + thres >= total
      ? `committed + threshold ${kib(committed + thres)} ≥ total ${kib(total)}: start ksm`
      : `free ${kib(free)} ≤ threshold ${kib(thres)}: start ksm`,
  );
  let npages: number;
  if (free < thres) {
    npages = clampNpages(state.npages + s.KSM_NPAGES_BOOST, s);
    reasons.push(`free ${kib(free)} < threshold ${kib(thres)}: boost pages_to_scan by ${s.KSM_NPAGES_BOOST}`);
  } else {
    npages = clampNpages(state.npages + s.KSM_NPAGES_DECAY, s);
    reasons.push(`free ${kib(free)} ≥ threshold ${kib(thres)}: decay pages_to_scan by ${-s.KSM_NPAGES_DECAY}`);
  }
  reasons.push(`ksmd: pages_to_scan ${npages}, sleep ${sleep} ms`);
  return {
    decision: { knobs: { pages_to_scan: npages, sleep_millisecs: sleep, run: 1 }, rescan: [] },
    reasons,
    nextState: { ...fixed, npages },
  };
};
