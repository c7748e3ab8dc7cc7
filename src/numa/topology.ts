// NUMA topology: nodes, their CPUs and memory, and the distances between them.
import { native } from '../native.js';
import { invalidArgType, invalidNumber, outOfRange } from '../errors.js';

export interface NumaNode {
  id: number;
  cpus: number[];
  /** Bytes. */
  memTotal: number;
  /** Bytes. */
  memFree: number;
}

export interface NumaTopology {
  /** Ascending id. */
  nodes: NumaNode[];
  /** distances[i][j]: the kernel's relative distance from nodes[i] to nodes[j] (10 = local). */
  distances: number[][];
}

export interface TopologyOptions {
  /** Root of a sysfs tree (default '/sys'): read it instead of asking libnuma about this host. */
  sysfsRoot?: string;
}

/** The host's NUMA topology, through libnuma when it loads, else from /sys/devices/system/node. */
export function numaTopology(options: TopologyOptions = {}): NumaTopology {
  if (options === null || typeof options !== 'object') {
    throw invalidArgType(`numaTopology: options must be an object`, options);
  }
  const { sysfsRoot } = options;
  if (sysfsRoot !== undefined && (typeof sysfsRoot !== 'string' || sysfsRoot === '')) {
    throw invalidArgType(`numaTopology: sysfsRoot must be a non-empty string`, sysfsRoot);
  }
  return native.numaTopology(sysfsRoot);
}

/** Which path the addon uses: 'libnuma', or 'syscalls' when libnuma is missing or PAGEFUSE_NO_LIBNUMA is set. */
export function numaBackend(): 'libnuma' | 'syscalls' {
  return native.numaBackend();
}

export interface NodeNeeds {
  memory?: boolean;
  cpus?: boolean;
}

/** Why this host cannot use `nodes` ("node 3 does not exist: this host has node 0"), or undefined. */
export function nodesProblem(nodes: readonly number[], needs: NodeNeeds = {}): string | undefined {
  const why = native.numaCheckNodes([...nodes], needs.memory ?? false, needs.cpus ?? false);
  return why === '' ? undefined : why;
}

/** Throws a RangeError prefixed with `what` when `nodes` are not usable on this host. */
export function assertNodes(what: string, nodes: readonly number[], needs: NodeNeeds = {}): void {
  for (const n of nodes) {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 1023) {
      throw invalidNumber(`${what}: node ids are whole numbers from 0 to 1023`, n);
    }
  }
  const why = nodesProblem(nodes, needs);
  if (why !== undefined) throw outOfRange(`${what}: ${why}`);
}

/** "0-3,8,10-11", the kernel's and numactl's spelling of a list of ids. */
export function formatIdList(ids: readonly number[]): string {
  const sorted = [...new Set(ids)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(j > i ? `${sorted[i]}-${sorted[j]}` : String(sorted[i]));
    i = j + 1;
  }
  return parts.join(',');
}
