// Where KSM's pages are, node by node: a page's frame number (from /proc/<pid>/pagemap) says which
// memory block holds it, and sysfs says which node each memory block belongs to; /proc/kpageflags
// says whether the frame is a KSM page. Needs root: the kernel hides frame numbers and page flags
// from everyone else.
import { open, readdir, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { PAGE_SIZE } from '../host/page-size.js';
import { presentSpans, readPageEntries } from '../host/page-entries.js';
import { parseSmaps } from '../ksm/footprint.js';
import { explain, isSystemError, PagefuseError, invalidArgType, invalidNumber, throwIfAborted } from '../errors.js';

export interface KsmNodeOptions {
  /** Root of procfs (default '/proc'). */
  procRoot?: string;
  /** Root of sysfs (default '/sys'). */
  sysfsRoot?: string;
  /** Stops the reading between chunks with an AbortError. */
  signal?: AbortSignal;
}

export interface NodeMergingPages {
  node: number;
  mergingPages: number;
}

export interface ProcessMergingByNode {
  pid: number;
  /** Pages of the process's mergeable ranges that are mapped to KSM pages (as ksm_merging_pages counts them). */
  mergingPages: number;
  /** One entry per node of the host, ascending id. */
  nodes: NodeMergingPages[];
  /** Merged pages whose frame lies in no node's memory blocks (should be 0). */
  unknownNodePages: number;
}

export interface NodeKsmPages {
  node: number;
  /** KSM pages (each shared by several mappings) held in this node's memory. */
  ksmPages: number;
}

const KPF_KSM_BIT = 21;
/**
 * Frames that are not user pages but still carry the KSM bit in /proc/kpageflags: slab pages do here
 * (6.18; their mapping word is reused), as would other kernel page types. KPF_SLAB 7, KPF_BUDDY 10,
 * KPF_OFFLINE 23, KPF_PGTABLE 26.
 */
const NOT_USER_PAGE = (1 << 7) | (1 << 10) | (1 << 23) | (1 << 26);

/** Whether the low word of a kpageflags entry describes a KSM page. */
function isKsm(low: number): boolean {
  return ((low >>> KPF_KSM_BIT) & 1) === 1 && (low & NOT_USER_PAGE) === 0;
}
/** Entries read per pagemap or kpageflags read (8 bytes each). */
const CHUNK_ENTRIES = 64 * 1024;

interface BlockMap {
  blockPages: number;
  /** Memory block index → node id. */
  nodeOfBlock: Map<number, number>;
  nodes: number[];
}

function numbered(names: string[], prefix: string): number[] {
  const re = new RegExp(`^${prefix}(\\d+)$`);
  return names.flatMap((n) => {
    const m = re.exec(n);
    return m ? [Number(m[1])] : [];
  });
}

async function memoryBlocks(sysfsRoot: string): Promise<BlockMap> {
  const sizePath = join(sysfsRoot, 'devices/system/memory/block_size_bytes');
  let blockBytes: number;
  try {
    blockBytes = Number.parseInt((await readFile(sizePath, 'utf8')).trim(), 16);
  } catch (err) {
    if (isSystemError(err, 'ENOENT')) {
      throw explain(err, `${sizePath} is missing: this kernel does not describe its memory blocks (CONFIG_MEMORY_HOTPLUG), so pages cannot be placed on nodes`, 'ENOTSUP');
    }
    throw err;
  }
  if (!Number.isInteger(blockBytes) || blockBytes < PAGE_SIZE || blockBytes % PAGE_SIZE !== 0) {
    throw new PagefuseError('EINVAL', `${sizePath}: not a memory block size: ${blockBytes}`);
  }
  const nodeDir = join(sysfsRoot, 'devices/system/node');
  const nodes = numbered(await readdir(nodeDir), 'node').sort((a, b) => a - b);
  const nodeOfBlock = new Map<number, number>();
  for (const node of nodes) {
    for (const block of numbered(await readdir(join(nodeDir, `node${node}`)), 'memory')) nodeOfBlock.set(block, node);
  }
  return { blockPages: blockBytes / PAGE_SIZE, nodeOfBlock, nodes };
}

async function openRoot(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (err) {
    if (isSystemError(err, 'EACCES') || isSystemError(err, 'EPERM')) {
      throw explain(err, `needs root: reading ${path} (page frame numbers and flags are hidden from other users)`);
    }
    throw err;
  }
}

/** The [start, end) address ranges of the VMAs KSM may merge (smaps VmFlags "mg"), by the one smaps parser. */
export function mergeableRanges(smaps: string): [number, number][] {
  return parseSmaps(smaps).mergeable;
}

/** The present pages of a process's mergeable ranges: their addresses and page frame numbers. */
export interface MergeablePages {
  addresses: number[];
  frames: number[];
}

async function presentPages(pagemapPath: string, ranges: [number, number][], signal?: AbortSignal): Promise<MergeablePages> {
  const fh = await openRoot(pagemapPath);
  const pages: MergeablePages = { addresses: [], frames: [] };
  let hidden = false;
  try {
    for await (const [start, end] of presentSpans(fh, ranges)) {
      const first = start / PAGE_SIZE;
      const count = (end - start) / PAGE_SIZE;
      for (let done = 0; done < count; done += CHUNK_ENTRIES) {
        throwIfAborted(signal);
        const words = await readPageEntries(fh, first + done, Math.min(CHUNK_ENTRIES, count - done));
        for (let i = 0; i < words.length; i += 2) {
          const high = words[i + 1];
          if ((high & 0x80000000) === 0) continue; // bit 63: present
          const pfn = (high & 0x7fffff) * 2 ** 32 + words[i]; // bits 0-54
          if (pfn === 0) {
            hidden = true;
            continue;
          }
          pages.addresses.push((first + done + i / 2) * PAGE_SIZE);
          pages.frames.push(pfn);
        }
      }
    }
  } finally {
    await fh.close();
  }
  if (hidden && pages.frames.length === 0) {
    throw new PagefuseError('EPERM', `needs root (CAP_SYS_ADMIN): ${pagemapPath} shows page frame numbers only to root`);
  }
  return pages;
}

/** Frames grouped by the window of FLAG_WINDOW entries of /proc/kpageflags that holds them. */
const FLAG_WINDOW = 4096;

/**
 * Which of `frames` /proc/kpageflags marks as KSM pages. Frames are grouped per window in one pass
 * (no sort of them all: that held the event loop for tens of ms with a few VMs), and each window is
 * read only from its first frame to its last.
 */
export async function ksmFrames(frames: readonly number[], options: KsmNodeOptions = {}): Promise<Set<number>> {
  const { procRoot } = roots(options);
  const { signal } = options;
  const windows = new Map<number, number[]>();
  for (const pfn of frames) {
    const key = Math.floor(pfn / FLAG_WINDOW);
    const list = windows.get(key);
    if (list === undefined) windows.set(key, [pfn]);
    else list.push(pfn);
  }
  const ksm = new Set<number>();
  const fh = await openRoot(join(procRoot, 'kpageflags'));
  try {
    for (const key of [...windows.keys()].sort((a, b) => a - b)) {
      throwIfAborted(signal);
      const list = windows.get(key)!;
      let lo = list[0];
      let hi = list[0];
      for (const pfn of list) {
        if (pfn < lo) lo = pfn;
        if (pfn > hi) hi = pfn;
      }
      const words = await readPageEntries(fh, lo, hi - lo + 1);
      for (const pfn of list) {
        const i = (pfn - lo) * 2;
        if (i < words.length && isKsm(words[i])) ksm.add(pfn);
      }
    }
  } finally {
    await fh.close();
  }
  return ksm;
}

/** The present pages of the ranges of `pid` that KSM may merge (smaps VmFlags "mg"). */
export async function mergeablePages(pid: number | 'self', options: KsmNodeOptions = {}): Promise<MergeablePages> {
  const { procRoot } = roots(options);
  const id = pid === 'self' ? process.pid : pid;
  if (typeof id !== 'number' || !Number.isInteger(id) || id <= 0) {
    throw invalidNumber(`pid must be a positive whole number or 'self'`, pid);
  }
  try {
    const smaps = await readFile(join(procRoot, String(id), 'smaps'), 'utf8');
    return await presentPages(join(procRoot, String(id), 'pagemap'), mergeableRanges(smaps), options.signal);
  } catch (err) {
    if (isSystemError(err, 'ENOENT') || isSystemError(err, 'ESRCH')) {
      throw explain(err, `process ${id} does not exist (or exited while being read)`, 'ESRCH');
    }
    throw err;
  }
}

function roots(options: KsmNodeOptions): { procRoot: string; sysfsRoot: string } {
  if (options === null || typeof options !== 'object') {
    throw invalidArgType(`options must be an object`, options);
  }
  return { procRoot: options.procRoot ?? '/proc', sysfsRoot: options.sysfsRoot ?? '/sys' };
}

/**
 * Merged pages of one process per NUMA node: the present pages of its mergeable ranges that are KSM
 * pages, placed by the node that holds their frame. Summed over nodes this is the process's
 * ksm_merging_pages (read at the same moment).
 */
export async function processMergingByNode(pid: number | 'self', options: KsmNodeOptions = {}): Promise<ProcessMergingByNode> {
  const { sysfsRoot } = roots(options);
  throwIfAborted(options.signal, 'processMergingByNode');
  const blocks = await memoryBlocks(sysfsRoot);
  const pages = await mergeablePages(pid, options);
  const ksm = await ksmFrames(pages.frames, options);
  const perNode = new Map<number, number>(blocks.nodes.map((n) => [n, 0]));
  let unknownNodePages = 0;
  let mergingPages = 0;
  for (const pfn of pages.frames) {
    if (!ksm.has(pfn)) continue;
    mergingPages++;
    const node = blocks.nodeOfBlock.get(Math.floor(pfn / blocks.blockPages));
    if (node === undefined) unknownNodePages++;
    else perNode.set(node, (perNode.get(node) ?? 0) + 1);
  }
  return {
    pid: pid === 'self' ? process.pid : pid,
    mergingPages,
    nodes: [...perNode].map(([node, count]) => ({ node, mergingPages: count })),
    unknownNodePages,
  };
}

/**
 * Every KSM page of the host per NUMA node, from /proc/kpageflags over each node's memory blocks.
 * Their sum is pages_shared; with merge_across_nodes=1 a node may hold pages merged from others.
 */
export async function ksmPagesByNode(options: KsmNodeOptions = {}): Promise<NodeKsmPages[]> {
  const { procRoot, sysfsRoot } = roots(options);
  const blocks = await memoryBlocks(sysfsRoot);
  const counts = new Map<number, number>(blocks.nodes.map((n) => [n, 0]));
  const fh = await openRoot(join(procRoot, 'kpageflags'));
  try {
    for (const [block, node] of [...blocks.nodeOfBlock].sort((a, b) => a[0] - b[0])) {
      for (let done = 0; done < blocks.blockPages; done += CHUNK_ENTRIES) {
        const words = await readPageEntries(fh, block * blocks.blockPages + done, Math.min(CHUNK_ENTRIES, blocks.blockPages - done));
        let ksm = 0;
        for (let i = 0; i < words.length; i += 2) if (isKsm(words[i])) ksm++;
        counts.set(node, (counts.get(node) ?? 0) + ksm);
      }
    }
  } finally {
    await fh.close();
  }
  return [...counts].map(([node, ksmPages]) => ({ node, ksmPages }));
}
