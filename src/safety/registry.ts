// Processes started or registered through pagefuse, with their tenant, kept host-wide in a state
// directory so the CLI, the daemon and embedding VM managers all see the same list.
import { EventEmitter } from 'node:events';
import { readdirSync, readFileSync, unlinkSync, watch } from 'node:fs';
import { checkStateDirSync, ensureStateDirSync, removeStaleTempsSync, writeFileAtomicSync } from '../host/atomic.js';
import { DEFAULT_PROC_ROOT, readProcStatSync } from '../host/procfs.js';
import { join } from 'node:path';
import { PagefuseError, invalidArgType, invalidNumber, invalidArgValue } from '../errors.js';

export interface Registration {
  pid: number;
  /** Start time of the process in clock ticks since boot (/proc/<pid>/stat field 22): tells a reused pid apart. */
  startTime: number;
  tenant?: string;
  name?: string;
  /** Whether the process was given KSM content merging (prctl merge-any or mergeable memory). */
  merge: boolean;
  /** Who registered it: 'exec', 'spawn', 'register'. */
  via: string;
  registeredAt: string;
}

export interface RegistryOptions {
  stateDir?: string;
  procRoot?: string;
}

/**
 * /run/pagefuse for root; a per-user directory otherwise ($XDG_RUNTIME_DIR/pagefuse-UID, else /tmp/pagefuse-UID,
 * made 0700; one another user made first is refused). PAGEFUSE_STATE_DIR overrides both.
 */
export function defaultStateDir(): string {
  if (process.env.PAGEFUSE_STATE_DIR) return process.env.PAGEFUSE_STATE_DIR;
  if (process.getuid?.() === 0) return '/run/pagefuse';
  return join(process.env.XDG_RUNTIME_DIR ?? '/tmp', `pagefuse-${process.getuid?.() ?? 'user'}`);
}

const TENANT_RE = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

/** A registration's file name: its pid, as add() writes it (no sign, no leading zero). */
const ENTRY_NAME = /^([1-9]\d{0,15})\.json$/;

/**
 * One registration file's text, if it is what add() writes for `pid` (the pid its name gives): every field of
 * its type, the tenant as checkTenant takes it. Anything else (damaged, or planted) is undefined.
 */
function parseRegistration(text: string, pid: number): Registration | undefined {
  let v: Partial<Record<keyof Registration, unknown>> | null;
  try {
    v = JSON.parse(text) as typeof v;
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const ok =
    v.pid === pid &&
    typeof v.startTime === 'number' &&
    Number.isSafeInteger(v.startTime) &&
    v.startTime >= 0 &&
    typeof v.merge === 'boolean' &&
    typeof v.via === 'string' &&
    typeof v.registeredAt === 'string' &&
    (v.tenant === undefined || (typeof v.tenant === 'string' && TENANT_RE.test(v.tenant))) &&
    (v.name === undefined || typeof v.name === 'string');
  if (!ok) return undefined;
  const reg: Registration = {
    pid,
    startTime: v.startTime as number,
    merge: v.merge as boolean,
    via: v.via as string,
    registeredAt: v.registeredAt as string,
    ...(v.tenant === undefined ? {} : { tenant: v.tenant as string }),
    ...(v.name === undefined ? {} : { name: v.name as string }),
  };
  return reg;
}

export function checkTenant(tenant: unknown): string | undefined {
  if (tenant === undefined) return undefined;
  if (typeof tenant !== 'string' || !TENANT_RE.test(tenant)) {
    throw (typeof tenant === 'string' ? invalidArgValue : invalidArgType)(`tenant must be 1-128 characters of letters, digits and . _ : @ - (starting with a letter or digit)`, tenant);
  }
  return tenant;
}

export function processStartTime(pid: number, procRoot = DEFAULT_PROC_ROOT): number | undefined {
  const start = readProcStatSync(procRoot, pid)?.startTime;
  return start !== undefined && Number.isFinite(start) ? start : undefined;
}

// Registrations added or removed in this process (a spawnMerged child's exit among them), so an
// in-process Tuner sees them at once instead of at its next poll.
const changes = new EventEmitter<{ change: [pid: number] }>();
changes.setMaxListeners(0);

/** Calls `listener(pid)` whenever this process adds or removes a registration; returns the unsubscribe. */
export function onRegistryChange(listener: (pid: number) => void): () => void {
  changes.on('change', listener);
  return () => changes.off('change', listener);
}

/**
 * The registry is read and written synchronously: its files are tiny, and spawnMerged() must check
 * isolation and register the child before it returns the ChildProcess.
 */
export class Registry {
  readonly stateDir: string;
  readonly procRoot: string;

  constructor(options: RegistryOptions = {}) {
    this.stateDir = options.stateDir ?? defaultStateDir();
    this.procRoot = options.procRoot ?? DEFAULT_PROC_ROOT;
  }

  private get dir(): string {
    return join(this.stateDir, 'processes');
  }

  /**
   * Creates the state directory (0700 unless root), so a failure to write it shows before anything is started;
   * one that is there is checked first (checkStateDirSync: another user's, or one others can write, is refused).
   */
  prepare(): void {
    ensureStateDirSync(this.stateDir);
    ensureStateDirSync(this.dir);
  }

  /** Whether the directories are there; throws when either is one this user may not trust. */
  private trusted(): boolean {
    return checkStateDirSync(this.stateDir) && checkStateDirSync(this.dir);
  }

  add(entry: { pid: number; tenant?: string; name?: string; merge: boolean; via: string }): Registration {
    if (typeof entry.merge !== 'boolean') throw invalidArgType(`merge must be a boolean`, entry.merge);
    if (!Number.isInteger(entry.pid) || entry.pid <= 0) throw invalidNumber(`pid must be a positive integer`, entry.pid);
    const tenant = checkTenant(entry.tenant);
    const startTime = processStartTime(entry.pid, this.procRoot);
    if (startTime === undefined) {
      throw new PagefuseError('ESRCH', `process ${entry.pid} does not exist; nothing to register`);
    }
    const reg: Registration = {
      pid: entry.pid,
      startTime,
      merge: entry.merge,
      via: entry.via,
      registeredAt: new Date().toISOString(),
      ...(tenant === undefined ? {} : { tenant }),
      ...(entry.name === undefined ? {} : { name: entry.name }),
    };
    this.prepare();
    writeFileAtomicSync(join(this.dir, `${entry.pid}.json`), `${JSON.stringify(reg)}\n`);
    changes.emit('change', entry.pid);
    return reg;
  }

  remove(pid: number): void {
    if (!Number.isSafeInteger(pid) || pid <= 0) throw invalidNumber(`pid must be a positive integer`, pid);
    try {
      unlinkSync(join(this.dir, `${pid}.json`));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      return;
    }
    changes.emit('change', pid);
  }

  /**
   * Calls `listener()` when any process (this one or another: pagefuse exec, an embedding VM manager)
   * adds or removes a registration, through inotify on the registry directory (created if missing).
   * Returns the function that stops watching, or undefined when the directory cannot be watched (the
   * caller then reads the list on its own schedule). `onError` is told when a watch breaks later.
   */
  watch(listener: () => void, onError: (err: Error) => void = () => undefined): (() => void) | undefined {
    try {
      this.prepare();
      const watcher = watch(this.dir, { persistent: false }, () => listener());
      watcher.on('error', (err) => {
        watcher.close();
        onError(err);
      });
      return () => watcher.close();
    } catch {
      return undefined;
    }
  }

  /**
   * Live registrations; entries of exited processes (or of a reused pid) are dropped on the way. An entry that
   * is not what add() writes (its pid not its file's name, a field of the wrong type) is skipped. Throws when
   * the state directory is one this user may not trust (checkStateDirSync).
   */
  list(): Registration[] {
    let names: string[];
    try {
      if (!this.trusted()) return [];
      names = readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    // Only the host's own /proc can say a writer is gone (as for the entries below).
    if (this.procRoot === DEFAULT_PROC_ROOT) removeStaleTempsSync(this.dir, names);
    const out: Registration[] = [];
    for (const name of names) {
      const m = ENTRY_NAME.exec(name);
      const pid = m === null ? NaN : Number(m[1]);
      if (!Number.isSafeInteger(pid)) continue;
      let text: string;
      try {
        text = readFileSync(join(this.dir, name), 'utf8');
      } catch {
        continue; // removed or being replaced meanwhile
      }
      const reg = parseRegistration(text, pid);
      if (reg === undefined) continue;
      if (processStartTime(pid, this.procRoot) !== reg.startTime) {
        // Only the host's own /proc can say a registered process is gone; under another root (a fixture,
        // a container's view) the entry is just not listed, never deleted.
        if (this.procRoot !== DEFAULT_PROC_ROOT) continue;
        try {
          this.remove(pid); // by its file's name, which the pattern above has checked
        } catch {
          // another user's state directory: leave it
        }
        continue;
      }
      out.push(reg);
    }
    return out.sort((a, b) => a.pid - b.pid);
  }
}
