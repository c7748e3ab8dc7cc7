// A memory cgroup of its own for a measured workload (Workload's `cgroup` option, QEMU guests): the fall
// in its usage is what the processes in it got back (docs/savings.md). Root only. Shared by the savings
// test and the savings scripts.
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const V1 = '/sys/fs/cgroup/memory';

export interface MemoryCgroup {
  dir: string;
  /** Bytes charged to it now: memory.usage_in_bytes (v1) or memory.current (v2). */
  usage(): number;
  /** Removes it, waiting up to 5 s for processes still exiting from it. */
  remove(): Promise<void>;
}

/** Creates the memory cgroup `name` (v1 where the host mounts it, else v2 under /sys/fs/cgroup). */
export function makeMemoryCgroup(name: string): MemoryCgroup {
  const v1 = existsSync(join(V1, 'memory.usage_in_bytes'));
  const dir = v1 ? join(V1, name) : join('/sys/fs/cgroup', name);
  const file = join(dir, v1 ? 'memory.usage_in_bytes' : 'memory.current');
  mkdirSync(dir);
  return {
    dir,
    usage: () => Number(readFileSync(file, 'utf8')),
    async remove() {
      for (let i = 0; i < 50 && existsSync(dir); i++) {
        try {
          rmdirSync(dir);
        } catch {
          await sleep(100); // processes still exiting
        }
      }
    },
  };
}
