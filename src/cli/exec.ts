// pagefuse exec — runs a command bound to a NUMA node and/or with KSM merging all its memory.
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { constants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { intFlag, parse, StatusError, UsageError } from './common.js';
import { nodesProblem } from '../numa/topology.js';
import { EXEC_STATUS, numaConflict, spawnMerged, type NumaPolicyOptions } from '../launch/spawn.js';
import { checkTenant } from '../safety/registry.js';

const HELP = `usage: pagefuse exec [--merge] [--node N | NUMACTL OPTIONS] [--tenant ID] [--name NAME] [--force]
                     -- COMMAND [ARGS...]

Runs COMMAND with KSM merging all its anonymous memory (--merge: prctl PR_SET_MEMORY_MERGE, kept
across exec since Linux 6.7) and/or its memory and CPUs bound to NUMA nodes (numactl's options),
even if COMMAND never calls madvise: a VMM such as Firecracker, Cloud Hypervisor or crosvm. stdio,
signals and the exit status are COMMAND's own; 127 means the command was not found, 126 that it
could not be executed (as in a shell), 125 that it was not started because a setting could not be
applied (a --merge refused by isolation, say); 2 is a mistake in this command's own options.

  --node N    memory and CPUs of NUMA node N (numactl --membind=N --cpunodebind=N; 'pagefuse numa'
              lists the nodes)
  -m, --membind LIST      allocate only on these nodes          (numactl's; LIST is 0-3,5 or all)
  -p, --preferred N       allocate on node N first
  -i, --interleave LIST   interleave allocations over these nodes
  -N, --cpunodebind LIST  run only on the CPUs of these nodes
  --merge     let KSM merge all of the command's memory
  --tenant ID the tenant the command (a VM) belongs to; under isolation 'tenant' (PAGEFUSE_ISOLATION
              or ISOLATION= in /etc/pagefuse/pagefuse.conf) a second tenant's --merge is refused,
              and under 'zero-only' every --merge is
  --name NAME a readable name for status and reports
  --force     merge although another tenant's VMs are mergeable (isolation 'tenant' only)

The command is registered with pagefuse (its tenant, name and merge flag) while it runs, and this
process stays as its parent to do so. Where no parent may stay (a libvirt <emulator> wrapper, say),
use the pagefuse-exec command instead: the same options, and it execs the command in its own place.
`;

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export async function run(args: string[]): Promise<number> {
  const dashes = args.indexOf('--');
  const own = dashes < 0 ? args : args.slice(0, dashes);
  if (dashes < 0 && !own.includes('--help') && !own.includes('-h')) {
    throw new UsageError("pagefuse exec: missing '--' before the command: pagefuse exec [--merge] [--node N | -m LIST | -p N | -i LIST] [-N LIST] [--tenant ID] [--name NAME] [--force] -- COMMAND [ARGS...]");
  }
  const { values } = parse('exec', own, {
    options: {
      node: { type: 'string' },
      membind: { type: 'string', short: 'm' },
      preferred: { type: 'string', short: 'p' },
      interleave: { type: 'string', short: 'i' },
      cpunodebind: { type: 'string', short: 'N' },
      merge: { type: 'boolean' },
      tenant: { type: 'string' },
      name: { type: 'string' },
      force: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [cmd, ...cmdArgs] = args.slice(dashes + 1);
  if (cmd === undefined || cmd === '') throw new UsageError("pagefuse exec: missing the command after '--'");
  const node = intFlag('exec', 'node', values.node, 0, 1023);
  if (node !== undefined) {
    const why = nodesProblem([node], { memory: true, cpus: true });
    if (why !== undefined) throw new UsageError(`pagefuse exec: --node ${node}: ${why}`);
  }

  const numa: NumaPolicyOptions = {};
  for (const key of ['membind', 'interleave', 'cpunodebind'] as const) {
    const v = values[key];
    if (v === undefined) continue;
    if (!/^(all|\d+(-\d+)?(,\d+(-\d+)?)*)$/.test(v)) throw new UsageError(`pagefuse exec: --${key} must be a node list such as 0-3,5 or all, got '${v}'`);
    numa[key] = v;
  }
  const preferred = intFlag('exec', 'preferred', values.preferred, 0, 1023);
  if (preferred !== undefined) numa.preferred = preferred;
  const conflict = numaConflict(node, numa);
  if (conflict !== undefined) throw new UsageError(`pagefuse exec: ${conflict}`);

  if (values.tenant !== undefined) {
    try {
      checkTenant(values.tenant);
    } catch (err) {
      throw new UsageError(`pagefuse exec: --tenant: ${(err as Error).message}`);
    }
  }
  // The handlers go in before the command is started. A signal that came between the start and them (while the
  // command was registered) killed this process outright: the command ran on with no parent to pass signals
  // on, and its registry record was left half-written. Node runs a handler only once the synchronous start
  // has returned, so a signal from then on reaches the command.
  let child: ChildProcess | undefined;
  const forward = (signal: NodeJS.Signals): void => {
    child?.kill(signal);
  };
  for (const s of FORWARDED) process.on(s, forward);
  try {
    try {
      child = spawnMerged(cmd, cmdArgs, {
        node,
        numa,
        mergeAny: values.merge ?? false,
        stdio: 'inherit',
        ...(values.tenant === undefined ? {} : { tenant: values.tenant }),
        ...(values.name === undefined ? {} : { name: values.name }),
        ...(values.force ? { force: true } : {}),
      });
    } catch (err) {
      // Not started (a merge refused by isolation, a state directory that cannot be made): 125, not 1, which
      // would pass for the command's own status.
      throw new StatusError((err as Error).message, EXEC_STATUS.settingFailed, { cause: err });
    }
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    if (signal === null) return code ?? 1;
    for (const s of FORWARDED) process.off(s, forward);
    // Die of the same signal, so our parent sees what it would have seen without us.
    process.kill(process.pid, signal);
    await sleep(1000);
    return 128 + (constants.signals[signal] ?? 0);
  } finally {
    for (const s of FORWARDED) process.off(s, forward);
  }
}
