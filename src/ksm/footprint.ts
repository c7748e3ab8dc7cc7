// What a process holds of its merged memory, for the savings model (docs/savings.md): its PSS (the
// cost the process is charged), and — as root, from pagemap, kpageflags and kpagecount — the pages
// of its mergeable areas mapped to the kernel's zero page and its exact share of pages_sharing.
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { PAGE_SIZE } from '../host/page-size.js';
import { presentSpans, readPageEntries } from '../host/page-entries.js';

export interface Footprint {
  pid: number;
  /** Proportional set size of the whole process (smaps), in bytes: a page mapped k times counts 1/k. */
  pssBytes: number;
  /**
   * Root only (null otherwise): pages of its mergeable areas mapped to the kernel's 4 KiB zero page,
   * less the ones KSM put there (ksm_zero_pages is subtracted by the caller). When ksmd splits a
   * transparent huge page to merge a subpage, the split maps every zero-filled subpage to the zero
   * page and frees it. A page only ever read, never written, maps it too, though no memory was ever
   * behind it (real guests have thousands: 13240 in three QEMU guests before anything merged), so only
   * zero-page mappings in a 2 MiB chunk whose 512 pages are all present are counted: a split maps every
   * subpage, memory only partly touched leaves pages absent. (Not "a chunk holding a KSM page": a huge
   * page of zeros, split to merge one of them, maps all 512 to the zero page and keeps no KSM page.)
   */
  zeroMappedPages: number | null;
  /**
   * Root only (null otherwise): Σ (k − 1)/k over this process's mappings of KSM pages, k being the
   * page's map count (kpagecount): its exact share of pages_sharing, as PSS credits it.
   */
  sharingWeight: number | null;
}

const KPF_KSM = 1 << 21;
const KPF_THP = 1 << 22;
const KPF_ZERO_PAGE = 1 << 24;
/** 4 KiB pages per 2 MiB (a PMD-sized huge page on x86-64). */
const PAGES_PER_CHUNK = (2 * 1024 * 1024) / PAGE_SIZE;
/** Pagemap entries (8 bytes each) per read. */
const CHUNK = 64 * 1024;
/** Frames closer than this are read in one kpageflags/kpagecount read. */
const GAP = 512;

/**
 * Parses smaps: Σ Pss (kB → bytes), the [start, end) ranges KSM may merge (VmFlags "mg"), and the Pss of
 * those ranges alone (a workload's memory without its runtime's).
 */
export function parseSmaps(text: string): { pssBytes: number; mergeable: [number, number][]; mergeablePssBytes: number } {
  let pssKb = 0;
  let mergeablePssKb = 0;
  let vmaPssKb = 0;
  const mergeable: [number, number][] = [];
  let current: [number, number] | undefined;
  for (const line of text.split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (header) {
      current = [Number.parseInt(header[1], 16), Number.parseInt(header[2], 16)];
      vmaPssKb = 0;
      continue;
    }
    if (line.startsWith('Pss:')) {
      const kb = /^Pss:\s+(\d+) kB/.exec(line);
      if (kb) {
        vmaPssKb = Number(kb[1]);
        pssKb += vmaPssKb;
      }
    } else if (line.startsWith('VmFlags:') && current && line.split(/\s+/).includes('mg')) {
      mergeable.push(current);
      mergeablePssKb += vmaPssKb;
    }
  }
  return { pssBytes: pssKb * 1024, mergeable, mergeablePssBytes: mergeablePssKb * 1024 };
}

/**
 * Frame numbers of the present, not exclusively mapped pages in `ranges` (bit 56 clear: KSM, zero page
 * or fork-shared), with the 2 MiB chunk (virtual address ÷ 2 MiB) each is mapped in.
 */
async function sharedFrames(
  pagemap: FileHandle,
  ranges: [number, number][],
): Promise<{ frames: number[]; chunks: number[]; fullChunks: Set<number>; hidden: boolean }> {
  const frames: number[] = [];
  const chunks: number[] = [];
  const present = new Map<number, number>();
  let hidden = false;
  for await (const [start, end] of presentSpans(pagemap, ranges)) {
    const first = start / PAGE_SIZE;
    const count = (end - start) / PAGE_SIZE;
    for (let done = 0; done < count; done += CHUNK) {
      const w = await readPageEntries(pagemap, first + done, Math.min(CHUNK, count - done));
      for (let i = 0; i < w.length; i += 2) {
        const high = w[i + 1];
        if ((high & 0x80000000) === 0) continue; // bit 63: present
        const chunk = Math.floor((first + done + i / 2) / PAGES_PER_CHUNK);
        present.set(chunk, (present.get(chunk) ?? 0) + 1);
        if ((high & 0x01000000) !== 0) continue; // bit 56: exclusively mapped
        const pfn = (high & 0x7fffff) * 2 ** 32 + w[i];
        if (pfn === 0) hidden = true;
        else {
          frames.push(pfn);
          chunks.push(chunk);
        }
      }
    }
  }
  const fullChunks = new Set([...present].filter(([, n]) => n === PAGES_PER_CHUNK).map(([c]) => c));
  return { frames, chunks, fullChunks, hidden };
}

/** Low words of kpageflags / kpagecount entries, looked up per frame with one read per cluster of frames. */
export class FrameInfo {
  private readonly flags = new Map<number, number>();
  private readonly counts = new Map<number, number>();

  constructor(private readonly procRoot = '/proc') {}

  /** Loads flags (and, for KSM pages, map counts) of `frames` not seen yet. */
  async load(frames: readonly number[]): Promise<void> {
    const todo = Float64Array.from(new Set(frames.filter((f) => !this.flags.has(f)))).sort();
    if (todo.length === 0) return;
    const kpf = await open(join(this.procRoot, 'kpageflags'), 'r');
    try {
      const ksm: number[] = [];
      await clusters(todo, async (first, n, members) => {
        const w = await readPageEntries(kpf, first, n);
        for (const f of members) {
          const low = w[(f - first) * 2] ?? 0;
          this.flags.set(f, low);
          if ((low & KPF_KSM) !== 0) ksm.push(f);
        }
      });
      if (ksm.length === 0) return;
      const kpc = await open(join(this.procRoot, 'kpagecount'), 'r');
      try {
        await clusters(Float64Array.from(ksm), async (first, n, members) => {
          const w = await readPageEntries(kpc, first, n);
          for (const f of members) this.counts.set(f, w[(f - first) * 2] ?? 0);
        });
      } finally {
        await kpc.close();
      }
    } finally {
      await kpf.close();
    }
  }

  flagsOf(frame: number): number {
    return this.flags.get(frame) ?? 0;
  }

  countOf(frame: number): number {
    return this.counts.get(frame) ?? 0;
  }
}

async function clusters(sorted: Float64Array, read: (first: number, n: number, members: number[]) => Promise<void>): Promise<void> {
  for (let i = 0; i < sorted.length; ) {
    const first = sorted[i];
    const members = [first];
    let j = i + 1;
    while (j < sorted.length && sorted[j] - sorted[j - 1] < GAP && sorted[j] - first < CHUNK) members.push(sorted[j++]);
    await read(first, members[members.length - 1] - first + 1, members);
    i = j;
  }
}

/**
 * One process's footprint. `frames` shares lookups across processes of one reading (a KSM page is
 * mapped by several); without root the page-level fields are null. Undefined when the process is gone
 * or not readable.
 */
export async function readFootprint(pid: number, options: { procRoot?: string; frames?: FrameInfo } = {}): Promise<Footprint | undefined> {
  const procRoot = options.procRoot ?? '/proc';
  let smaps: string;
  try {
    smaps = await readFile(join(procRoot, String(pid), 'smaps'), 'utf8');
  } catch {
    return undefined;
  }
  const { pssBytes, mergeable } = parseSmaps(smaps);
  const out: Footprint = { pid, pssBytes, zeroMappedPages: null, sharingWeight: null };
  let pagemap: FileHandle;
  try {
    pagemap = await open(join(procRoot, String(pid), 'pagemap'), 'r');
  } catch {
    return out;
  }
  let frames: number[];
  let chunks: number[];
  let fullChunks: Set<number>;
  try {
    const shared = await sharedFrames(pagemap, mergeable);
    if (shared.hidden && shared.frames.length === 0) return out; // frame numbers are shown to root only
    frames = shared.frames;
    chunks = shared.chunks;
    fullChunks = shared.fullChunks;
  } catch {
    return out;
  } finally {
    await pagemap.close();
  }
  const info = options.frames ?? new FrameInfo(procRoot);
  try {
    await info.load(frames);
  } catch {
    return out;
  }
  let zero = 0;
  let weight = 0;
  for (let i = 0; i < frames.length; i++) {
    const flags = info.flagsOf(frames[i]);
    // Zero-page mappings in split chunks: every page of the 2 MiB present (a split maps all 512). The
    // huge zero page (a read fault in a huge-page area) is left out: it never held memory.
    if ((flags & KPF_ZERO_PAGE) !== 0) {
      if ((flags & KPF_THP) === 0 && fullChunks.has(chunks[i])) zero++;
    } else if ((flags & KPF_KSM) !== 0) {
      const k = info.countOf(frames[i]);
      if (k > 1) weight += (k - 1) / k;
    }
  }
  out.zeroMappedPages = zero;
  out.sharingWeight = weight;
  return out;
}
