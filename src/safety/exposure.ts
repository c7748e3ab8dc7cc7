// Un-share exposure: what comes back if every merged page is written to. KSM lets a host commit
// more than it has, and swap must still cover committed RAM (docs/kernel.md).
import type { MemInfo } from '../host/meminfo.js';
import { invalidNumber } from '../errors.js';

export interface ExposureInput {
  /** Host-wide pages saved by merging (pages_sharing) and KSM zero pages (ksm_zero_pages). */
  pagesSharing: number;
  ksmZeroPages: number;
  pageSize: number;
  mem: MemInfo;
}

export interface Exposure {
  /** Bytes that would be allocated again if every merged page were written. */
  exposureBytes: number;
  /** MemAvailable + SwapFree: what the host can still hand out. */
  availableBytes: number;
  /** availableBytes − exposureBytes; negative means the host would run out. */
  marginBytes: number;
}

export function unshareExposure(input: ExposureInput): Exposure {
  const exposureBytes = (input.pagesSharing + input.ksmZeroPages) * input.pageSize;
  const availableBytes = input.mem.memAvailable + input.mem.swapFree;
  return { exposureBytes, availableBytes, marginBytes: availableBytes - exposureBytes };
}

export interface Admission extends Exposure {
  admit: boolean;
  requestedBytes: number;
  reason: string;
}

/**
 * Whether a new VM of `bytes` fits if every merged page came back: requested + exposure must fit in
 * MemAvailable + SwapFree, keeping `reserveBytes` spare.
 */
export function admission(bytes: number, exposure: Exposure, reserveBytes = 0): Admission {
  if (!Number.isFinite(bytes) || bytes < 0) throw invalidNumber(`canAdmit: bytes must be a non-negative number`, bytes);
  const need = bytes + exposure.exposureBytes + reserveBytes;
  const admit = need <= exposure.availableBytes;
  const reason = admit
    ? `fits: ${bytes} B requested + ${exposure.exposureBytes} B un-share exposure${reserveBytes ? ` + ${reserveBytes} B reserve` : ''} ≤ ${exposure.availableBytes} B available (MemAvailable + SwapFree)`
    : `does not fit: ${bytes} B requested + ${exposure.exposureBytes} B un-share exposure${reserveBytes ? ` + ${reserveBytes} B reserve` : ''} > ${exposure.availableBytes} B available (MemAvailable + SwapFree)`;
  return { ...exposure, admit, requestedBytes: bytes, reason };
}
