// The kernel's page size, read from this process's ELF auxiliary vector (AT_PAGESZ) rather than from
// the addon, so the modules below the addon (ksm/, the savings model, the policies) can use it.
import { readFileSync } from 'node:fs';

const AT_NULL = 0n;
const AT_PAGESZ = 6n;
/** The page size of every architecture Node runs on by default (x86-64, and arm64 with 4 KiB pages). */
const FALLBACK_PAGE_SIZE = 4096;

/** AT_PAGESZ from /proc/self/auxv (pairs of native-endian unsigned longs), or undefined. */
export function readAuxvPageSize(auxvPath = '/proc/self/auxv'): number | undefined {
  let auxv: Buffer;
  try {
    auxv = readFileSync(auxvPath);
  } catch {
    return undefined;
  }
  const word = process.arch.endsWith('64') ? 8 : 4;
  const read = (at: number): bigint =>
    word === 8 ? auxv.readBigUInt64LE(at) : BigInt(auxv.readUInt32LE(at));
  for (let at = 0; at + 2 * word <= auxv.length; at += 2 * word) {
    const type = read(at);
    if (type === AT_NULL) break;
    if (type === AT_PAGESZ) return Number(read(at + word));
  }
  return undefined;
}

/** Bytes per base page on this host. */
export const PAGE_SIZE: number = readAuxvPageSize() ?? FALLBACK_PAGE_SIZE;
