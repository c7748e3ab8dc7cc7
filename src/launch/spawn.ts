// Starting a command (a VMM, typically) bound to a NUMA node and with KSM merging all of its memory,
// through the pagefuse-exec helper: it applies the settings to itself and execs the command, so
// they hold from the command's first instruction, whether or not the command ever calls madvise.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { execHelperPath } from '../native.js';
import { PagefuseError, invalidArgType, invalidArgValue, invalidUse } from '../errors.js';
import { assertNodes } from '../numa/topology.js';
import { Registry } from '../safety/registry.js';
import { ISOLATIONS, readIsolation, type Isolation } from '../safety/isolation.js';
import { admit } from '../safety/admission.js';

/** numactl's node options, as numactl spells them: a node list is '0-3,5' or 'all'. */
export interface NumaPolicyOptions {
  /** Allocate only on these nodes (numactl -m/--membind, MPOL_BIND). */
  membind?: string;
  /** Allocate on this node first (numactl -p/--preferred, MPOL_PREFERRED). */
  preferred?: number;
  /** Interleave allocations over these nodes (numactl -i/--interleave, MPOL_INTERLEAVE). */
  interleave?: string;
  /** Run only on the CPUs of these nodes (numactl -N/--cpunodebind). */
  cpunodebind?: string;
}

export interface SpawnMergedOptions extends SpawnOptions {
  /** Bind the command's memory and CPUs to this node (numactl --membind=N --cpunodebind=N). */
  node?: number;
  /** numactl's finer policies; combine at most one memory policy with cpunodebind, and none with node. */
  numa?: NumaPolicyOptions;
  /** prctl(PR_SET_MEMORY_MERGE, 1) for the command: KSM may merge all its anonymous memory. Default true. */
  mergeAny?: boolean;
  /**
   * The tenant the command (a VM) belongs to, kept in the registry and checked against isolation. Under
   * 'tenant' isolation the check and the registration hold the state directory's admission lock, so this
   * call waits while another admission is in progress (milliseconds; EBUSY after 10 s).
   */
  tenant?: string;
  /** A readable name for reports (the VM's name). */
  name?: string;
  /** The host's isolation setting; default readIsolation() (PAGEFUSE_ISOLATION or the config file). */
  isolation?: Isolation;
  /** Merge even though another tenant's VMs are mergeable under 'tenant' isolation. */
  force?: boolean;
  /** Where the child is registered while it runs (default: the host's registry); false: not at all. */
  registry?: Registry | false;
}

/** Exit statuses of pagefuse-exec itself; any other status is the command's own. */
export const EXEC_STATUS = {
  usage: 2,
  settingFailed: 125,
  notExecutable: 126,
  notFound: 127,
} as const;

let mergeCheck: { ok: true } | { ok: false; message: string } | undefined;

function helperPath(): string {
  if (!existsSync(execHelperPath)) {
    throw new PagefuseError('ENOENT', `the pagefuse-exec helper is missing at ${execHelperPath}; run 'npm install' (or 'npm run build') in the pagefuse package`, { path: execHelperPath });
  }
  return execHelperPath;
}

/**
 * Throws ENOTSUP when this kernel cannot give a command the merge flag through exec: no
 * PR_SET_MEMORY_MERGE (before 6.4), or the flag cleared at execve (before 6.7). The helper checks
 * by exec'ing itself once; the answer is kept for the life of the process.
 */
export function assertMergeSurvivesExec(): void {
  if (mergeCheck === undefined) {
    const r = spawnSync(helperPath(), ['--merge', '--check'], { encoding: 'utf8' });
    if (r.error) throw r.error;
    mergeCheck = r.status === 0 ? { ok: true } : { ok: false, message: r.stderr.trim().replace(/^pagefuse-exec: (--merge: )?/, '') };
  }
  if (!mergeCheck.ok) throw new PagefuseError('ENOTSUP', mergeCheck.message);
}

/** The helper's arguments for these options, up to and including '--'. */
export function execHelperArgs(options: { node?: number | undefined; mergeAny?: boolean | undefined; numa?: NumaPolicyOptions | undefined }): string[] {
  const args: string[] = [];
  if (options.mergeAny ?? true) args.push('--merge');
  if (options.node !== undefined) args.push('--node', String(options.node));
  const numa = options.numa ?? {};
  if (numa.membind !== undefined) args.push(`--membind=${numa.membind}`);
  if (numa.preferred !== undefined) args.push(`--preferred=${numa.preferred}`);
  if (numa.interleave !== undefined) args.push(`--interleave=${numa.interleave}`);
  if (numa.cpunodebind !== undefined) args.push(`--cpunodebind=${numa.cpunodebind}`);
  args.push('--');
  return args;
}

/** Why these NUMA options cannot go together (as numactl refuses them), or undefined. */
export function numaConflict(node: number | undefined, numa: NumaPolicyOptions = {}): string | undefined {
  const memory = (['membind', 'preferred', 'interleave'] as const).filter((k) => numa[k] !== undefined);
  if (memory.length > 1) return `--${memory[0]} and --${memory[1]} cannot be combined: a command has one memory policy`;
  if (node !== undefined && (memory.length > 0 || numa.cpunodebind !== undefined)) {
    return `--node sets both the memory policy and the CPUs; use --membind/--preferred/--interleave with --cpunodebind instead`;
  }
  return undefined;
}

/** numa: undefined or an object whose node lists are strings and whose preferred node is a node id. */
function checkNumaOptions(numa: unknown): asserts numa is NumaPolicyOptions | undefined {
  if (numa === undefined) return;
  if (numa === null || typeof numa !== 'object' || Array.isArray(numa)) throw invalidArgType('spawnMerged: numa must be an object', numa);
  const o = numa as Record<string, unknown>;
  for (const key of ['membind', 'interleave', 'cpunodebind'] as const) {
    const v = o[key];
    // The helper parses the list as numactl does and refuses a bad one with 125; only the type is checked here.
    if (v !== undefined && (typeof v !== 'string' || v === '' || v.includes('\0'))) {
      throw (typeof v === 'string' ? invalidArgValue : invalidArgType)(`spawnMerged: numa.${key} must be a node list such as '0-3,5' or 'all'`, v);
    }
  }
  if (o.preferred !== undefined) assertNodes('spawnMerged: numa.preferred', [o.preferred as number]);
}

/**
 * spawn() through pagefuse-exec. stdio, the exit status and signals are the command's own, except
 * that the helper reports its own failures as a shell would: 127 (command not found) or 126 (not
 * executable) with one line on stderr, instead of an 'error' event.
 */
export function spawnMerged(cmd: string, args: readonly string[] = [], options: SpawnMergedOptions = {}): ChildProcess {
  if (typeof cmd !== 'string' || cmd === '') {
    throw invalidArgType(`spawnMerged: cmd must be a non-empty string`, cmd);
  }
  if (!Array.isArray(args) || args.some((a) => typeof a !== 'string')) {
    throw invalidArgType('spawnMerged: args must be an array of strings', args);
  }
  if (options === null || typeof options !== 'object') {
    throw invalidArgType(`spawnMerged: options must be an object`, options);
  }
  const { node, numa, mergeAny, tenant, name, isolation, force, registry: registryOption, ...spawnOptions } = options;
  if (spawnOptions.shell) {
    throw invalidUse('spawnMerged: the shell option is not supported; spawn the shell itself as cmd');
  }
  if (mergeAny !== undefined && typeof mergeAny !== 'boolean') {
    throw invalidArgType(`spawnMerged: mergeAny must be a boolean`, mergeAny);
  }
  if (node !== undefined) assertNodes('spawnMerged', [node], { memory: true, cpus: true });
  checkNumaOptions(numa);
  const conflict = numaConflict(node, numa);
  if (conflict !== undefined) throw invalidUse(`spawnMerged: ${conflict.replace(/--(\w+)/g, '$1')}`);
  if (name !== undefined && typeof name !== 'string') throw invalidArgType('spawnMerged: name must be a string', name);
  if (force !== undefined && typeof force !== 'boolean') throw invalidArgType('spawnMerged: force must be a boolean', force);
  if (isolation !== undefined && !(ISOLATIONS as readonly unknown[]).includes(isolation)) {
    throw (typeof isolation === 'string' ? invalidArgValue : invalidArgType)(`spawnMerged: isolation must be one of ${ISOLATIONS.join(', ')}`, isolation);
  }
  if (registryOption !== undefined && registryOption !== false && !(registryOption instanceof Registry)) {
    throw invalidArgType('spawnMerged: registry must be a Registry or false', registryOption);
  }
  const merge = mergeAny ?? true;
  const registry = registryOption === false ? undefined : (registryOption ?? new Registry());
  const admitted = admit(registry ?? new Registry(), {
    merge,
    // Without merging the isolation setting does not matter: the host's is not even read.
    isolation: isolation ?? (merge ? readIsolation() : 'host'),
    ...(tenant === undefined ? {} : { tenant }),
    ...(force === undefined ? {} : { force }),
  });
  // Under 'tenant' isolation the admission holds the host's admission lock from its check to the record
  // (or to a failure before it): released in every case here.
  try {
    registry?.prepare();
    const helper = helperPath();
    if (merge) assertMergeSurvivesExec();
    const child = spawn(helper, [...execHelperArgs({ node, mergeAny, numa }), cmd, ...args], spawnOptions);
    const pid = child.pid;
    if (registry !== undefined && pid !== undefined) {
      // The helper execs the command in place: same pid, same start time.
      try {
        admitted.record(pid, { via: 'spawn', ...(name === undefined ? {} : { name }) });
        child.once('exit', () => registry.remove(pid));
      } catch (err) {
        // Exited already (a command not found, say): nothing to register.
        if ((err as PagefuseError).code !== 'ESRCH') throw err;
      }
    }
    return child;
  } finally {
    admitted.release();
  }
}
