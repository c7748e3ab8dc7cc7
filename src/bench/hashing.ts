// Page hashing speed in one run: pagefuse's exact and fast scans against a plain native read of the same
// memory, and against what a Node user would write instead (node:crypto sha1 per page, and
// @node-rs/xxhash per page when that package is installed).
import { createHash, randomFillSync } from 'node:crypto';
import { native } from '../native.js';
import { Region, PAGE_SIZE } from '../region.js';
import { scan } from '../scan/scan.js';

export interface HashingResult {
  bytes: number;
  threads: 1;
  hash_kernel: string;
  read_gb_per_s: number;
  exact_gb_per_s: number;
  fast_gb_per_s: number;
  node_crypto_sha1_gb_per_s: number;
  node_rs_xxhash_gb_per_s: number | null;
  /** Why the @node-rs/xxhash row is empty, when it is. */
  node_rs_xxhash_note?: string;
  exact_vs_read: number;
  fast_vs_exact: number;
  exact_vs_sha1: number;
  exact_vs_node_rs_xxhash: number | null;
  /** The estimate of exact and fast agree (duplicate pages). */
  fast_matches_exact: boolean;
}

const GB = 1e9;

async function best(runs: number, once: () => Promise<number> | number): Promise<number> {
  let top = 0;
  for (let i = 0; i < runs; i++) top = Math.max(top, await once());
  return top;
}

function timed(bytes: number, work: () => void): number {
  const t0 = process.hrtime.bigint();
  work();
  return bytes / (Number(process.hrtime.bigint() - t0) / 1e9);
}

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

/** Low-duplicate memory (random pages), so every byte is hashed and few pages match. */
export async function benchHashing(options: { mib: number; userMib: number; runs: number }): Promise<HashingResult> {
  const bytes = options.mib * 1024 * 1024;
  const region = Region.alloc(bytes, { hugepages: 'default' });
  try {
    const view = new Uint8Array(region.buffer);
    for (let off = 0; off < bytes; off += 1 << 26) randomFillSync(view, off, Math.min(1 << 26, bytes - off));
    native.readSum(region.buffer); // fault in and warm up once
    const read = await best(options.runs, () => timed(bytes, () => native.readSum(region.buffer)));
    let exactDup = -1;
    let fastDup = -1;
    const exact = await best(options.runs, async () => {
      const r = await scan(region, { mode: 'exact', threads: 1 });
      exactDup = r.duplicatePages;
      return r.bytesPerSecond;
    });
    const fast = await best(options.runs, async () => {
      const r = await scan(region, { mode: 'fast', threads: 1 });
      fastDup = r.duplicatePages;
      return r.bytesPerSecond;
    });
    const userBytes = Math.min(bytes, options.userMib * 1024 * 1024);
    const perPage = (h: PageHasher) => () =>
      timed(userBytes, () => {
        for (let off = 0; off < userBytes; off += PAGE_SIZE) h(view.subarray(off, off + PAGE_SIZE));
      });
    const sha1 = await best(options.runs, perPage((p) => createHash('sha1').update(p).digest()));
    const xx = await nodeRsXxhash();
    const xxh = typeof xx === 'string' ? null : await best(options.runs, perPage(xx));
    const round = (n: number, d = 2): number => Number(n.toFixed(d));
    const result: HashingResult = {
      bytes,
      threads: 1,
      hash_kernel: native.hashKernel,
      read_gb_per_s: round(read / GB),
      exact_gb_per_s: round(exact / GB),
      fast_gb_per_s: round(fast / GB),
      node_crypto_sha1_gb_per_s: round(sha1 / GB, 3),
      node_rs_xxhash_gb_per_s: xxh === null ? null : round(xxh / GB, 3),
      exact_vs_read: round(exact / read),
      fast_vs_exact: round(fast / exact),
      exact_vs_sha1: round(exact / sha1, 1),
      exact_vs_node_rs_xxhash: xxh === null ? null : round(exact / xxh, 1),
      fast_matches_exact: fastDup === exactDup,
    };
    if (typeof xx === 'string') result.node_rs_xxhash_note = xx;
    return result;
  } finally {
    region.dispose();
  }
}
