// Page hashing speed in one run, against the fastest read of the same memory this CPU does: the native
// read baseline (the scan kernels' widest loads, unrolled, in 1, 2, 4 and 8 streams; the best of them),
// one thread and the default thread count (and, for reference, the read in one stream a thread, as the
// scan reads). With several threads each stream count reads both ways and the better counts: a fixed
// share a thread, and 2 MiB items taken from a shared counter as the scan's threads take theirs (this
// VM's two vCPUs read memory up to 30 % apart, and which is slower changes within a minute: a fixed share
// waits for the slower one; docs/scan.md, Threads). Measured against it: pagefuse's exact scan (keepState on and
// off), fast scan, and what a Node user would write instead (node:crypto sha1 per page, and
// @node-rs/xxhash per page when that package is installed).
//
// The machine may be shared and noisy: every task runs once per round, the rounds interleave the
// baseline and the candidates, and each task keeps its best round. Wall-clock figures are the headline;
// per CPU-second figures (the process's CPU time over the same call) are reported beside them, as
// they stay put when other work takes the CPU.
import { createHash } from 'node:crypto';
import { native } from '../native.js';
import { Region, PAGE_SIZE } from '../region.js';
import { scan } from '../scan/scan.js';
import { KIND_UNIQUE, writePage } from '../workload/content.js';

export interface HashingResult {
  bytes: number;
  threads: 1;
  /** Threads of the threaded rows: the scan's default (the CPUs of this process, at most 8). */
  default_threads: number;
  rounds: number;
  /** The kernel set scans use here, `isa+hash` (e.g. avx512+vaes, avx2+xxh3). */
  hash_kernel: string;
  /** The best plain native read, one thread, and the stream count that gave it. */
  read_gb_per_s: number;
  read_streams: number;
  /** The same read in one stream, for reference (the baseline before streams). */
  read_one_stream_gb_per_s: number;
  exact_gb_per_s: number;
  exact_no_state_gb_per_s: number;
  fast_gb_per_s: number;
  node_crypto_sha1_gb_per_s: number;
  node_rs_xxhash_gb_per_s: number | null;
  /** Why the @node-rs/xxhash row is empty, when it is. */
  node_rs_xxhash_note?: string;
  exact_vs_read: number;
  /** What keeping the page checksums (keepState, the default) costs, in % of the scan without. */
  keep_state_cost_percent: number;
  fast_vs_exact: number;
  exact_vs_sha1: number;
  exact_vs_node_rs_xxhash: number | null;
  /** Per CPU-second of this process: the read and exact (keepState on), one thread. */
  read_gb_per_cpu_s: number;
  exact_gb_per_cpu_s: number;
  exact_vs_read_cpu: number;
  /** The read and exact mode with default_threads threads: the read the better of a fixed share a thread and shared items. */
  read_threads_gb_per_s: number;
  /** How the best threaded read split the memory: 'shares' (a fixed share a thread) or 'items' (2 MiB items, as the scan). */
  read_threads_split: 'shares' | 'items';
  exact_threads_gb_per_s: number;
  exact_threads_vs_read: number;
  /**
   * The same read with one stream a thread: how the scan reads (each thread hashes its pages one
   * after the other). With several threads it falls well below the best read (docs/scan.md, Threads).
   */
  read_threads_one_stream_gb_per_s: number;
  /** Per CPU-second of this process (all threads): the best threaded read and exact mode. */
  read_threads_gb_per_cpu_s: number;
  exact_threads_gb_per_cpu_s: number;
  exact_threads_vs_read_cpu: number;
  /** The estimate of exact and fast agree (duplicate pages). */
  fast_matches_exact: boolean;
}

const GB = 1e9;
const STREAMS = [1, 2, 4, 8] as const;

type PageHasher = (page: Uint8Array) => unknown;

/** @node-rs/xxhash's xxh3 per page, if the package is installed (it is optional). */
async function nodeRsXxhash(): Promise<PageHasher | string> {
  const name = '@node-rs/xxhash';
  try {
    const mod = (await import(name)) as { xxh3?: { xxh64?: (input: Uint8Array) => bigint } };
    const f = mod.xxh3?.xxh64;
    return typeof f === 'function' ? (page) => f(page) : `${name} has no xxh3.xxh64`;
  } catch {
    return `${name} is not installed (npm install @node-rs/xxhash to compare)`;
  }
}

interface Task {
  name: string;
  bytes: number;
  run: () => Promise<unknown> | unknown;
}

interface Best {
  wall: number;
  cpu: number;
}

/** Runs every task once per round, in order; keeps each task's best bytes per second (wall and CPU). */
async function interleaved(tasks: Task[], rounds: number): Promise<Map<string, Best>> {
  const best = new Map<string, Best>(tasks.map((t) => [t.name, { wall: 0, cpu: 0 }]));
  for (let r = 0; r < rounds; r++) {
    for (const t of tasks) {
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      await t.run();
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const c = process.cpuUsage(c0);
      const cpu = (c.user + c.system) / 1e6;
      const b = best.get(t.name) as Best;
      b.wall = Math.max(b.wall, t.bytes / wall);
      if (cpu > 0) b.cpu = Math.max(b.cpu, t.bytes / cpu);
    }
  }
  return best;
}

/** Low-duplicate memory (every page different), so every byte is hashed and no page matches another. */
export async function benchHashing(options: { mib: number; userMib: number; runs: number }): Promise<HashingResult> {
  const bytes = options.mib * 1024 * 1024;
  const region = Region.alloc(bytes, { hugepages: 'never' });
  try {
    const words = new Uint32Array(region.buffer);
    const per = PAGE_SIZE / 4;
    for (let p = 0; p < bytes / PAGE_SIZE; p++) writePage(words.subarray(p * per, (p + 1) * per), KIND_UNIQUE, 7, p);
    const view = new Uint8Array(region.buffer);
    const spec = { kind: 'region' as const, handle: region.handle };
    const threads = native.defaultThreads;
    let exactDup = -1;
    let fastDup = -1;
    const userBytes = Math.min(bytes, options.userMib * 1024 * 1024);
    const perPage = (h: PageHasher) => () => {
      for (let off = 0; off < userBytes; off += PAGE_SIZE) h(view.subarray(off, off + PAGE_SIZE));
    };
    const xx = await nodeRsXxhash();
    const tasks: Task[] = [
      ...STREAMS.map((s) => ({ name: `read ${s}`, bytes, run: () => native.readMemory(spec, { streams: s }) })),
      { name: 'exact', bytes, run: async () => (exactDup = (await scan(region, { mode: 'exact', threads: 1 })).duplicatePages) },
      { name: 'exact no state', bytes, run: () => scan(region, { mode: 'exact', threads: 1, keepState: false }) },
      { name: 'fast', bytes, run: async () => (fastDup = (await scan(region, { mode: 'fast', threads: 1 })).duplicatePages) },
      ...STREAMS.map((s) => ({ name: `read threads ${s}`, bytes, run: () => native.readMemory(spec, { threads, streams: s }) })),
      ...STREAMS.map((s) => ({ name: `read threads items ${s}`, bytes, run: () => native.readMemory(spec, { threads, streams: s, items: true }) })),
      { name: 'exact threads', bytes, run: () => scan(region, { mode: 'exact', threads }) },
      { name: 'sha1', bytes: userBytes, run: perPage((p) => createHash('sha1').update(p).digest()) },
      ...(typeof xx === 'string' ? [] : [{ name: 'xxh3', bytes: userBytes, run: perPage(xx) }]),
    ];
    await native.readMemory(spec, { streams: 4 }); // warm up: the pool's thread, the page tables
    const best = await interleaved(tasks, options.runs);
    const wall = (name: string): number => best.get(name)?.wall ?? 0;
    const cpu = (name: string): number => best.get(name)?.cpu ?? 0;
    const bestRead = (prefix: string, of: (n: string) => number): [number, number] =>
      STREAMS.map((s) => [of(`${prefix}${s}`), s] as [number, number]).reduce((a, b) => (b[0] > a[0] ? b : a));
    const [read, readStreams] = bestRead('read ', wall);
    const [readCpu] = bestRead('read ', cpu);
    const [readShares] = bestRead('read threads ', wall);
    const [readItems] = bestRead('read threads items ', wall);
    const readThreads = Math.max(readShares, readItems);
    const readThreadsCpu = Math.max(bestRead('read threads ', cpu)[0], bestRead('read threads items ', cpu)[0]);
    const readThreadsOneStream = Math.max(wall('read threads 1'), wall('read threads items 1'));
    const round = (n: number, d = 2): number => Number(n.toFixed(d));
    const exact = wall('exact');
    const xxh = typeof xx === 'string' ? null : wall('xxh3');
    const result: HashingResult = {
      bytes,
      threads: 1,
      default_threads: threads,
      rounds: options.runs,
      hash_kernel: native.hashKernel,
      read_gb_per_s: round(read / GB),
      read_streams: readStreams,
      read_one_stream_gb_per_s: round(wall('read 1') / GB),
      exact_gb_per_s: round(exact / GB),
      exact_no_state_gb_per_s: round(wall('exact no state') / GB),
      fast_gb_per_s: round(wall('fast') / GB),
      node_crypto_sha1_gb_per_s: round(wall('sha1') / GB, 3),
      node_rs_xxhash_gb_per_s: xxh === null ? null : round(xxh / GB, 3),
      exact_vs_read: round(exact / read),
      keep_state_cost_percent: round((wall('exact no state') / exact - 1) * 100, 1),
      fast_vs_exact: round(wall('fast') / exact),
      exact_vs_sha1: round(exact / wall('sha1'), 1),
      exact_vs_node_rs_xxhash: xxh === null ? null : round(exact / xxh, 1),
      read_gb_per_cpu_s: round(readCpu / GB),
      exact_gb_per_cpu_s: round(cpu('exact') / GB),
      exact_vs_read_cpu: round(cpu('exact') / readCpu),
      read_threads_gb_per_s: round(readThreads / GB),
      read_threads_split: readItems > readShares ? 'items' : 'shares',
      exact_threads_gb_per_s: round(wall('exact threads') / GB),
      exact_threads_vs_read: round(wall('exact threads') / readThreads),
      read_threads_one_stream_gb_per_s: round(readThreadsOneStream / GB),
      read_threads_gb_per_cpu_s: round(readThreadsCpu / GB),
      exact_threads_gb_per_cpu_s: round(cpu('exact threads') / GB),
      exact_threads_vs_read_cpu: round(cpu('exact threads') / readThreadsCpu),
      fast_matches_exact: fastDup === exactDup,
    };
    if (typeof xx === 'string') result.node_rs_xxhash_note = xx;
    return result;
  } finally {
    region.dispose();
  }
}
