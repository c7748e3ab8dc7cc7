// What KSM saves in the processes started or registered through pagefuse (the registry), and on which
// NUMA node their merged pages sit. It joins three sources (the registry, /proc/<pid>/ksm_stat, page
// placement), so it lives with the savings reports rather than in any one of them.
import { readComm } from '../host/procfs.js';
import { processKsm, type ProcessKsm } from '../ksm/process.js';
import { processMergingByNode, type NodeMergingPages } from '../numa/ksm-nodes.js';
import { Registry } from '../safety/registry.js';
import type { PagefuseError } from '../errors.js';
import { invalidArgType, throwIfAborted } from '../errors.js';

export interface RegisteredSavingsOptions {
  /** Root of procfs (default '/proc'). */
  procRoot?: string;
  /** Root of sysfs holding devices/system/{node,memory} (default '/sys'). */
  sysfsRoot?: string;
  /** The registry to read (default: the host's, PAGEFUSE_STATE_DIR or its default directory). */
  registry?: Registry;
  /** Stops the reading (between processes and between chunks of their page tables) with an AbortError. */
  signal?: AbortSignal;
}

export interface RegisteredSavings {
  pid: number;
  /** The name given at registration, else the command name (/proc/<pid>/comm). */
  name: string;
  tenant: string | null;
  /** Whether pagefuse gave the process KSM content merging (the registry's flag). */
  merge: boolean;
  /** How it was registered: 'exec', 'spawn', 'register'. */
  via: string;
  /** Its /proc/<pid>/ksm_stat counters; null when this user may not read them (see `ksmUnavailable`). */
  ksm: ProcessKsm | null;
  ksmUnavailable: string | null;
  /** Its merged pages per NUMA node (every node of the host, ascending); null when unknown (see `nodesUnavailable`). */
  nodes: NodeMergingPages[] | null;
  nodesUnavailable: string | null;
}

function reason(err: unknown): string {
  return (err as Error).message;
}

function gone(err: unknown): boolean {
  return (err as PagefuseError).code === 'ESRCH';
}

/**
 * Every live registered process with its KSM counters and its merged pages per node. Without root the
 * per-node placement is null with the reason (the kernel hides page frames), while the counters of
 * this user's own processes are still there. Processes that exit while being read are left out.
 * The counters and the placement are read one after the other: with ksmd running they may differ by
 * what it merged in between. Page tables are read in chunks between which the event loop runs.
 */
export async function registeredSavings(options: RegisteredSavingsOptions = {}): Promise<RegisteredSavings[]> {
  if (options === null || typeof options !== 'object') {
    throw invalidArgType(`registeredSavings: options must be an object`, options);
  }
  const { signal } = options;
  throwIfAborted(signal, 'registeredSavings');
  const procRoot = options.procRoot ?? '/proc';
  const registry = options.registry ?? new Registry({ procRoot });
  const nodeOptions = {
    procRoot,
    ...(options.sysfsRoot === undefined ? {} : { sysfsRoot: options.sysfsRoot }),
    ...(signal === undefined ? {} : { signal }),
  };
  const out: RegisteredSavings[] = [];
  for (const reg of registry.list()) {
    throwIfAborted(signal);
    let ksm: ProcessKsm | null = null;
    let ksmUnavailable: string | null = null;
    try {
      ksm = await processKsm(reg.pid, { procRoot });
    } catch (err) {
      if (gone(err)) continue;
      ksmUnavailable = reason(err);
    }
    let nodes: NodeMergingPages[] | null = null;
    let nodesUnavailable: string | null = null;
    try {
      nodes = (await processMergingByNode(reg.pid, nodeOptions)).nodes;
    } catch (err) {
      if (gone(err)) continue;
      if ((err as { code?: string }).code === 'ABORT_ERR') throw err;
      nodesUnavailable = reason(err);
    }
    const name = reg.name ?? (await readComm(procRoot, reg.pid));
    if (name === undefined) continue; // exited meanwhile
    out.push({ pid: reg.pid, name, tenant: reg.tenant ?? null, merge: reg.merge, via: reg.via, ksm, ksmUnavailable, nodes, nodesUnavailable });
  }
  return out;
}
