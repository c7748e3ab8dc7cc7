// Real QEMU guests for end-to-end tests: test/guest/guest.c (a bare-metal Multiboot program) is built
// with the machine's gcc, and QEMU boots it under TCG. Each guest fills its RAM with a common image
// (the same in every guest), pages of its own and zero pages, prints "filled" on the serial console
// and halts, keeping that memory. QEMU marks guest RAM mergeable itself.
//
//   const g = await startQemuGuests({ names: ['vm-a', 'vm-b'], memMiB: 64, commonPages: 8192, … });
//   g.pids; g.names; await g.stop();   // stop() always; QEMU also dies with this process (pdeathsig)
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopChildren } from './children.js';

const GUEST_DIR = new URL('../guest/', import.meta.url).pathname;
export const QEMU = 'qemu-system-x86_64';

export interface GuestOptions {
  names: string[];
  memMiB: number;
  /** Pages of the common image (seeded by `image`, identical in every guest). */
  commonPages: number;
  /** Pages only this guest has (seeded per guest). */
  uniquePages: number;
  /** Pages the guest writes zeros to. */
  zeroPages: number;
  image?: number;
  /** How long to wait for every guest's "filled" line. */
  timeoutMs?: number;
  /** A memory cgroup directory each QEMU joins before it starts (so the cgroup is charged for its RAM). */
  cgroup?: string;
}

export interface QemuGuests {
  pids: number[];
  names: string[];
  /** The serial console line each guest printed when it had filled its memory. */
  filled: string[];
  stop(): Promise<void>;
}

/** Why real guests cannot run here, or undefined. */
export function qemuSkipReason(): string | undefined {
  for (const [cmd, args] of [[QEMU, ['--version']], ['gcc', ['--version']], ['setpriv', ['--version']]] as const) {
    try {
      execFileSync(cmd, args, { stdio: 'ignore' });
    } catch {
      return `${cmd} is not installed`;
    }
  }
  return undefined;
}

/** Compiles the guest into `dir`; returns the ELF's path. */
export function buildGuest(dir: string): string {
  const out = join(dir, 'guest.elf');
  execFileSync(
    'gcc',
    [
      '-m32', '-march=i686', '-O2', '-ffreestanding', '-fno-pic', '-fno-pie', '-no-pie', '-fno-stack-protector',
      '-fno-asynchronous-unwind-tables', '-nostdlib', '-static', '-Wall', '-Wextra', '-Werror',
      '-T', join(GUEST_DIR, 'guest.ld'), '-Wl,--build-id=none', '-Wl,--no-warn-rwx-segments',
      '-o', out, join(GUEST_DIR, 'guest.c'),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return out;
}

export async function startQemuGuests(o: GuestOptions): Promise<QemuGuests> {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-qemu-'));
  const children: ChildProcess[] = [];
  const killAll = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  process.once('exit', killAll);
  const stop = async (): Promise<void> => {
    await stopChildren(children);
    process.off('exit', killAll);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const kernel = buildGuest(dir);
    const filled = await Promise.all(
      o.names.map((name, i) => {
        const append = `seed=${i + 1} image=${o.image ?? 12345} common=${o.commonPages} unique=${o.uniquePages} zero=${o.zeroPages}`;
        // setpriv --pdeathsig: QEMU is killed if this process dies without stopping it.
        const argv = ['--pdeathsig', 'SIGKILL', QEMU, '-name', `guest=${name}`, '-accel', 'tcg', '-m', String(o.memMiB),
            '-nodefaults', '-display', 'none', '-serial', 'stdio', '-no-reboot', '-kernel', kernel, '-append', append];
        // The shell joins the cgroup, then becomes setpriv and QEMU (same pid).
        const child =
          o.cgroup === undefined
            ? spawn('setpriv', argv, { stdio: ['ignore', 'pipe', 'pipe'] })
            : spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec setpriv "$@"', o.cgroup, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
        children.push(child);
        return new Promise<string>((resolve, reject) => {
          let out = '';
          let err = '';
          const timer = setTimeout(() => reject(new Error(`${name}: no "filled" line within ${o.timeoutMs ?? 30_000} ms; serial: ${out}`)), o.timeoutMs ?? 30_000);
          child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
          child.stdout!.on('data', (d: Buffer) => {
            out += d.toString();
            const line = out.split(/\r?\n/).find((l) => /^(filled|error) /.test(l));
            if (line === undefined || !out.includes(`${line}\n`) && !out.includes(`${line}\r`)) return;
            clearTimeout(timer);
            if (line.startsWith('error')) reject(new Error(`${name}: ${line}`));
            else resolve(line);
          });
          child.once('exit', (code, signal) => {
            clearTimeout(timer);
            reject(new Error(`${name}: QEMU exited (${signal ?? code}) before filling its memory: ${err.trim()} ${out.trim()}`));
          });
        });
      }),
    );
    return { pids: children.map((c) => c.pid!), names: o.names, filled, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
