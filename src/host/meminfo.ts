// /proc/meminfo in bytes: the one memory reading the tuner's policies, the un-share exposure and the
// reports share.
import { keyValue, readProcText, readProcTextSync } from './procfs.js';

/** /proc/meminfo's fields pagefuse uses, in bytes. */
export interface MemInfo {
  memTotal: number;
  memFree: number;
  /** MemAvailable; free + page cache on kernels before 3.14, which lack it. */
  memAvailable: number;
  buffers: number;
  cached: number;
  /** 0 on a host without swap. */
  swapTotal: number;
  swapFree: number;
}

/** Parses /proc/meminfo's text (its kB are KiB). */
export function parseMemInfo(text: string): MemInfo {
  const bytes = (key: string): number => (keyValue(text, key) ?? 0) * 1024;
  const available = keyValue(text, 'MemAvailable');
  return {
    memTotal: bytes('MemTotal'),
    memFree: bytes('MemFree'),
    memAvailable: available !== undefined ? available * 1024 : bytes('MemFree') + bytes('Cached'),
    buffers: bytes('Buffers'),
    cached: bytes('Cached'),
    swapTotal: bytes('SwapTotal'),
    swapFree: bytes('SwapFree'),
  };
}

/** readMemInfo without a thread-pool round trip, for a caller that looks often (the idle tuner's memory check). */
export function readMemInfoSync(procRoot = '/proc'): MemInfo {
  const text = readProcTextSync(procRoot, 'meminfo');
  if (text === undefined) throw new Error(`cannot read ${procRoot}/meminfo`);
  return parseMemInfo(text);
}

export async function readMemInfo(procRoot = '/proc'): Promise<MemInfo> {
  const text = await readProcText(procRoot, 'meminfo');
  if (text === undefined) throw new Error(`cannot read ${procRoot}/meminfo`);
  return parseMemInfo(text);
}
