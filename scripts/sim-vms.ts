// Stand-ins for idle VMs, for the daemon's soak and idle-cost scripts, and a PID namespace to run them in.
// Each VM is a /usr/bin/python3 process (not a pyenv shim, which execs python again and loses argv[0]) that fills M MiB of anonymous memory with random bytes (nothing to merge)
// and then sleeps in pause(), started with argv[0] qemu-system-x86_64 and -name guest=NAME -m M, so VM
// discovery takes it for QEMU. It starts in a few tens of ms and, like an idle QEMU guest, takes no page
// faults once filled; src/workload's Node guests take a second or more to start (tsx) and keep faulting
// as their heap is collected.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

const GUEST = `import mmap, os, signal, sys
n = int(sys.argv[sys.argv.index('-m') + 1]) << 20
m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for off in range(0, n, 1 << 20):
    m[off:off + (1 << 20)] = os.urandom(1 << 20)
print('ready', flush=True)
signal.pause()
`;

export interface SimVms {
  pids: number[];
  /** SIGKILLs them and waits for their exits. */
  stop(): Promise<void>;
}

/** Starts one simulated VM per name, each of sizeMiB, and resolves once all have filled their memory. */
export async function startSimVms(names: string[], sizeMiB: number): Promise<SimVms> {
  const children: ChildProcess[] = names.map((name) =>
    spawn('/usr/bin/python3', ['-c', GUEST, '-name', `guest=${name}`, '-m', String(sizeMiB)], { argv0: 'qemu-system-x86_64', stdio: ['ignore', 'pipe', 'inherit'] }),
  );
  const stop = async (): Promise<void> => {
    await Promise.all(
      children.map((c) =>
        c.exitCode !== null || c.signalCode !== null
          ? undefined
          : new Promise((resolve) => {
              c.once('exit', resolve);
              c.kill('SIGKILL');
            }),
      ),
    );
  };
  try {
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve, reject) => {
            c.stdout!.once('data', () => resolve());
            c.once('exit', (code) => reject(new Error(`a simulated VM exited early (${code})`)));
          }),
      ),
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { pids: children.map((c) => c.pid!), stop };
}

/**
 * Runs this script again inside a new PID namespace with its own /proc (unshare(1), root), unless it runs
 * in one already or `host` is set: the daemon under test then sees only the VMs the script starts, not the
 * other processes and VMs of a shared machine. Returns only inside the namespace (or with `host`).
 */
export function inOwnPidNamespace(host: boolean): void {
  if (host || process.env.PAGEFUSE_SIM_NS !== undefined) return;
  const inner = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, PAGEFUSE_SIM_NS: '1' },
  });
  process.exit(inner.status ?? 1);
}
