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

/** Below this share of MemTotal, the margin left after the un-share exposure counts as thin. */
export const THIN_MARGIN_FRACTION = 0.1;

/** The overcommit guard's reading: what comes back if every merged page is written. */
export interface OvercommitRisk extends Exposure {
  at: number;
  /** The margin under which the host counts as at risk. */
  thresholdBytes: number;
  atRisk: boolean;
}

/**
 * The overcommit guard: the host is at risk while MemAvailable + SwapFree, less the un-share exposure,
 * is under a threshold (default THIN_MARGIN_FRACTION of MemTotal). It remembers the last state, so a
 * caller can tell when the host enters or leaves the risk zone.
 */
export class OvercommitGuard {
  private atRisk = false;

  constructor(
    private readonly thresholdBytes?: number,
    what = 'riskMarginBytes',
  ) {
    if (thresholdBytes !== undefined && !(Number.isFinite(thresholdBytes) && thresholdBytes >= 0)) {
      throw invalidNumber(`${what} must be a number of bytes ≥ 0`, thresholdBytes);
    }
  }

  assess(counters: { pages_sharing: number; ksm_zero_pages?: number }, mem: MemInfo, pageSize: number): { risk: OvercommitRisk; changed: boolean } {
    const risk = this.reading(counters, mem, pageSize);
    const changed = risk.atRisk !== this.atRisk;
    this.atRisk = risk.atRisk;
    return { risk, changed };
  }

  /** Whether assess() with these figures would enter or leave the risk zone; nothing is recorded. */
  wouldChange(counters: { pages_sharing: number; ksm_zero_pages?: number }, mem: MemInfo, pageSize: number): boolean {
    return this.reading(counters, mem, pageSize).atRisk !== this.atRisk;
  }

  private reading(counters: { pages_sharing: number; ksm_zero_pages?: number }, mem: MemInfo, pageSize: number): OvercommitRisk {
    const exposure = unshareExposure({ pagesSharing: counters.pages_sharing, ksmZeroPages: counters.ksm_zero_pages ?? 0, pageSize, mem });
    const thresholdBytes = this.thresholdBytes ?? Math.round(THIN_MARGIN_FRACTION * mem.memTotal);
    const atRisk = exposure.exposureBytes > 0 && exposure.marginBytes < thresholdBytes;
    return { at: Date.now(), ...exposure, thresholdBytes, atRisk };
  }

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
