// scan(): how much KSM would save on a set of memory, before ksmd spends anything on it.
// Pages are hashed natively off the event loop; this file turns targets into native specs and the
// native counts into the estimate, and keeps each target's page checksums for volatility.
import { readFileSync } from 'node:fs';
import { native, type NativeDensity, type NativeScanResult, type NativeScanTargetSpec, type NativeTargetResult } from '../native.js';
import { Region, regionOf } from '../region.js';
import { PagefuseError, abortError, explain, invalidArgType, invalidNumber, invalidArgValue, invalidUse, throwIfAborted } from '../errors.js';
import { DEFAULT_PROC_ROOT, PF_KTHREAD, readCommSync, readProcStatSync } from '../host/procfs.js';
import { sharingShares, totalSavedPages, type SavedPages } from '../ksm/savings.js';
import { processKsm } from '../ksm/process.js';

export type ScanMode = 'exact' | 'fast' | 'sampled';

/** Another process's private anonymous memory. */
export interface ProcessTarget {
  pid: number;
  /** Only mappings ksmd would merge (VmFlags `mg`). Default true. */
  mergeableOnly?: boolean;
  /** A label for reports; defaults to /proc/<pid>/comm. */
  name?: string;
}

export type ScanTarget = Region | ArrayBuffer | ArrayBufferView | ProcessTarget;

export interface ScanProgress {
  bytesDone: number;
  bytesTotal: number;
}

export interface ScanOptions {
  /** exact: every page hashed and byte-compared; fast: a prefilter first; sampled: 1/sampleRate of contents. */
  mode?: ScanMode;
  /** Hashing threads; default: the CPUs of this process, at most 8. */
  threads?: number;
  signal?: AbortSignal;
  onProgress?: (progress: ScanProgress) => void;
  /** Whether ksmd maps zero pages to the zero page (use_zero_pages). Default: the live knob, else false. */
  useZeroPages?: boolean;
  /** A previous result covering the same targets: pages that changed since are volatile and left out. */
  previous?: ScanResult | TotalsScanResult;
  /** sampled mode: contents whose hash is 0 modulo this are kept (a power of two, default 64). */
  sampleRate?: number;
  /** Keep per-page checksums for a later `previous` (4 bytes per page, until the result is collected). Default true. */
  keepState?: boolean;
  /**
   * Count contents per target: what the targets share (`sharing`, each target's `sharedWithOthers`) and
   * the duplicates inside each target (its `duplicatePages`, `uniquePages`). With two targets or more
   * this keeps a bitmask of targets per content, 8 bytes per index slot per 64 targets: at 128 targets
   * it makes a sampled index 2.3 × as large. Default true. false: no bitmask; those figures are null
   * (`TotalsScanResult`), every other figure, the totals included, is the same.
   */
  sharing?: boolean;
  /** A process that no longer exists becomes a vanished target with no pages instead of an ESRCH error. */
  skipMissing?: boolean;
  /** A process this user may not read becomes a denied target with no pages instead of an EPERM error. */
  skipDenied?: boolean;
  /** Root of procfs, for tests. */
  procRoot?: string;
  /** Root of sysfs, for reading use_zero_pages. */
  sysfsRoot?: string;
  /** @internal Tests only: narrows the hash to force collisions the byte compare must catch. */
  hashBits?: number;
}

/** Pages duplicated per 2 MiB chunk of a target, for targeted madvise: the addon's counts and the chunk size. */
export interface DensityMap extends NativeDensity {
  chunkBytes: number;
  /** JSON.stringify() writes the arrays as plain arrays of numbers. */
  toJSON(): DensityMapJSON;
}

/** A DensityMap as JSON: the same fields, plain arrays. */
export type DensityMapJSON = { chunkBytes: number } & { [K in keyof NativeDensity]: number[] };

function densityMap(d: NativeDensity): DensityMap {
  const map = { chunkBytes: CHUNK_BYTES, ...d } as DensityMap;
  Object.defineProperty(map, 'toJSON', {
    value: (): DensityMapJSON => ({
      chunkBytes: CHUNK_BYTES,
      address: [...d.address],
      pages: [...d.pages],
      duplicatePages: [...d.duplicatePages],
      thpPages: [...d.thpPages],
      thpZeroPages: [...d.thpZeroPages],
      thpDuplicatePages: [...d.thpDuplicatePages],
    }),
  });
  return map;
}

export interface TargetScan {
  kind: 'region' | 'buffer' | 'pid';
  pid?: number;
  name?: string;
  /** Pages scanned (resident pages, for a process). */
  pages: number;
  zeroPages: number;
  /** Zero pages inside transparent huge pages: ksmd does not merge them (known as root only). */
  thpZeroPages: number;
  /**
   * Huge pages ksmd will split in its first full scans: those holding a duplicated subpage, and with
   * use_zero_pages those holding a zero subpage (docs/savings.md, "The prediction").
   */
  thpSplitPages: number;
  /** Zero-filled subpages of those huge pages: the split maps them to the shared zero page, freeing them. */
  thpSplitZeroPages: number;
  /**
   * Without use_zero_pages, huge pages whose only merge candidates are zero subpages: ksmd splits them
   * one per full scan (docs/savings.md), so they are not in the estimate.
   */
  thpSlowSplitPages: number;
  /** Zero-filled subpages of those huge pages: freed only as ksmd gets to them, one huge page a scan. */
  thpSlowSplitZeroPages: number;
  /**
   * This target's share of estimatedSavedPages: its own zero pages freed (by KSM or a THP split), and a
   * share of the merged pages in proportion to its merging pages (docs/savings.md); the shares sum to
   * the result's estimatedSavedPages exactly.
   */
  estimatedSavedPages: number;
  /** The share's parts. */
  estimate: SavedPages;
  volatilePages: number;
  /** One per distinct non-zero content: the pages left after merging. */
  uniquePages: number;
  /** Non-zero pages beyond the first copy of each content inside this target. */
  duplicatePages: number;
  /**
   * Its ksm_merging_pages to be: pages whose content occurs twice or more in the scan, plus (without
   * use_zero_pages, when the scan holds two or more) its zero pages, which merge into one KSM page.
   */
  mergingPages: number;
  /** Distinct contents of this target also present in another target. */
  sharedWithOthers: number;
  unreadablePages: number;
  absentPages: number;
  /** Pages mapped to the kernel's zero page (root only; else 0): not read, as they hold no memory. */
  zeroMappedPages: number;
  /**
   * Of those, the ones KSM mapped there (its ksm_zero_pages, at most zeroMappedPages): zero pages already
   * merged, counted in the estimate as KSM zero pages, as merged KSM pages are (a process only).
   */
  ksmZeroMappedPages: number;
  /** Bytes after the last whole page: not scanned, reported so nothing is dropped silently. */
  tailBytes: number;
  /** The process exited during the scan: its counts cover what was read before. */
  vanished: boolean;
  /** skipDenied: the process could not be read, so it has no pages here. */
  denied: boolean;
  /** Whether the previous scan's checksums were used to find volatile pages. */
  volatilityChecked: boolean;
  density: DensityMap;
}

export interface ScanResult {
  mode: ScanMode;
  pages: number;
  zeroPages: number;
  uniquePages: number;
  duplicatePages: number;
  volatilePages: number;
  /**
   * What merging would give back (docs/savings.md): duplicates beyond the first copy and zero pages
   * merged by KSM, plus the zero subpages freed when ksmd splits huge pages. The sum of `estimate`.
   */
  estimatedSavedPages: number;
  estimatedSavedBytes: number;
  /** The estimate's parts, under the savings model's names: predicted pages_sharing, ksm_zero_pages and THP-split zero pages. */
  estimate: SavedPages;
  /** Zero pages inside transparent huge pages (a part of zeroPages). */
  thpZeroPages: number;
  /** Huge pages ksmd is predicted to split in its first full scans. */
  thpSplitPages: number;
  /**
   * Without use_zero_pages, huge pages holding zero subpages and no duplicated subpage: ksmd splits one
   * of them per full scan (the zero page it finds in its unstable tree goes stale when that huge page
   * splits), unless a KSM page of zeros exists first. Not in the estimate; see docs/savings.md.
   */
  thpSlowSplitPages: number;
  /** Zero subpages of those huge pages: what the estimate would gain once ksmd has split them all. */
  thpSlowSplitZeroPages: number;
  /** Whether every target's page flags were readable (root): without them huge pages are not told apart. */
  thpKnown: boolean;
  /** Predicted Σ ksm_merging_pages of the targets once ksmd has converged. */
  mergingPages: number;
  /** Predicted Σ ksm_zero_pages (zero pages count there when useZeroPages), those already mapped included. */
  zeroMergedPages: number;
  /** Σ of the targets' ksmZeroMappedPages: zero pages KSM had already mapped to the zero page. */
  ksmZeroMappedPages: number;
  useZeroPages: boolean;
  bytesPerSecond: number;
  seconds: number;
  threads: number;
  /** Equal hashes with different bytes, caught by the byte compare (exact and fast modes). */
  collisions: number;
  changedDuringScan: number;
  unconfirmedMatches: number;
  indexBytes: number;
  indexBytesPerPage: number;
  hashKernel: string;
  /** sampled mode: the estimate's spread (pages, about three standard deviations). */
  sampling?: { sampleRate: number; sampledPages: number; errorBoundPages: number; confidence: number };
  targets: TargetScan[];
  /** [i][j]: distinct contents present in both targets; [i][i]: duplicate pages inside target i. */
  sharing: number[][];
}

/** A target of a scan made with `sharing: false`: the figures that need contents counted per target are null. */
export type TotalsTargetScan = Omit<TargetScan, 'uniquePages' | 'duplicatePages' | 'sharedWithOthers'> & {
  uniquePages: null;
  duplicatePages: null;
  sharedWithOthers: null;
};

/** The result of a scan made with `sharing: false`: the totals as with it, no sharing matrix. */
export type TotalsScanResult = Omit<ScanResult, 'targets' | 'sharing'> & { targets: TotalsTargetScan[]; sharing: null };

const CHUNK_BYTES = 2 * 1024 * 1024;

// Page checksums of each scanned target, by target identity; never part of the result's data.
const states = new WeakMap<ScanResult | TotalsScanResult, Map<unknown, unknown>>();

function isProcessTarget(t: unknown): t is ProcessTarget {
  return typeof t === 'object' && t !== null && !(t instanceof Region) && !ArrayBuffer.isView(t) &&
    !(t instanceof ArrayBuffer) && 'pid' in t;
}

interface Prepared {
  spec: NativeScanTargetSpec;
  key: unknown;
  kind: TargetScan['kind'];
  pid?: number;
  name?: string;
}

function prepare(target: ScanTarget, index: number, procRoot: string): Prepared {
  if (target instanceof Region) {
    target.assertLive('scan');
    return { spec: { kind: 'region', handle: target.handle }, key: target, kind: 'region' };
  }
  if (typeof SharedArrayBuffer !== 'undefined' && target instanceof SharedArrayBuffer) {
    throw invalidArgType(`scan: target ${index}: SharedArrayBuffer memory is not supported (it can change under the scan)`, target);
  }
  let buffer: ArrayBufferLike;
  let offset = 0;
  let length: number;
  if (ArrayBuffer.isView(target)) {
    buffer = target.buffer;
    offset = target.byteOffset;
    length = target.byteLength;
  } else if (target instanceof ArrayBuffer) {
    buffer = target;
    length = target.byteLength;
  } else if (isProcessTarget(target)) {
    const { pid } = target;
    if (!Number.isInteger(pid) || pid < 1 || pid > 2 ** 22) throw invalidNumber(`scan: target ${index}: pid must be a process id from 1 to ${2 ** 22}`, pid);
    if (target.mergeableOnly !== undefined && typeof target.mergeableOnly !== 'boolean') {
      throw invalidArgType(`scan: target ${index}: mergeableOnly must be a boolean`, target.mergeableOnly);
    }
    const name = target.name ?? readCommSync(procRoot, pid);
    return {
      spec: { kind: 'pid', pid, mergeableOnly: target.mergeableOnly ?? true },
      key: `pid:${pid}`,
      kind: 'pid',
      pid,
      ...(name === undefined ? {} : { name }),
    };
  } else {
    throw invalidArgType(`scan: target ${index} must be a Region, an ArrayBuffer, a typed array or { pid }`, target);
  }
  if (!(buffer instanceof ArrayBuffer)) {
    throw invalidArgType(`scan: target ${index}: SharedArrayBuffer memory is not supported (it can change under the scan)`, target);
  }
  // A view of a Region's memory pins the Region, so dispose() cannot unmap it mid-scan.
  const region = regionOf(buffer);
  if (region !== undefined) {
    region.assertLive('scan');
    return { spec: { kind: 'region', handle: region.handle, offset, length }, key: target, kind: 'region' };
  }
  return { spec: { kind: 'buffer', buffer, offset, length }, key: target, kind: 'buffer' };
}


/** The live use_zero_pages knob, or false where it cannot be read. */
export function readUseZeroPages(sysfsRoot = '/sys'): boolean {
  try {
    return readFileSync(`${sysfsRoot}/kernel/mm/ksm/use_zero_pages`, 'utf8').trim() === '1';
  } catch {
    return false;
  }
}

function checkOptions(options: ScanOptions): void {
  if (options === null || typeof options !== 'object') throw invalidArgType('scan: options must be an object', options);
  const { mode, threads, sampleRate } = options;
  if (mode !== undefined && mode !== 'exact' && mode !== 'fast' && mode !== 'sampled') {
    throw invalidArgValue(`scan: mode must be 'exact', 'fast' or 'sampled'`, mode);
  }
  if (threads !== undefined && (!Number.isInteger(threads) || threads < 1 || threads > 64)) {
    throw invalidNumber(`scan: threads must be a whole number from 1 to 64`, threads);
  }
  if (sampleRate !== undefined && (!Number.isInteger(sampleRate) || sampleRate < 1 || (sampleRate & (sampleRate - 1)) !== 0)) {
    throw invalidNumber(`scan: sampleRate must be a power of two`, sampleRate);
  }
  if (options.sharing !== undefined && typeof options.sharing !== 'boolean') {
    throw invalidArgType('scan: sharing must be a boolean', options.sharing);
  }
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw invalidArgType('scan: onProgress must be a function', options.onProgress);
  }
}

function nativeError(err: unknown, procRoot: string, signal?: AbortSignal): Error {
  const e = err as Error & { code?: string };
  if (e?.code === 'ECANCELED') return abortError(signal);
  const m = /process (\d+)/.exec(e?.message ?? '');
  const who = m ? `process ${m[1]}` : 'the target';
  if (e?.code === 'ESRCH') {
    // A kernel thread is there, but has no memory of its own to read (as its /proc/PID/mem says by ESRCH).
    const flags = m === null ? undefined : readProcStatSync(procRoot, Number(m[1]))?.flags;
    if (flags !== undefined && (flags & PF_KTHREAD) !== 0) return explain(err, `scan: ${who} is a kernel thread: it has no user memory to scan`);
    return explain(err, `scan: ${who} does not exist (or exited before it could be read)`);
  }
  if (e?.code === 'EPERM') {
    // Root too is refused a process holding capabilities it lacks (without CAP_SYS_PTRACE: a unit's or a
    // container's bounding set), or under yama's ptrace_scope 3: "run as root" would send it in circles.
    const how =
      process.geteuid?.() === 0
        ? 'the kernel refused ptrace access even to root (it needs CAP_SYS_PTRACE over a process with capabilities it lacks; see /proc/sys/kernel/yama/ptrace_scope)'
        : 'run as root or as its owner (ptrace access; see /proc/sys/kernel/yama/ptrace_scope)';
    return explain(err, `scan: not allowed to read the memory of ${who}: ${how}`);
  }
  return e instanceof Error ? e : new PagefuseError('EUNKNOWN', String(err));
}

/**
 * zeroMerging: whether ksmd merges zero pages into one KSM page (use_zero_pages=0, two or more of them);
 * ksmZeroMapped: its pages KSM had already mapped to the zero page (ksmZeroMappedOf).
 */
function targetResult(p: Prepared, t: NativeTargetResult, sampleRate: number, zeroMerging: boolean, ksmZeroMapped: number): TargetScan {
  const scale = sampleRate;
  const duplicatePages = sampleRate > 1 ? (t.sampledPages - t.distinct) * scale : t.indexedPages - t.distinct;
  const out: TargetScan = {
    kind: p.kind,
    pages: t.pages,
    zeroPages: t.zeroPages,
    thpZeroPages: t.thpZeroPages,
    thpSplitPages: 0,
    thpSplitZeroPages: 0,
    thpSlowSplitPages: 0,
    thpSlowSplitZeroPages: 0,
    estimatedSavedPages: 0,
    estimate: { ksmPages: 0, ksmZeroPages: 0, thpSplitZeroPages: 0 },
    volatilePages: t.volatilePages,
    uniquePages: t.indexedPages - duplicatePages,
    duplicatePages,
    mergingPages: t.mergingPages * scale + (zeroMerging ? t.zeroPages - t.thpZeroPages : 0),
    sharedWithOthers: t.sharedWithOthers * scale,
    unreadablePages: t.unreadablePages,
    absentPages: t.absentPages,
    zeroMappedPages: t.zeroMappedPages,
    ksmZeroMappedPages: ksmZeroMapped,
    tailBytes: t.tailBytes,
    vanished: t.vanished,
    denied: t.denied,
    volatilityChecked: t.volatilityChecked,
    density: densityMap(t.density),
  };
  if (p.pid !== undefined) out.pid = p.pid;
  if (p.name !== undefined) out.name = p.name;
  return out;
}

function buildResult(
  r: NativeScanResult,
  prepared: Prepared[],
  mode: ScanMode,
  threads: number,
  useZeroPages: boolean,
  sampleRate: number,
  ksmZeroMapped: readonly number[],
): ScanResult {
  const M = mode === 'sampled' ? sampleRate : 1;
  const sum = (f: (t: NativeTargetResult) => number): number => r.targets.reduce((a, t) => a + f(t), 0);
  const pages = sum((t) => t.pages);
  const zeroPages = sum((t) => t.zeroPages);
  const volatilePages = sum((t) => t.volatilePages);
  const indexed = sum((t) => t.indexedPages);
  const duplicatePages = M > 1 ? (r.sampledPages - r.distinct) * M : indexed - r.distinct;
  // Zero pages inside huge pages are not merged by ksmd: they are freed when ksmd splits their huge
  // page to merge a neighbour (the split maps zero-filled subpages to the shared zero page). ksmd
  // splits a huge page when it tries to merge any subpage of it: a duplicate, or a zero page that has a
  // match. With use_zero_pages that match is the zero page itself, and every such huge page splits in
  // one scan. Without, it is another zero page, found in the unstable tree or (once two zero pages
  // outside huge pages have merged) the stable tree; but the split maps the tried zero subpage to the
  // zero page, so a huge page's zero subpage never becomes a KSM page, and the unstable tree's zero entry
  // goes stale when its own huge page splits, which ends every later zero page's search that scan
  // (unstable_tree_search_insert gives up on a node it cannot map). So ksmd splits huge pages holding only
  // zero subpages and unique data one per full scan (measured: docs/savings.md); they are kept apart.
  const thpZeroPages = sum((t) => t.thpZeroPages);
  const ksmZero = zeroPages - thpZeroPages;
  const zeroMatches = useZeroPages || zeroPages >= 2;
  // Without use_zero_pages the zero pages merge into one KSM page: each counts in ksm_merging_pages.
  const zeroMerging = !useZeroPages && ksmZero >= 2;
  // Zero pages KSM already mapped to the zero page were not read (zeroMappedPages): counted back in, as
  // ksm_stat counts them, whatever use_zero_pages is now.
  const targets = r.targets.map((t, i) => targetResult(prepared[i], t, M, zeroMerging, ksmZeroMapped[i] ?? 0));
  for (let i = 0; i < targets.length; i++) {
    const d = r.targets[i].density;
    for (let c = 0; c < d.address.length; c++) {
      if (d.thpPages[c] === 0) continue;
      if (d.thpDuplicatePages[c] > 0 || (d.thpZeroPages[c] > 0 && useZeroPages)) {
        targets[i].thpSplitPages++;
        targets[i].thpSplitZeroPages += d.thpZeroPages[c];
      } else if (d.thpZeroPages[c] > 0 && zeroMatches) {
        targets[i].thpSlowSplitPages++;
        targets[i].thpSlowSplitZeroPages += d.thpZeroPages[c];
      }
    }
  }
  const ksmZeroMappedPages = targets.reduce((a, t) => a + t.ksmZeroMappedPages, 0);
  const estimate: SavedPages = {
    ksmPages: duplicatePages + (zeroMerging ? ksmZero - 1 : 0),
    ksmZeroPages: (useZeroPages ? ksmZero : 0) + ksmZeroMappedPages,
    thpSplitZeroPages: targets.reduce((a, t) => a + t.thpSplitZeroPages, 0),
  };
  // Each target's share: its own zero pages, and of the merged pages in proportion to its merging pages.
  const shares = sharingShares(estimate.ksmPages, targets.map((t) => t.mergingPages));
  targets.forEach((t, i) => {
    t.estimate = {
      ksmPages: shares[i],
      ksmZeroPages: (useZeroPages ? r.targets[i].zeroPages - r.targets[i].thpZeroPages : 0) + t.ksmZeroMappedPages,
      thpSplitZeroPages: t.thpSplitZeroPages,
    };
    t.estimatedSavedPages = totalSavedPages(t.estimate);
  });
  const estimatedSavedPages = totalSavedPages(estimate);
  const result: ScanResult = {
    mode,
    pages,
    zeroPages,
    uniquePages: indexed - duplicatePages,
    duplicatePages,
    volatilePages,
    estimatedSavedPages,
    estimatedSavedBytes: estimatedSavedPages * r.pageSize,
    estimate,
    thpZeroPages,
    thpSplitPages: targets.reduce((a, t) => a + t.thpSplitPages, 0),
    thpSlowSplitPages: targets.reduce((a, t) => a + t.thpSlowSplitPages, 0),
    thpSlowSplitZeroPages: targets.reduce((a, t) => a + t.thpSlowSplitZeroPages, 0),
    thpKnown: r.targets.every((t) => t.flagsKnown || t.pages === 0),
    mergingPages: targets.reduce((a, t) => a + t.mergingPages, 0),
    zeroMergedPages: (useZeroPages ? ksmZero : 0) + ksmZeroMappedPages,
    ksmZeroMappedPages,
    useZeroPages,
    bytesPerSecond: r.seconds > 0 ? r.bytesScanned / r.seconds : 0,
    seconds: r.seconds,
    threads,
    collisions: r.collisions,
    changedDuringScan: r.changedDuringScan,
    unconfirmedMatches: r.unconfirmed,
    indexBytes: r.indexBytes,
    indexBytesPerPage: pages > 0 ? r.indexBytes / pages : 0,
    hashKernel: r.kernel,
    targets,
    sharing: r.sharing.map((row, i) => row.map((v, j) => (i === j ? targets[i].duplicatePages : v * M))),
  };
  if (M > 1) {
    // Each content is in the sample with probability 1/M, independently (its hash decides), so the
    // estimate M·Σ extra copies has variance (M−1)·Σ x²; M·Σ_sample x² estimates Σ x². Three standard
    // deviations, and never less than one missed pair.
    const variance = (M - 1) * M * Math.max(r.sumSquares, 1);
    result.sampling = {
      sampleRate: M,
      sampledPages: r.sampledPages,
      errorBoundPages: Math.ceil(3 * Math.sqrt(variance)),
      confidence: 0.997,
    };
  }
  return result;
}

/** Without the per-target bitmask (`sharing: false`): the totals, and no figures that need contents counted per target. */
function totalsOnly(r: ScanResult): TotalsScanResult {
  return {
    ...r,
    targets: r.targets.map((t) => ({ ...t, uniquePages: null, duplicatePages: null, sharedWithOthers: null })),
    sharing: null,
  };
}

/** Hashes the pages of one or more targets into one index and estimates what KSM would save. */
export function scan(targetOrTargets: ScanTarget | readonly ScanTarget[], options: ScanOptions & { sharing: false }): Promise<TotalsScanResult>;
export function scan(targetOrTargets: ScanTarget | readonly ScanTarget[], options?: ScanOptions & { sharing?: true }): Promise<ScanResult>;
export function scan(targetOrTargets: ScanTarget | readonly ScanTarget[], options?: ScanOptions): Promise<ScanResult | TotalsScanResult>;
export async function scan(targetOrTargets: ScanTarget | readonly ScanTarget[], options: ScanOptions = {}): Promise<ScanResult | TotalsScanResult> {
  checkOptions(options);
  const list: readonly ScanTarget[] = Array.isArray(targetOrTargets) ? targetOrTargets : [targetOrTargets as ScanTarget];
  if (list.length === 0) throw invalidUse('scan: no targets');
  const { signal } = options;
  throwIfAborted(signal, 'scan');
  const mode = options.mode ?? 'exact';
  const threads = options.threads ?? native.defaultThreads;
  const sampleRate = options.sampleRate ?? 64;
  const prepared = list.map((t, i) => prepare(t, i, options.procRoot ?? DEFAULT_PROC_ROOT));
  const previous = options.previous === undefined ? undefined : states.get(options.previous);
  if (options.previous !== undefined && previous === undefined) {
    throw invalidUse('scan: previous must be a result returned by scan() in this process');
  }
  for (const p of prepared) {
    const state = previous?.get(p.key);
    if (state !== undefined) p.spec.previous = state;
  }
  const useZeroPages = options.useZeroPages ?? readUseZeroPages(options.sysfsRoot);
  const onProgress = options.onProgress;
  // An exception in onProgress stops the scan and becomes its rejection, as it would in a JS loop.
  let progressFailure: { error: unknown } | undefined;
  const handle = native.startScan(
    prepared.map((p) => p.spec),
    {
      mode,
      threads,
      sampleRate,
      ...(options.hashBits === undefined ? {} : { hashBits: options.hashBits }),
      ...(options.procRoot === undefined ? {} : { procRoot: options.procRoot }),
      ...(options.skipMissing === undefined ? {} : { skipMissing: options.skipMissing }),
      ...(options.skipDenied === undefined ? {} : { skipDenied: options.skipDenied }),
      ...(options.keepState === undefined ? {} : { keepState: options.keepState }),
      ...(options.sharing === undefined ? {} : { sharing: options.sharing }),
    },
    onProgress === undefined
      ? undefined
      : (bytesDone, bytesTotal) => {
          if (progressFailure !== undefined) return;
          try {
            onProgress({ bytesDone, bytesTotal });
          } catch (error) {
            progressFailure = { error };
            handle.cancel();
          }
        },
  );
  const onAbort = (): void => handle.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  let raw: NativeScanResult;
  try {
    raw = await handle.promise;
  } catch (err) {
    throw progressFailure === undefined ? nativeError(err, options.procRoot ?? DEFAULT_PROC_ROOT, signal) : progressFailure.error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  if (progressFailure !== undefined) throw progressFailure.error;
  if (signal?.aborted) throw abortError(signal);
  const ksmZeroMapped = await Promise.all(raw.targets.map((t, i) => ksmZeroMappedOf(prepared[i].pid, t.zeroMappedPages, options.procRoot)));
  const full = buildResult(raw, prepared, mode, threads, useZeroPages, sampleRate, ksmZeroMapped);
  const result = options.sharing === false ? totalsOnly(full) : full;
  const kept = new Map<unknown, unknown>();
  raw.targets.forEach((t, i) => {
    if (t.state !== undefined) kept.set(prepared[i].key, t.state);
  });
  states.set(result, kept);
  return result;
}

/**
 * Of a process's pages mapped to the zero page, those KSM mapped there: its ksm_zero_pages, read after the
 * scan, at most the scan's count (the rest were never written). 0 for memory, and when unreadable (exited).
 */
async function ksmZeroMappedOf(pid: number | undefined, zeroMappedPages: number, procRoot: string | undefined): Promise<number> {
  if (pid === undefined || zeroMappedPages <= 0) return 0;
  try {
    return Math.min(zeroMappedPages, (await processKsm(pid, procRoot === undefined ? {} : { procRoot })).zeroPages);
  } catch {
    return 0;
  }
}
