// The memory a process under measurement keeps, as against what it has not collected yet. V8 lets its
// heap grow between collections and collects when it chooses, so one RSS reading of a busy process swings
// by several MiB with the moment it is taken (pagefuse serve under 20 concurrent scrapes: 88–98 MiB over
// 10,000 scrapes, while its live heap stayed at 7.2–7.5 MiB). Started with liveMemoryArgs() and a pipe on
// fd 3, the process answers liveMemory() after two full collections: RSS, the live JS heap and external
// memory then move only when something is kept. The preload is bench/live-memory-probe.mjs.
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Readable, Writable } from 'node:stream';
import { readStatus } from '../src/host/procfs.js';

const PROBE = fileURLToPath(new URL('./live-memory-probe.mjs', import.meta.url));

/** Node options that load the probe: put them before the script in the child's argv. */
export function liveMemoryArgs(): string[] {
  return ['--expose-gc', '--import', PROBE];
}

/** stdio for spawn(): the given three, and the probe's pipe on fd 3. */
export function liveMemoryStdio(stdio: ['ignore' | 'pipe' | 'inherit', 'ignore' | 'pipe' | 'inherit', 'ignore' | 'pipe' | 'inherit']): ('ignore' | 'pipe' | 'inherit')[] {
  return [...stdio, 'pipe'];
}

export interface LiveMemory {
  /** VmRSS after the collections. */
  rssBytes: number;
  /** V8's live heap after the collections. */
  heapUsedBytes: number;
  /** Memory outside V8's heap that JS objects hold (Buffers, the addon's). */
  externalBytes: number;
}

/** Collects garbage in `child` (started with liveMemoryArgs/liveMemoryStdio) and reads what is left. */
export async function liveMemory(child: ChildProcess, timeoutMs = 10_000): Promise<LiveMemory> {
  const channel = child.stdio[3] as (Readable & Writable) | null | undefined;
  if (channel == null) throw new Error('liveMemory: the child has no probe pipe on fd 3 (start it with liveMemoryStdio)');
  const answer = await new Promise<string>((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => done(new Error(`liveMemory: no answer from process ${child.pid} in ${timeoutMs} ms (started without liveMemoryArgs?)`)), timeoutMs);
    const onData = (d: Buffer): void => {
      got += d.toString();
      if (got.includes('\n')) done(undefined);
    };
    const done = (err: Error | undefined): void => {
      clearTimeout(timer);
      channel.off('data', onData);
      if (err === undefined) resolve(got.slice(0, got.indexOf('\n')));
      else reject(err);
    };
    channel.on('data', onData);
    channel.write('collect\n');
  });
  const { heapUsedBytes, externalBytes } = JSON.parse(answer) as { heapUsedBytes: number; externalBytes: number };
  const status = await readStatus('/proc', child.pid!);
  return { rssBytes: (status?.VmRSS ?? 0) * 1024, heapUsedBytes, externalBytes };
}
