// The one guest layout every generated workload uses, in a child process (child.ts, Workload.start) or
// in this process (guestRegions, for the benches that compare a scan of their own memory with ksmd):
// a common image (then shared layers), zero pages, pages of its own, then volatile pages. Which pages
// are equal is known exactly from the keys (content.ts), so tests and benches know what can merge.
import { randomInt } from 'node:crypto';
import { PAGE_SIZE, Region } from '../region.js';
import { KIND_IMAGE, KIND_UNIQUE, KIND_VOLATILE, mix, writePage } from './content.js';

export interface GuestLayout {
  imagePages: number;
  layers?: { seed: number; pages: number }[];
  zeroPages: number;
  uniquePages: number;
  volatilePages: number;
  imageSeed: number;
  /** Seed of this guest's own (unique and volatile) pages. */
  seed: number;
}

/** Pages a guest of this layout holds. */
export function layoutPages(l: GuestLayout): number {
  return l.imagePages + (l.layers ?? []).reduce((a, x) => a + x.pages, 0) + l.zeroPages + l.uniquePages + l.volatilePages;
}

/**
 * Writes the layout into `words` (the guest's memory as 32-bit words, at least layoutPages pages):
 * every page is written, zero pages included, so all are resident. Volatile pages get generation 1.
 * Returns the function that rewrites the volatile pages with the next generation.
 */
export function fillGuest(words: Uint32Array, l: GuestLayout): () => void {
  const per = PAGE_SIZE / 4;
  const page = (i: number): Uint32Array => words.subarray(i * per, (i + 1) * per);
  let at = 0;
  for (let i = 0; i < l.imagePages; i++) writePage(page(at++), KIND_IMAGE, l.imageSeed, i);
  for (const layer of l.layers ?? []) for (let i = 0; i < layer.pages; i++) writePage(page(at++), KIND_IMAGE, layer.seed, i);
  for (let i = 0; i < l.zeroPages; i++) page(at++).fill(0);
  for (let i = 0; i < l.uniquePages; i++) writePage(page(at++), KIND_UNIQUE, l.seed, i);
  const volatileStart = at;
  let generation = 0;
  const rewrite = (): void => {
    generation++;
    for (let i = 0; i < l.volatilePages; i++) writePage(page(volatileStart + i), KIND_VOLATILE, l.seed, generation * 1e6 + i);
  };
  rewrite();
  return rewrite;
}

/** Sizes of in-process guests in MiB: the same image in each, then unique pages, then zero pages. */
export interface GuestSizes {
  guests: number;
  commonMiB: number;
  uniqueMiB: number;
  zeroMiB: number;
}

/** The layout of the i-th (0-based) of a set of guests with these sizes (Workload's seeds: image `seed`, own mix(seed, i + 1)). */
export function guestLayout(sizes: Omit<GuestSizes, 'guests'> & { volatileMiB?: number }, i: number, seed: number): GuestLayout {
  const pages = (mib: number): number => Math.round((mib * 1024 * 1024) / PAGE_SIZE);
  return {
    imagePages: pages(sizes.commonMiB),
    zeroPages: pages(sizes.zeroMiB),
    uniquePages: pages(sizes.uniqueMiB),
    volatilePages: pages(sizes.volatileMiB ?? 0),
    imageSeed: seed,
    seed: mix(seed, i + 1),
  };
}

/**
 * Guests in this process's memory (no THP, not yet mergeable): the caller advises and disposes them.
 * The seed is drawn at random unless given: ksmd merges across processes, so guests whose contents
 * another generated workload on the host also holds (Workload's default seed is 1) would merge with
 * it, and this process's ksm_stat would no longer match a scan of its own memory.
 */
export function guestRegions(sizes: GuestSizes, seed = randomInt(2, 2 ** 31)): Region[] {
  const regions: Region[] = [];
  try {
    for (let g = 0; g < sizes.guests; g++) {
      const layout = guestLayout(sizes, g, seed);
      const r = Region.alloc(Math.max(1, layoutPages(layout)) * PAGE_SIZE, { hugepages: 'never' });
      regions.push(r);
      fillGuest(new Uint32Array(r.buffer), layout);
    }
  } catch (err) {
    for (const r of regions) r.dispose();
    throw err;
  }
  return regions;
}

/**
 * Pages KSM saves once every stable page of `n` guests of this layout has merged, with use_zero_pages=0:
 * (n − 1) copies of the image and layers, and all zero pages but one.
 */
export function achievablePages(l: GuestLayout, n: number): number {
  const image = l.imagePages + (l.layers ?? []).reduce((a, x) => a + x.pages, 0);
  return (n > 1 ? (n - 1) * image : 0) + (n * l.zeroPages > 0 ? n * l.zeroPages - 1 : 0);
}
