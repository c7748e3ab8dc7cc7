// Zero-only mode for memory pagefuse owns: give entirely-zero pages back to the kernel, without turning
// KSM content merging on. Reads then see zeros again: the shared zero page, or a fresh page on kernels
// that allocate on read faults (docs/kernel.md).
import { native } from '../native.js';
import { throwIfAborted, invalidNumber } from '../errors.js';
import type { Region } from '../region.js';
import { PAGE_SIZE } from '../region.js';

export interface ZeroReclaimResult {
  /** Pages of the range that read as zero (resident or not). */
  zeroPages: number;
  /** Resident zero pages dropped with MADV_DONTNEED. */
  reclaimedPages: number;
  reclaimedBytes: number;
}

export interface ZeroReclaimOptions {
  /** Bytes checked per synchronous step; between steps the event loop runs. Default 32 MiB (~2 ms). */
  chunkBytes?: number;
  signal?: AbortSignal;
  onProgress?: (progress: { bytesDone: number; bytesTotal: number }) => void;
}

/**
 * Drops the resident pages of `region` that are entirely zero. Each chunk is checked and dropped in one
 * synchronous native call, so no JavaScript can write to a page between the check and the drop; pages
 * that are not zero are never touched.
 */
export async function reclaimZeroPages(region: Region, options: ZeroReclaimOptions = {}): Promise<ZeroReclaimResult> {
  const chunk = options.chunkBytes ?? 32 << 20;
  if (!Number.isInteger(chunk) || chunk <= 0 || chunk % PAGE_SIZE !== 0) {
    throw invalidNumber(`reclaimZeroPages: chunkBytes must be a positive multiple of ${PAGE_SIZE}`, chunk);
  }
  throwIfAborted(options.signal, 'reclaimZeroPages');
  region.assertLive('reclaimZeroPages');
  const total = region.byteLength;
  const result: ZeroReclaimResult = { zeroPages: 0, reclaimedPages: 0, reclaimedBytes: 0 };
  for (let offset = 0; offset < total; offset += chunk) {
    throwIfAborted(options.signal);
    region.assertLive('reclaimZeroPages');
    const length = Math.min(chunk, total - offset);
    const r = native.reclaimZeroPages(region.handle, offset, length);
    result.zeroPages += r.zeroPages;
    result.reclaimedPages += r.reclaimedPages;
    options.onProgress?.({ bytesDone: offset + length, bytesTotal: total });
    if (offset + length < total) await new Promise((resolve) => setImmediate(resolve));
  }
  result.reclaimedBytes = result.reclaimedPages * PAGE_SIZE;
  return result;
}

/**
 * Pages of a region backed by memory of its own (present and exclusively mapped in /proc/self/pagemap):
 * what the region adds to RSS. Pages mapping the shared zero page or a KSM page are not counted.
 */
export function ownedPages(region: Region): number {
  region.assertLive('ownedPages');
  return native.ownedPages(region.handle, 0, region.byteLength);
}
