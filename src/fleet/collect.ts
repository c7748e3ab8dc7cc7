// Sketching this host: every VM found in /proc (plus registered processes) is read through the
// addon, which hands back only keyed, sampled values.
import { hostname } from 'node:os';
import { readFile } from 'node:fs/promises';
import { native } from '../native.js';
import { discoverVms } from '../vm/discover.js';
import { isSystemError } from '../errors.js';
import { SKETCH_FORMAT, sketchName, type HostSketch, type VmSketch } from './sketch.js';
import type { FleetKey } from './key.js';

/**
 * M when none is given: 1 in 256 pages is sampled, about 1,024 values (8 KiB) per GiB of guest
 * memory; docs/fleet.md shows the estimate error against M.
 */
export const DEFAULT_MODULUS = 256;

export interface SketchHostOptions {
  key: FleetKey;
  modulus?: number;
  /** The name planners know this host by (Kubernetes node name); default: the hostname. */
  host?: string;
  /** Memory offered to VMs; default: MemTotal. */
  capacityBytes?: number;
  /** Processes registered through pagefuse (exec, spawnMerged, register), by pid, with their names. */
  registered?: Map<number, string>;
  /** Only the memory marked mergeable (what ksmd would see). Default true. */
  mergeableOnly?: boolean;
  procRoot?: string;
}

export function checkModulus(m: number): number {
  if (!Number.isInteger(m) || m < 1 || m > 2 ** 30 || (m & (m - 1)) !== 0) {
    throw new RangeError(`the sketch modulus must be a power of two from 1 to 2^30, got ${m}`);
  }
  return m;
}

async function memTotal(procRoot: string): Promise<number> {
  const text = await readFile(`${procRoot}/meminfo`, 'utf8');
  const m = /^MemTotal:\s+(\d+) kB/m.exec(text);
  return m === null ? 0 : Number(m[1]) * 1024;
}

/** One sketch of every VM on this host. VMs that exit while being read are left out. */
export async function sketchHost(options: SketchHostOptions): Promise<HostSketch> {
  const procRoot = options.procRoot ?? '/proc';
  const modulus = checkModulus(options.modulus ?? DEFAULT_MODULUS);
  const registered = options.registered ?? new Map<number, string>();
  const takenAt = new Date().toISOString();
  const vms = await discoverVms({ procRoot, pids: registered.keys() });
  const out: VmSketch[] = [];
  for (const vm of vms.sort((a, b) => a.pid - b.pid)) {
    let s;
    try {
      s = await native.sketchProcess(vm.pid, options.key.key, modulus, options.mergeableOnly ?? true, procRoot);
    } catch (err) {
      if (isSystemError(err, 'ESRCH')) continue;
      throw err;
    }
    const pageSize = native.pageSize;
    out.push({
      // Names come from a VMM's argv or a registration: kept within what a planner's decoder takes.
      name: sketchName(registered.get(vm.pid) ?? vm.name, `pid-${vm.pid}`),
      pid: vm.pid,
      vmm: sketchName(vm.vmm, 'unknown'),
      memoryBytes: vm.memoryBytes ?? s.pages * pageSize,
      pages: s.pages,
      zeroPages: s.zeroPages,
      thpPages: s.flagsKnown ? s.thpPages : null,
      takenAt: new Date().toISOString(),
      sample: { values: s.values, counts: s.counts },
    });
  }
  // Two VMs of one name (a pid reused, a name given twice) would be one VM to a planner: keep them apart.
  const seen = new Map<string, number>();
  for (const v of out) {
    const n = (seen.get(v.name) ?? 0) + 1;
    seen.set(v.name, n);
    if (n > 1) v.name = `${v.name}#${v.pid}`;
  }
  return {
    format: SKETCH_FORMAT,
    keyId: options.key.id,
    modulus,
    pageSize: native.pageSize,
    host: options.host ?? hostname(),
    takenAt,
    capacityBytes: options.capacityBytes ?? (await memTotal(procRoot)),
    vms: out,
  };
}
