// Memory owned by JavaScript: an anonymous private mapping that KSM can merge.
import { native, type RegionHandle } from './native.js';
import { PagefuseError, invalidArgType, invalidNumber, invalidArgValue, outOfRange, invalidUse } from './errors.js';
import { assertNodes } from './numa/topology.js';

import { PAGE_SIZE } from './host/page-size.js';

export { PAGE_SIZE };

export type Advice = 'mergeable' | 'unmergeable' | 'hugepage' | 'nohugepage' | 'dontneed' | 'cold' | 'pageout';
export type HugePagesMode = 'default' | 'never' | 'always';
export type MemPolicy = 'bind' | 'preferred' | 'interleave';

export interface RegionOptions {
  /** madvise(MADV_MERGEABLE) the whole region right after mapping it. */
  mergeable?: boolean;
  /** Transparent huge pages: leave to the system, forbid (MADV_NOHUGEPAGE) or ask for them (MADV_HUGEPAGE). */
  hugepages?: HugePagesMode;
  /** NUMA node (or nodes) to place the memory on. */
  node?: number | readonly number[];
  policy?: MemPolicy;
}

export interface RangeOptions {
  offset?: number;
  length?: number;
}

export interface BindOptions extends RangeOptions {
  /** Default 'bind'. */
  policy?: MemPolicy;
  /** Migrate the pages already present too (MPOL_MF_MOVE). */
  move?: boolean;
}

/** Where a region's pages are. */
export interface PageNodes {
  /** Resident pages per node id (nodes holding none are left out). */
  nodes: Record<number, number>;
  /** Pages never touched (or swapped out). */
  notPresent: number;
  /**
   * Pages only read so far and mapped to the kernel's shared zero page, which belongs to no node's count.
   * 0 on kernels that give a read fault a fresh page of its own (docs/kernel.md): those count on their node.
   */
  zeroPage: number;
}

/** The kernel's MPOL_* modes. */
const POLICY_MODES: Record<MemPolicy, number> = { preferred: 1, bind: 2, interleave: 3 };

/** A node id or a non-empty array of them, as a list; `what` and `name` say whose argument it is. */
function nodeList(what: string, name: string, nodes: unknown): readonly number[] {
  const list = typeof nodes === 'number' ? [nodes] : nodes;
  if (!Array.isArray(list) || list.length === 0) throw invalidArgType(`${what}: ${name} must be a node id or a non-empty array of them`, nodes);
  return list as readonly number[];
}

function checkPolicy(what: string, policy: unknown): asserts policy is MemPolicy {
  if (typeof policy !== 'string' || !Object.hasOwn(POLICY_MODES, policy)) throw invalidArgValue(`${what}: policy must be 'bind', 'preferred' or 'interleave'`, policy);
}

const ADVICE_CODES: Record<Advice, number> = {
  mergeable: 0,
  unmergeable: 1,
  hugepage: 2,
  nohugepage: 3,
  dontneed: 4,
  cold: 5,
  pageout: 6,
};
const HUGE_CODES: Record<HugePagesMode, number> = { default: 0, never: 1, always: 2 };

/** The x86-64 user address space (47 bits): no mapping can be larger. */
const MAX_REGION_BYTES = 2 ** 47;

/**
 * The Region behind a buffer handed out by `region.buffer`, so scans can pin it. Held weakly: the
 * native handle keeps its buffer alive, so a strong value here would keep every Region forever.
 */
const regionOfBuffer = new WeakMap<ArrayBuffer, WeakRef<Region>>();

/** @internal */
export function regionOf(buffer: ArrayBuffer): Region | undefined {
  return regionOfBuffer.get(buffer)?.deref();
}

export function roundUpToPage(bytes: number): number {
  return Math.ceil(bytes / PAGE_SIZE) * PAGE_SIZE;
}

export class Region implements Disposable {
  /** @internal */
  readonly handle: RegionHandle;

  private constructor(handle: RegionHandle) {
    this.handle = handle;
  }

  /** Maps `bytes` (rounded up to whole pages) of zero-filled anonymous memory. */
  static alloc(bytes: number, options: RegionOptions = {}): Region {
    if (typeof bytes !== 'number') {
      throw invalidArgType('Region.alloc: bytes must be a number', bytes);
    }
    if (!Number.isInteger(bytes) || bytes <= 0 || bytes > MAX_REGION_BYTES) {
      throw invalidNumber(`Region.alloc: bytes must be a whole number from 1 to ${MAX_REGION_BYTES} (the address space)`, bytes);
    }
    if (options === null || typeof options !== 'object') {
      throw invalidArgType(`Region.alloc: options must be an object`, options);
    }
    const huge = options.hugepages ?? 'default';
    if (!Object.hasOwn(HUGE_CODES, huge)) {
      throw invalidArgValue(`Region.alloc: hugepages must be 'default', 'never' or 'always'`, huge);
    }
    if (options.mergeable !== undefined && typeof options.mergeable !== 'boolean') {
      throw invalidArgType(`Region.alloc: mergeable must be a boolean`, options.mergeable);
    }
    // Checked here, before anything is mapped, and in alloc's words (bind() checks them again).
    if (options.node !== undefined) assertNodes('Region.alloc', nodeList('Region.alloc', 'node', options.node), { memory: true });
    if (options.policy !== undefined) checkPolicy('Region.alloc', options.policy);
    const region = new Region(new native.RegionHandle(roundUpToPage(bytes), HUGE_CODES[huge]));
    regionOfBuffer.set(region.handle.buffer, new WeakRef(region));
    try {
      if (options.node !== undefined) {
        region.bind(options.node, options.policy === undefined ? {} : { policy: options.policy });
      } else if (options.policy !== undefined) {
        throw invalidUse('Region.alloc: policy needs node');
      }
      if (options.mergeable) region.advise('mergeable');
    } catch (err) {
      region.dispose();
      throw err;
    }
    return region;
  }

  get byteLength(): number {
    return this.handle.byteLength;
  }

  /** An external ArrayBuffer over the mapping; detached (length 0) once the region is disposed. */
  get buffer(): ArrayBuffer {
    this.assertLive('buffer');
    return this.handle.buffer;
  }

  get disposed(): boolean {
    return this.handle.disposed;
  }

  /** madvise() over the whole region, or a page-aligned part of it. */
  advise(advice: Advice, range: RangeOptions = {}): void {
    this.assertLive('advise');
    if (typeof advice !== 'string' || !Object.hasOwn(ADVICE_CODES, advice)) {
      throw invalidArgValue(`Region.advise: advice must be one of ${Object.keys(ADVICE_CODES).join(', ')}`, advice);
    }
    const { offset, length } = this.checkRange('advise', range);
    this.handle.advise(offset, length, ADVICE_CODES[advice]);
  }

  /**
   * Sets the NUMA memory policy of the region (mbind): 'bind' allocates only on `nodes`, 'preferred'
   * on its one node first, 'interleave' round-robin over them. The policy applies to pages touched
   * from now on; `move` also migrates the pages already present (MPOL_MF_MOVE).
   */
  bind(nodes: number | readonly number[], options: BindOptions = {}): void {
    this.assertLive('bind');
    if (options === null || typeof options !== 'object') {
      throw invalidArgType(`Region.bind: options must be an object`, options);
    }
    const list = nodeList('Region.bind', 'nodes', nodes);
    const policy = options.policy ?? 'bind';
    checkPolicy('Region.bind', policy);
    if (policy === 'preferred' && list.length !== 1) {
      throw invalidArgValue(`Region.bind: policy 'preferred' takes one node, got ${list.length}`);
    }
    if (options.move !== undefined && typeof options.move !== 'boolean') {
      throw invalidArgType(`Region.bind: move must be a boolean`, options.move);
    }
    const { offset, length } = this.checkRange('bind', options);
    assertNodes('Region.bind', list, { memory: true });
    native.regionBind(this.handle, offset, length, POLICY_MODES[policy], [...list], options.move ?? false);
  }

  /** Which NUMA node holds each resident page of the region (move_pages with no target nodes). */
  pageNodes(range: RangeOptions = {}): PageNodes {
    this.assertLive('pageNodes');
    const { offset, length } = this.checkRange('pageNodes', range);
    const raw = native.regionPageNodes(this.handle, offset, length);
    const nodes: Record<number, number> = {};
    raw.perNode.forEach((count, node) => {
      if (count > 0) nodes[node] = count;
    });
    return { nodes, notPresent: raw.notPresent, zeroPage: raw.zeroPage };
  }

  /** Unmaps the memory now. Views over `buffer` become detached; calling twice is harmless. */
  dispose(): void {
    this.handle.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** @internal */
  assertLive(what: string): void {
    if (this.handle.disposed) {
      throw new PagefuseError('ERR_REGION_DISPOSED', `Region.${what}: the region was disposed; allocate a new one`);
    }
  }

  /** @internal Validates a page-aligned sub-range and fills in the defaults (the whole region). */
  checkRange(what: string, range: RangeOptions): { offset: number; length: number } {
    if (range === null || typeof range !== 'object') {
      throw invalidArgType(`Region.${what}: range must be an object`, range);
    }
    const size = this.handle.byteLength;
    const offset = range.offset ?? 0;
    const length = range.length ?? size - offset;
    for (const [name, v] of [['offset', offset], ['length', length]] as const) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
        throw invalidNumber(`Region.${what}: ${name} must be a whole number of bytes`, v);
      }
      if (v % PAGE_SIZE !== 0) {
        throw outOfRange(`Region.${what}: ${name} ${v} is not a multiple of the page size (${PAGE_SIZE})`);
      }
    }
    if (length === 0 || offset + length > size) {
      throw outOfRange(
        `Region.${what}: range offset ${offset} length ${length} is outside the region of ${size} bytes`,
      );
    }
    return { offset, length };
  }
}
