// Reads a Snapshot of this host: KSM's sysfs counters, every process's ksm_stat, ksmd's CPU time, and the
// tuner's latest decision. Roots are options so tests can point at a fake sysfs/procfs.
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { KsmCounters, KsmSettings, NodeSample, ProcessSample, Snapshot } from './model.js';
import { readTunerState } from './tuner-state.js';
import { PAGE_SIZE } from '../region.js';

export interface SnapshotSource {
  read(): Promise<Snapshot>;
}

export interface HostSourceOptions {
  sysfsRoot?: string;
  procRoot?: string;
  pageSize?: number;
  /** Where the tuner daemon writes its latest decision; see tuner-state.ts. */
  tunerStatePath?: string;
  /** VM discovery: pid → guest name, for the processes that are VMs. */
  vms?: () => Promise<Map<number, string>>;
  /** KSM pages per NUMA node. */
  nodes?: () => Promise<NodeSample[]>;
}

const COUNTER_NAMES = new Set([
  'pages_shared',
  'pages_sharing',
  'pages_unshared',
  'pages_volatile',
  'full_scans',
  'stable_node_chains',
  'stable_node_dups',
  'ksm_zero_pages',
  'general_profit',
  'pages_scanned',
  'pages_skipped',
]);

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** A sysfs value: a number, or the selected word of a "[none] scan-time" list. */
function sysfsValue(text: string): number | string {
  const t = text.trim();
  const selected = /\[([^\]]+)\]/.exec(t);
  if (selected) return selected[1];
  const n = Number(t);
  return t !== '' && Number.isFinite(n) ? n : t;
}

/** Every file of the KSM sysfs directory, split into counters and knobs. */
export async function readKsmSysfs(root = '/sys/kernel/mm/ksm'): Promise<{ settings: KsmSettings; counters: KsmCounters }> {
  const names = await readdir(root);
  const counters: Record<string, number> = {};
  const settings: Record<string, number | string> = {};
  await Promise.all(
    names.map(async (name) => {
      const text = await readText(join(root, name));
      if (text === undefined) return;
      const value = sysfsValue(text);
      if (COUNTER_NAMES.has(name)) {
        if (typeof value === 'number') counters[name] = value;
      } else {
        settings[name] = value;
      }
    }),
  );
  for (const name of ['pages_shared', 'pages_sharing', 'pages_unshared', 'pages_volatile', 'full_scans']) {
    counters[name] ??= 0;
  }
  return { settings: settings as KsmSettings, counters: counters as unknown as KsmCounters };
}

/** Parses /proc/<pid>/ksm_stat ("key value" or "key: value" lines, which grew over kernel versions). */
export function parseKsmStat(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+):?\s+(\S+)/.exec(line.trim());
    if (m) out[m[1]] = m[2];
  }
  return out;
}

/** Every process whose ksm_stat shows KSM state (rmap items, merged or zero pages). */
export async function listKsmProcesses(procRoot = '/proc'): Promise<ProcessSample[]> {
  const pids = (await readdir(procRoot)).filter((n) => /^\d+$/.test(n));
  const out: ProcessSample[] = [];
  await Promise.all(
    pids.map(async (pidText) => {
      const stat = await readText(join(procRoot, pidText, 'ksm_stat'));
      if (stat === undefined) return;
      const f = parseKsmStat(stat);
      const rmapItems = Number(f.ksm_rmap_items ?? 0);
      const zeroPages = Number(f.ksm_zero_pages ?? 0);
      const mergingPages = Number(f.ksm_merging_pages ?? 0);
      if (rmapItems === 0 && zeroPages === 0 && mergingPages === 0) return;
      const comm = (await readText(join(procRoot, pidText, 'comm')))?.trim() ?? '';
      const p: ProcessSample = { pid: Number(pidText), name: comm, rmapItems, zeroPages, mergingPages };
      if (f.ksm_process_profit !== undefined) p.profitBytes = Number(f.ksm_process_profit);
      out.push(p);
    }),
  );
  return out.sort((a, b) => a.pid - b.pid);
}

/** ksmd's cumulative CPU time: schedstat's nanoseconds on CPU, else utime+stime from stat (USER_HZ 100). */
export class KsmdClock {
  private pid: string | undefined;

  constructor(private readonly procRoot = '/proc') {}

  private async find(): Promise<string | undefined> {
    for (const name of await readdir(this.procRoot)) {
      if (!/^\d+$/.test(name)) continue;
      if ((await readText(join(this.procRoot, name, 'comm')))?.trim() === 'ksmd') return name;
    }
    return undefined;
  }

  async cpuSeconds(): Promise<number | undefined> {
    for (let attempt = 0; attempt < 2; attempt++) {
      this.pid ??= await this.find();
      if (this.pid === undefined) return undefined;
      const schedstat = await readText(join(this.procRoot, this.pid, 'schedstat'));
      if (schedstat !== undefined) return Number(schedstat.split(' ')[0]) / 1e9;
      const stat = await readText(join(this.procRoot, this.pid, 'stat'));
      if (stat !== undefined) {
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return (Number(fields[11]) + Number(fields[12])) / 100;
      }
      this.pid = undefined; // ksmd's pid changed (module reload): look again once
    }
    return undefined;
  }
}

/** The live host: KSM sysfs, /proc, ksmd, VM names, NUMA nodes and the tuner's state file. */
export class HostSource implements SnapshotSource {
  private readonly clock: KsmdClock;

  constructor(private readonly options: HostSourceOptions = {}) {
    this.clock = new KsmdClock(options.procRoot);
  }

  async read(): Promise<Snapshot> {
    const o = this.options;
    const [ksm, processes, cpu, vms, nodes, tuner] = await Promise.all([
      readKsmSysfs(o.sysfsRoot),
      listKsmProcesses(o.procRoot),
      this.clock.cpuSeconds(),
      o.vms?.() ?? Promise.resolve(new Map<number, string>()),
      o.nodes?.(),
      readTunerState(o.tunerStatePath),
    ]);
    for (const p of processes) {
      const vm = vms.get(p.pid);
      if (vm !== undefined) {
        p.name = vm;
        p.vm = true;
      }
    }
    const snapshot: Snapshot = {
      at: Date.now(),
      pageSize: o.pageSize ?? PAGE_SIZE,
      settings: ksm.settings,
      counters: ksm.counters,
      processes,
    };
    if (cpu !== undefined) snapshot.ksmdCpuSeconds = cpu;
    if (nodes !== undefined) snapshot.nodes = nodes;
    if (tuner !== undefined) snapshot.tuner = tuner;
    return snapshot;
  }
}

/** This host, with VM names and NUMA nodes from their discovery modules. */
export function hostSource(options: HostSourceOptions = {}): HostSource {
  return new HostSource(options);
}
