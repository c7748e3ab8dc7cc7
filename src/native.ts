// The only module that touches the addon: everything else imports typed functions from here.
// The addon is loaded lazily (see `native` below).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';

export interface RegionHandle {
  readonly buffer: ArrayBuffer;
  readonly byteLength: number;
  readonly disposed: boolean;
  advise(offset: number, length: number, advice: number): void;
  dispose(): void;
}

export interface NativeNumaTopology {
  nodes: { id: number; cpus: number[]; memTotal: number; memFree: number }[];
  distances: number[][];
}

export interface NativePageNodes {
  /** Resident pages per node; index = node id. */
  perNode: number[];
  notPresent: number;
  zeroPage: number;
}

export interface NativeScanTargetSpec {
  kind: 'region' | 'buffer' | 'pid';
  handle?: RegionHandle;
  buffer?: ArrayBuffer;
  offset?: number;
  length?: number;
  pid?: number;
  mergeableOnly?: boolean;
  /** Opaque page checksums from an earlier scan of the same target. */
  previous?: unknown;
}

export interface NativeScanOptions {
  mode: 'exact' | 'fast' | 'sampled';
  threads?: number;
  sampleRate?: number;
  hashBits?: number;
  keepState?: boolean;
  /** Keep a bitmask of targets per content (sharing matrix, per-target distinct contents). Default true. */
  sharing?: boolean;
  skipMissing?: boolean;
  skipDenied?: boolean;
  procRoot?: string;
}

export interface NativeTargetResult {
  pages: number;
  zeroPages: number;
  thpZeroPages: number;
  volatilePages: number;
  unreadablePages: number;
  absentPages: number;
  zeroMappedPages: number;
  indexedPages: number;
  sampledPages: number;
  distinct: number;
  mergingPages: number;
  sharedWithOthers: number;
  tailBytes: number;
  vanished: boolean;
  denied: boolean;
  flagsKnown: boolean;
  volatilityChecked: boolean;
  density: NativeDensity;
  state?: unknown;
}

/** Pages per 2 MiB chunk of a target, as the addon counts them (scan.ts's DensityMap adds the chunk size). */
export interface NativeDensity {
  /** Start of each chunk: byte offset in the target (memory) or virtual address (process). */
  address: Float64Array;
  pages: Uint32Array;
  /** Pages whose content occurs more than once (zero pages included). */
  duplicatePages: Uint32Array;
  /** Pages inside transparent huge pages (known as root only). */
  thpPages: Uint32Array;
  /** Zero-filled pages inside transparent huge pages. */
  thpZeroPages: Uint32Array;
  /** Non-zero pages inside transparent huge pages whose content occurs more than once. */
  thpDuplicatePages: Uint32Array;
}

export interface NativeScanResult {
  distinct: number;
  collisions: number;
  changedDuringScan: number;
  unconfirmed: number;
  indexBytes: number;
  bytesScanned: number;
  seconds: number;
  kernel: string;
  sampledPages: number;
  sumSquares: number;
  pageSize: number;
  targets: NativeTargetResult[];
  /** Empty when the scan ran with sharing: false. */
  sharing: number[][];
}

/** A keyed hash-mod-M sample of page contents (native/core/sketch.h). Values are keyed; never raw page hashes. */
export interface NativeSketch {
  /** Distinct sampled keyed values, ascending. */
  values: BigUint64Array;
  /** Pages carrying each value. */
  counts: Uint32Array;
  pages: number;
  zeroPages: number;
  thpPages: number;
  absentPages: number;
  zeroMappedPages: number;
  unreadablePages: number;
  flagsKnown: boolean;
}

export interface NativeScanHandle {
  promise: Promise<NativeScanResult>;
  cancel(): void;
}

export interface NativeAddon {
  pageSize: number;
  RegionHandle: new (bytes: number, hugepages: number) => RegionHandle;
  setMergeAny(on: boolean): void;
  getMergeAny(): boolean;
  /** malloc_trim(0): true when glibc handed memory back (false on musl). */
  trimHeap(): boolean;
  /** Every thread of this process under SCHED_BATCH, or SCHED_OTHER (threads created later inherit it); how many were set. */
  batchScheduling(on: boolean): number;
  /** mallopt(M_MMAP_THRESHOLD, 128 KiB): glibc's threshold stays put (false on musl). */
  pinMmapThreshold(): boolean;
  reclaimZeroPages(region: RegionHandle, offset: number, length: number): { zeroPages: number; reclaimedPages: number };
  ownedPages(region: RegionHandle, offset: number, length: number): number;
  /** The host's topology (libnuma, else sysfs), or the sysfs tree under sysfsRoot. */
  numaTopology(sysfsRoot?: string): NativeNumaTopology;
  /** 'libnuma' or 'syscalls' (libnuma missing, or PAGEFUSE_NO_LIBNUMA set). */
  numaBackend(): 'libnuma' | 'syscalls';
  /** Why the host cannot use these nodes, or '' when it can. */
  numaCheckNodes(nodes: number[], needMemory: boolean, needCpus: boolean): string;
  regionBind(region: RegionHandle, offset: number, length: number, mode: number, nodes: number[], move: boolean): void;
  regionPageNodes(region: RegionHandle, offset: number, length: number): NativePageNodes;
  startScan(
    targets: NativeScanTargetSpec[],
    options: NativeScanOptions,
    onProgress?: (done: number, total: number) => void,
  ): NativeScanHandle;
  /** Keyed sketch of a process's private anonymous memory, read through /proc/<pid>/mem (never pins pages). */
  sketchProcess(pid: number, key: Uint8Array, modulus: number, mergeableOnly: boolean, procRoot?: string): Promise<NativeSketch>;
  /** Keyed sketch of whole pages of a buffer. */
  sketchBuffer(buffer: ArrayBuffer, key: Uint8Array, modulus: number): NativeSketch;
  /**
   * The numeric entries of a proc root by pid, as [pid, inode, …] (the inode changes when the pid names a new
   * process); null when exactly `previous`.
   */
  procPids(dir: string, previous?: Float64Array): Float64Array | null;
  /**
   * PAGEMAP_SCAN on an open pagemap over [start, end): the present spans ([start, end, …], closer than 2 MiB
   * joined) up to maxPages present pages, and where the walk stopped; null without PAGEMAP_SCAN.
   */
  pagemapPresent(fd: number, start: number, end: number, maxPages: number): { spans: Float64Array; walkEnd: number } | null;
  /** flock(fd, LOCK_EX | LOCK_NB): true when taken, false when another open file holds it. */
  tryLockExclusive(fd: number): boolean;
  /**
   * Reads a Region's memory or an ArrayBuffer once, with the widest loads of the scan's kernels, on the
   * scan's thread pool: the read baseline for benches. `items`: the threads take 2 MiB items from a
   * shared counter, as the scan's do, instead of a fixed share each. Resolves to (part of) the sum of its words.
   */
  readMemory(target: { kind: 'region'; handle: RegionHandle } | { kind: 'buffer'; buffer: ArrayBuffer }, options: { threads?: number; streams?: 1 | 2 | 4 | 8; items?: boolean }): Promise<number>;
  /** The kernel set scans use, as `isa+hash` ("avx512+vaes", "avx2+xxh3", …). */
  hashKernel: string;
  defaultThreads: number;
}

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

const SOURCE_BUILD =
  "no prebuilt addon matches this host (the package ships linux-x64 glibc, N-API 9); build it from source: " +
  "install g++, make and python3, then 'npm install xxhash-addon@2.1.0 --ignore-scripts' (its xxhash.h header) " +
  "and 'npm rebuild pagefuse'";

/** Where the addon is looked for, in node-gyp-build's order, and why a place has none. */
function candidates(): { paths: string[]; failures: string[] } {
  const require = createRequire(import.meta.url);
  const paths: string[] = [];
  const failures: string[] = [];
  if (process.env.PAGEFUSE_ADDON) paths.push(process.env.PAGEFUSE_ADDON);
  try {
    const nodeGypBuild = require('node-gyp-build') as { resolve(dir: string): string };
    paths.push(nodeGypBuild.resolve(packageRoot));
  } catch (err) {
    failures.push(`${packageRoot}/build/Release, build/Debug and prebuilds/: ${(err as Error).message.split('\n')[0]}`);
  }
  return { paths, failures };
}

/**
 * The addon: PAGEFUSE_ADDON if set; else build/Release, which exists only in a development checkout or
 * after a build from source (the install script builds only when no prebuild loads); else the prebuild
 * for this platform, arch and libc under prebuilds/.
 */
function load(): NativeAddon {
  const require = createRequire(import.meta.url);
  const { paths, failures } = candidates();
  for (const path of paths) {
    try {
      return require(path) as NativeAddon;
    } catch (err) {
      failures.push(`${path}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  // One line, so the CLI's one-line error keeps the paths tried.
  throw new Error(`pagefuse: the native addon could not be loaded (tried ${failures.join('; ')}); ${SOURCE_BUILD}, or in a checkout 'npm install'`);
}

let addon: NativeAddon | undefined;

/**
 * The addon, loaded on first use: importing a module that only needs counters, knobs or policies never
 * loads (or needs) the binary. A failed load throws at that first use, and again at every later one.
 */
export const native: NativeAddon = new Proxy({} as NativeAddon, {
  get(_target, key) {
    addon ??= load();
    return Reflect.get(addon, key);
  },
});

/** Path of the pagefuse-exec helper: the one built or prebuilt next to the addon (found, not loaded). */
export const execHelperPath = join(dirname(candidates().paths[0] ?? join(packageRoot, 'build', 'Release', 'pagefuse.node')), 'pagefuse-exec');
export { packageRoot };
