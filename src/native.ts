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
  density: {
    address: Float64Array;
    pages: Uint32Array;
    duplicatePages: Uint32Array;
    thpPages: Uint32Array;
    thpZeroPages: Uint32Array;
    thpDuplicatePages: Uint32Array;
  };
  state?: unknown;
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
  /** flock(fd, LOCK_EX | LOCK_NB): true when taken, false when another open file holds it. */
  tryLockExclusive(fd: number): boolean;
  /**
   * Reads a Region's memory or an ArrayBuffer once, with the widest loads of the scan's kernels, on the
   * scan's thread pool: the read baseline for benches. Resolves to (part of) the sum of its words.
   */
  readMemory(target: { kind: 'region'; handle: RegionHandle } | { kind: 'buffer'; buffer: ArrayBuffer }, options: { threads?: number; streams?: 1 | 2 | 4 | 8 }): Promise<number>;
  /** The kernel set scans use, as `isa+hash` ("avx512+vaes", "avx2+xxh3", …). */
  hashKernel: string;
  defaultThreads: number;
}

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

function load(): NativeAddon {
  const require = createRequire(import.meta.url);
  const candidates = [
    process.env.PAGEFUSE_ADDON,
    join(packageRoot, 'build', 'Release', 'pagefuse.node'),
    join(packageRoot, 'build', 'Debug', 'pagefuse.node'),
  ].filter((p): p is string => typeof p === 'string' && p.length > 0);
  const failures: string[] = [];
  for (const path of candidates) {
    try {
      return require(path) as NativeAddon;
    } catch (err) {
      failures.push(`${path}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  throw new Error(
    `pagefuse: the native addon could not be loaded; run 'npm install' (or 'npm run build') in ${packageRoot}. Tried:\n  ${failures.join('\n  ')}`,
  );
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

/** Path of the pagefuse-exec helper built next to the addon. */
export const execHelperPath = join(packageRoot, 'build', 'Release', 'pagefuse-exec');
export { packageRoot };
