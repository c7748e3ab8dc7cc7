// For the report tests that need ksmd to merge something (inside withKsm(t, …, { settings:
// RUNNING_SETTINGS })): VM-like children (test/helpers/merged-child.ts) whose pages ksmd merges.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('./merged-child.ts', import.meta.url));

export interface MergedChild {
  child: ChildProcess;
  pid: number;
  stop(): Promise<void>;
}

/** Starts a QEMU-looking guest `name` holding `pages` identical mergeable pages; resolves once they are written. */
export async function startMergedChild(pages: number, name: string, pattern: 'same' | 'indexed' = 'same'): Promise<MergedChild> {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-vm-'));
  const qemu = join(dir, 'qemu-system-x86_64');
  symlinkSync(process.execPath, qemu);
  const child = spawn(qemu, ['--import', 'tsx', CHILD, String(pages), pattern, '-name', `guest=${name}`], { stdio: ['pipe', 'pipe', 'inherit'] });
  child.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const [data] = (await once(child.stdout!, 'data')) as [Buffer];
  if (!data.toString().startsWith('ready')) throw new Error(`merged child said: ${data.toString()}`);
  return {
    child,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null) return;
      child.stdin!.end();
      await once(child, 'exit');
    },
  };
}

/** Waits until /proc/<pid>/ksm_stat shows `pages` merging pages. */
export async function waitMerging(pid: number, pages: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    last = readFileSync(`/proc/${pid}/ksm_stat`, 'utf8');
    if (new RegExp(`^ksm_merging_pages ${pages}$`, 'm').test(last)) return;
    await sleep(50);
  }
  throw new Error(`pid ${pid} did not reach ${pages} merging pages in ${timeoutMs} ms:\n${last}`);
}
