// Workload children (src/workload) started as QEMU would be seen: through a qemu-system-x86_64 symlink to
// node, with -name guest=… and -m on the command line, so VM discovery and the daemon find them.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PAGE_SIZE } from '../../src/region.js';
import { mix } from '../../src/workload/content.js';
import type { ChildReady, ChildSpec } from '../../src/workload/workload.js';
import { stopChildren } from './children.js';

const CHILD = new URL('../../src/workload/child.ts', import.meta.url).pathname;
const MiB = 1024 * 1024;

export interface GuestSizes {
  commonMiB: number;
  uniqueMiB: number;
  zeroMiB: number;
  /** Rewritten every 50 ms: never stays merged. */
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
  const pages = (mib: number) => (mib * MiB) / PAGE_SIZE;
  const children: ChildProcess[] = [];
  const stop = async () => {
    await stopChildren(children);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const ready = [];
    for (let i = 0; i < n; i++) {
      const spec: ChildSpec = {
        imagePages: pages(sizes.commonMiB),
        zeroPages: pages(sizes.zeroMiB),
        uniquePages: pages(sizes.uniqueMiB),
        volatilePages: pages(sizes.changingMiB),
        rewriteIntervalMs: 50,
        imageSeed: 1,
        seed: mix(1, i + 1),
        mergeable: true,
        hugepages: 'never',
      };
      const mem = sizes.commonMiB + sizes.uniqueMiB + sizes.zeroMiB + sizes.changingMiB;
      const child = fork(CHILD, [JSON.stringify(spec), '-name', `guest=${namePrefix}${i + 1}`, '-m', String(mem)], {
        execPath: qemu,
        execArgv: ['--import', 'tsx'],
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      });
      children.push(child);
      ready.push(
        new Promise<ChildReady>((resolve, reject) => {
          child.once('message', (m) => resolve(m as ChildReady));
          child.once('exit', (code) => reject(new Error(`guest ${i + 1} exited early (code ${code})`)));
        }),
      );
    }
    await Promise.all(ready);
  } catch (err) {
    await stop();
    throw err;
  }
  const common = pages(sizes.commonMiB);
  const zero = pages(sizes.zeroMiB);
  return {
    pids: children.map((c) => c.pid!),
    achievablePages: (n - 1) * common + (zero > 0 ? n * zero - 1 : 0),
    stop,
  };
}
