// Finding VMM processes in /proc: which VMM, the VM's name, its memory and its KSM state.
import { classifyVmm, configuredMemory, vmName, type Vmm } from './identify.js';
import {
  DEFAULT_PROC_ROOT,
  listPidEntriesSync,
  keyValue,
  parseStat,
  readProcLink,
  readProcStatSync,
  readProcText,
  readProcTextSync,
  splitCmdline,
  USER_HZ,
  type ProcStat,
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
  /**
   * Page faults it has taken (minflt + majflt, /proc/<pid>/stat): memory newly touched, swapped in, or a
   * merged page written (copy on write) since the last look. Absent where the stat lacks them.
   */
  faults?: number;
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
  /** Guest RAM its command line asks for: parsed once, as the argv of a process that does not exec again stays. */
  memoryBytes: number | undefined;
}

async function identify(procRoot: string, pid: number): Promise<Identity | undefined> {
  // The stat (its comm) before the argv: a process that execs in between then has the old comm and the
  // new argv, and is looked at again as its comm changes. Read the other way round, a comm from after the
  // exec beside an argv from before it would never change again, and the VMM it became would go unseen.
  const statText = await readProcText(procRoot, pid, 'stat');
  const [cmdline, exe] = await Promise.all([readProcText(procRoot, pid, 'cmdline'), readProcLink(procRoot, pid, 'exe')]);
  const stat = statText === undefined ? undefined : parseStat(statText);
  // An empty argv is one not set up yet: exec sets the new comm before the new argv's place in memory, so
  // in between a process reads as its new comm with no arguments. Unknown, it is looked at again while
  // young; taken for a non-VM, it would never be (its comm does not change again) and the VM goes unseen
  // (the likely cause of 2 VMs of 599 missed by a soak at load 11). Kernel threads and zombies have no argv
  // either: they cost a recheck while young.
  if (stat === undefined || cmdline === undefined || cmdline === '') return undefined;
  const argv = splitCmdline(cmdline);
  const vmm = classifyVmm(argv, exe);
  return { vmm, argv, comm: stat.comm, startTime: stat.startTime, memoryBytes: vmm === undefined ? undefined : configuredMemory(vmm, argv) };
}

function nameOf(pid: number, id: Identity, registered: string | null | undefined): string {
  return registered ?? (id.vmm === undefined ? id.comm : vmName(id.vmm, id.argv, pid));
}

/** registered: undefined when not registered, else the name it was registered under (null: none). */
async function describe(procRoot: string, pid: number, id: Identity, registered: string | null | undefined): Promise<VmInfo | undefined> {
  const vmm = id.vmm ?? (registered !== undefined ? 'registered' : undefined);
  if (vmm === undefined) return undefined;
  // Three small files that take no lock of the VM's memory map: read synchronously, as a promise read is
  // four thread-pool round trips (a decision beside 40 VMs made 480 of them).
  const status = readProcTextSync(procRoot, pid, 'status');
  const ksmStat = readProcTextSync(procRoot, pid, 'ksm_stat');
  const stat = readProcStatSync(procRoot, pid);
  if (status === undefined) return undefined; // exited meanwhile
  const info: VmInfo = {
    pid,
    vmm,
    name: nameOf(pid, id, registered),
    startTime: id.startTime,
    rssBytes: (keyValue(status, 'VmRSS') ?? 0) * 1024,
    ksm: ksmStat === undefined ? null : parseKsmStat(ksmStat),
  };
  const faults = stat === undefined ? NaN : stat.minflt + stat.majflt;
  if (Number.isSafeInteger(faults)) info.faults = faults;
  if (id.memoryBytes !== undefined) info.memoryBytes = id.memoryBytes;
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
  /** Its /proc directory's inode when last looked at: a new one means the pid may name a new process. */
  ino: number;
  firstSeen: number;
  /** The name last given to it, and the registered name it came from (argv is parsed once, not per poll). */
  named?: { registered: string | null | undefined; name: string };
}

export interface PollOptions {
  /**
   * Read again the figures (RSS, faults, ksm_stat) of the VMs already known (default true). With false a
   * poll reads /proc's directory and only what is new in it: VMs that stay keep their last figures.
   */
  figures?: boolean;
}

export interface VmChanges {
  vms: VmInfo[];
  added: VmInfo[];
  removed: number[];
  /** The removed VMs as last seen (their figures from the last look that read them). */
  gone: VmInfo[];
}

/**
 * Discovery that polls cheaply: one readdir of /proc per poll; the argv of a process is read when it is
 * new, and again while it is young only if its comm changed (it exec'd); with `figures: false` a VM
 * already known costs nothing more, so polling twice a second costs little even with thousands of processes.
 */
export class VmWatcher {
  readonly procRoot: string;
  /** Registered pids, with the name they were registered under (null: none). */
  private readonly registered = new Map<number, string | null>();
  private readonly seen = new Map<number, Seen>();
  private current = new Map<number, VmInfo>();
  /** /proc's pids and inodes at the last poll that read it. */
  private lastEntries: Float64Array | undefined;
  /** Date.now() until which a young process that is no VMM may still exec one: polls look at it till then. */
  private recheckUntil = 0;
  /** The registered pids or names changed since the last full poll. */
  private registeredChanged = true;

  constructor(options: DiscoverOptions = {}) {
    this.procRoot = options.procRoot ?? DEFAULT_PROC_ROOT;
    for (const pid of options.pids ?? []) this.register(pid);
    for (const r of options.registered ?? []) this.register(r.pid, r.name);
  }

  register(pid: number, name?: string): void {
    if (!Number.isInteger(pid) || pid <= 0) throw invalidNumber(`register: pid must be a positive whole number`, pid);
    this.registered.set(pid, name ?? this.registered.get(pid) ?? null);
    this.registeredChanged = true;
  }

  unregister(pid: number): void {
    this.registered.delete(pid);
    this.registeredChanged = true;
  }

  /** Replaces the registered pids with these (the registry's list). */
  setRegistered(registrations: Iterable<{ pid: number; name?: string | undefined }>): void {
    this.registered.clear();
    for (const r of registrations) this.registered.set(r.pid, r.name ?? null);
    this.registeredChanged = true;
  }

  get vms(): VmInfo[] {
    return [...this.current.values()];
  }

  async poll(now = Date.now(), options: PollOptions = {}): Promise<VmChanges> {
    const figures = options.figures !== false;
    // The directory and the small files read at every poll are read synchronously: each promise read is
    // four thread-pool round trips, which is most of what an idle watch would cost. When /proc holds the
    // same pids under the same inodes as at the last look, no young process waits for its exec and no
    // registration changed, nothing can have come or gone: an idle poll ends there.
    const quiet = !figures && !this.registeredChanged && now >= this.recheckUntil;
    const entries = listPidEntriesSync(this.procRoot, quiet ? this.lastEntries : undefined);
    if (entries === null) return { vms: this.vms, added: [], removed: [], gone: [] };
    this.lastEntries = entries;
    this.registeredChanged = false;
    const pids: number[] = new Array(entries.length / 2);
    for (let i = 0; i < pids.length; i++) pids[i] = entries[2 * i];
    const uptime = readProcTextSync(this.procRoot, 'uptime');
    const uptimeTicks = uptime === undefined ? undefined : Number.parseFloat(uptime) * USER_HZ;
    // When (Date.now()) a process stops being young: by its start time when /proc/uptime says, else by
    // when this watcher first saw it.
    const youngUntil = (seen: Seen) =>
      uptimeTicks !== undefined && seen.id !== undefined
        ? now + RECHECK_MS - ((uptimeTicks - seen.id.startTime) / USER_HZ) * 1000
        : seen.firstSeen + RECHECK_MS;
    const young = (seen: Seen) => now < youngUntil(seen);
    const alive = new Set(pids);
    for (const pid of this.seen.keys()) if (!alive.has(pid)) this.seen.delete(pid);
    for (const pid of this.registered.keys()) if (!alive.has(pid)) this.registered.delete(pid);

    // What each pid is, in pid order (the directory's): a VM already known costs nothing more here, and
    // only what is new (or, with figures, every VM) takes a promise, so an idle poll allocates little.
    const found: (VmInfo | undefined)[] = new Array(pids.length);
    const reads: Promise<void>[] = [];
    const look = async (i: number, pid: number, ino: number, seen: Seen | undefined): Promise<void> => {
      if (seen === undefined) {
        seen = { id: await identify(this.procRoot, pid), ino, firstSeen: this.seen.get(pid)?.firstSeen ?? now };
        this.seen.set(pid, seen);
      }
      const id = seen.id;
      if (id === undefined || (id.vmm === undefined && !this.registered.has(pid))) return;
      found[i] = await describe(this.procRoot, pid, id, this.registered.get(pid));
    };
    let recheckUntil = 0;
    let newcomers = false;
    for (let i = 0; i < pids.length; i++) {
      const pid = pids[i];
      const ino = entries[2 * i + 1];
      let seen = this.seen.get(pid);
      let stat: ProcStat | undefined; // read once in this look, by whichever check below needs it first
      if (seen !== undefined && seen.ino !== ino) {
        // Its directory was made anew: the pid names a new process (the one seen exited and the pid came
        // round again between two looks), or the kernel dropped the cached entry of the same one.
        stat = readProcStatSync(this.procRoot, pid);
        if (stat === undefined) continue; // exited meanwhile
        if (seen.id !== undefined && stat.startTime === seen.id.startTime) {
          seen.ino = ino;
        } else {
          this.seen.delete(pid);
          seen = undefined;
        }
      }
      if (seen !== undefined && seen.id?.vmm === undefined && young(seen)) {
        recheckUntil = Math.max(recheckUntil, youngUntil(seen));
        // A young process that is no VMM may be about to exec one (libvirt forks, then execs qemu):
        // its stat is read again, and its argv only when its comm changed, as exec changes it.
        stat ??= readProcStatSync(this.procRoot, pid);
        if (stat === undefined) continue; // exited meanwhile
        if (seen.id === undefined || stat.comm !== seen.id.comm || stat.startTime !== seen.id.startTime) seen = undefined;
      }
      if (seen !== undefined) {
        const id = seen.id;
        if (id === undefined || (id.vmm === undefined && !this.registered.has(pid))) continue;
        const known = this.current.get(pid);
        if (!figures && known !== undefined && known.startTime === id.startTime) {
          const registered = this.registered.get(pid);
          if (seen.named?.registered !== registered || seen.named === undefined) seen.named = { registered, name: nameOf(pid, id, registered) };
          const name = seen.named.name;
          found[i] = known.name === name ? known : { ...known, name };
          continue;
        }
      }
      if (seen === undefined) newcomers = true;
      reads.push(look(i, pid, ino, seen));
    }
    if (reads.length > 0) await Promise.all(reads);
    // Processes identified now are young: whether they exec a VMM is looked at for RECHECK_MS at most.
    this.recheckUntil = newcomers ? Math.max(recheckUntil, now + RECHECK_MS) : recheckUntil;
    const next = new Map<number, VmInfo>();
    for (const info of found) if (info !== undefined) next.set(info.pid, info);
    const added: VmInfo[] = [];
    for (const vm of next.values()) if (this.current.get(vm.pid)?.startTime !== vm.startTime) added.push(vm);
    const removed: number[] = [];
    const gone: VmInfo[] = [];
    for (const vm of this.current.values()) {
      if (next.get(vm.pid)?.startTime === vm.startTime) continue;
      removed.push(vm.pid);
      gone.push(vm);
    }
    this.current = next;
    return { vms: this.vms, added, removed, gone };
  }
}
