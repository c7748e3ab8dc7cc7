// Starts tune-guest.ts processes under a name VM discovery recognises (a qemu-system-x86_64 symlink to node,
// with -name guest=…), so the tuner finds them as it would find QEMU guests.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PAGE_SIZE } from '../../src/region.js';

const GUEST = new URL('./tune-guest.ts', import.meta.url).pathname;
const MiB = 1024 * 1024;

export interface GuestSizes {
  commonMiB: number;
  uniqueMiB: number;
  zeroMiB: number;
  changingMiB: number;
}

export interface Guests {
  pids: number[];
  /** Pages KSM can save once everything stable is merged: (n−1)·common + (n·zero − 1). */
  achievablePages: number;
  stop(): Promise<void>;
}

export async function startGuests(n: number, sizes: GuestSizes, namePrefix = 'guest'): Promise<Guests> {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-guests-'));
  const qemu = join(dir, 'qemu-system-x86_64');
  symlinkSync(process.execPath, qemu);
  const children: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(
      children.map((c) =>
        c.exitCode !== null || c.signalCode !== null
          ? undefined
          : new Promise<void>((resolve) => {
              c.once('exit', () => resolve());
              c.kill('SIGKILL');
            }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < n; i++) {
      const mem = sizes.commonMiB + sizes.uniqueMiB + sizes.zeroMiB + sizes.changingMiB;
      const child = spawn(
        qemu,
        ['--import', 'tsx', GUEST, '--common', String(sizes.commonMiB), '--unique', String(sizes.uniqueMiB), '--zero', String(sizes.zeroMiB), '--changing', String(sizes.changingMiB), '--seed', String(i + 1), '-name', `guest=${namePrefix}${i + 1}`, '-m', String(mem)],
        { stdio: ['pipe', 'pipe', 'inherit'] },
      );
      children.push(child);
    }
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve, reject) => {
            let out = '';
            c.stdout!.on('data', (b: Buffer) => {
              out += b.toString();
              if (out.includes('ready\n')) resolve();
            });
            c.once('exit', (code) => reject(new Error(`guest exited early (code ${code})`)));
          }),
      ),
    );
  } catch (err) {
    await stop();
    throw err;
  }
  const common = (sizes.commonMiB * MiB) / PAGE_SIZE;
  const zero = (sizes.zeroMiB * MiB) / PAGE_SIZE;
  return {
    pids: children.map((c) => c.pid!),
    achievablePages: (n - 1) * common + (zero > 0 ? n * zero - 1 : 0),
    stop,
  };
}
