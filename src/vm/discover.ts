// Finding VMM processes in /proc: which VMM, the VM's name, its memory and its KSM state.
import { classifyVmm, configuredMemory, vmName, type Vmm } from './identify.js';
import {
  DEFAULT_PROC_ROOT,
  listPids,
  parseKeyValues,
  parseStat,
  readProcLink,
  readProcText,
  splitCmdline,
  USER_HZ,
} from '../host/procfs.js';
import { parseKsmStat, type KsmStatFields } from '../ksm/process.js';
import { invalidNumber } from '../errors.js';

export interface VmInfo {
  pid: number;
  /** The VMM found, or 'registered' for a process registered through the API that is none of them. */
  vmm: Vmm | 'registered';
  name: string;
  /** Clock ticks after boot when the process started (with pid, it names the process). */
  startTime: number;
  /** Resident memory (VmRSS): counts merged pages once per process, so it never falls when pages merge. */
  rssBytes: number;
  /** Guest RAM the command line asks for, when it says. */
  memoryBytes?: number;
  /** /proc/<pid>/ksm_stat, or null where the kernel has none. */
  ksm: KsmStatFields | null;
}

export interface DiscoverOptions {
  procRoot?: string;
  /** Pids registered through the API: reported even when they are no VMM. */
  pids?: Iterable<number>;
  /** Processes registered with a name (spawnMerged({ name }), register(pid, { name })): reported under it. */
  registered?: Iterable<{ pid: number; name?: string | undefined }>;
}

interface Identity {
  vmm: Vmm | undefined;
  argv: string[];
  comm: string;
  startTime: number;
}

async function identify(procRoot: string, pid: number): Promise<Identity | undefined> {
  const [statText, cmdline, exe] = await Promise.all([
    readProcText(procRoot, pid, 'stat'),
    readProcText(procRoot, pid, 'cmdline'),
    readProcLink(procRoot, pid, 'exe'),
  ]);
  const stat = statText === undefined ? undefined : parseStat(statText);
  if (stat === undefined || cmdline === undefined) return undefined;
  const argv = splitCmdline(cmdline);
  return { vmm: classifyVmm(argv, exe), argv, comm: stat.comm, startTime: stat.startTime };
}

/** registered: undefined when not registered, else the name it was registered under (null: none). */
async function describe(procRoot: string, pid: number, id: Identity, registered: string | null | undefined): Promise<VmInfo | undefined> {
  const vmm = id.vmm ?? (registered !== undefined ? 'registered' : undefined);
  if (vmm === undefined) return undefined;
  const [status, ksmStat] = await Promise.all([
    readProcText(procRoot, pid, 'status'),
    readProcText(procRoot, pid, 'ksm_stat'),
  ]);
  if (status === undefined) return undefined; // exited meanwhile
  const info: VmInfo = {
    pid,
    vmm,
    name: registered ?? (id.vmm === undefined ? id.comm : vmName(id.vmm, id.argv, pid)),
    startTime: id.startTime,
    rssBytes: (parseKeyValues(status).VmRSS ?? 0) * 1024,
    ksm: ksmStat === undefined ? null : parseKsmStat(ksmStat),
  };
  const memory = id.vmm === undefined ? undefined : configuredMemory(id.vmm, id.argv);
  if (memory !== undefined) info.memoryBytes = memory;
  return info;
}

/** One look at /proc: every VMM process plus the registered pids that are alive, by pid. */
export async function discoverVms(options: DiscoverOptions = {}): Promise<VmInfo[]> {
  return new VmWatcher(options).poll().then((r) => r.vms);
}

/** How long after it started a process that is no VMM is looked at again: libvirt forks, then execs qemu. */
const RECHECK_MS = 5_000;

interface Seen {
  id: Identity | undefined;
  firstSeen: number;
}

export interface VmChanges {
  vms: VmInfo[];
  added: VmInfo[];
  removed: number[];
}

/**
 * Discovery that polls cheaply: one readdir of /proc per poll, and the argv of a process is read only
 * while it is new, so polling every second costs little even with thousands of processes.
 */
export class VmWatcher {
  readonly procRoot: string;
  /** Registered pids, with the name they were registered under (null: none). */
  private readonly registered = new Map<number, string | null>();
  private readonly seen = new Map<number, Seen>();
  private current = new Map<number, VmInfo>();

  constructor(options: DiscoverOptions = {}) {
    this.procRoot = options.procRoot ?? DEFAULT_PROC_ROOT;
    for (const pid of options.pids ?? []) this.register(pid);
    for (const r of options.registered ?? []) this.register(r.pid, r.name);
  }

  register(pid: number, name?: string): void {
    if (!Number.isInteger(pid) || pid <= 0) throw invalidNumber(`register: pid must be a positive whole number`, pid);
    this.registered.set(pid, name ?? this.registered.get(pid) ?? null);
  }

  unregister(pid: number): void {
    this.registered.delete(pid);
  }

  /** Replaces the registered pids with these (the registry's list). */
  setRegistered(registrations: Iterable<{ pid: number; name?: string | undefined }>): void {
    this.registered.clear();
    for (const r of registrations) this.registered.set(r.pid, r.name ?? null);
  }

  get vms(): VmInfo[] {
    return [...this.current.values()];
  }

  async poll(now = Date.now()): Promise<VmChanges> {
    const [pids, uptime] = await Promise.all([listPids(this.procRoot), readProcText(this.procRoot, 'uptime')]);
    const uptimeTicks = uptime === undefined ? undefined : Number.parseFloat(uptime) * USER_HZ;
    // Young by its start time when /proc/uptime says, else by when this watcher first saw it.
    const young = (seen: Seen) =>
      uptimeTicks !== undefined && seen.id !== undefined
        ? ((uptimeTicks - seen.id.startTime) / USER_HZ) * 1000 < RECHECK_MS
        : now - seen.firstSeen < RECHECK_MS;
    const alive = new Set(pids);
    for (const pid of this.seen.keys()) if (!alive.has(pid)) this.seen.delete(pid);
    for (const pid of this.registered.keys()) if (!alive.has(pid)) this.registered.delete(pid);

    const next = new Map<number, VmInfo>();
    await Promise.all(
      pids.map(async (pid) => {
        let seen = this.seen.get(pid);
        if (seen === undefined || (seen.id?.vmm === undefined && young(seen))) {
          seen = { id: await identify(this.procRoot, pid), firstSeen: seen?.firstSeen ?? now };
          this.seen.set(pid, seen);
        }
        const id = seen.id;
        if (id === undefined) return;
        if (id.vmm === undefined && !this.registered.has(pid)) return;
        const info = await describe(this.procRoot, pid, id, this.registered.get(pid));
        if (info !== undefined) next.set(pid, info);
      }),
    );
    const sorted = new Map([...next.entries()].sort((a, b) => a[0] - b[0]));
    const added = [...sorted.values()].filter((vm) => this.current.get(vm.pid)?.startTime !== vm.startTime);
    const removed = [...this.current.values()]
      .filter((vm) => sorted.get(vm.pid)?.startTime !== vm.startTime)
      .map((vm) => vm.pid);
    this.current = sorted;
    return { vms: this.vms, added, removed };
  }
}
