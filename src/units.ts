// Human units for every output: bytes in binary multiples (KiB, MiB, GiB…), as the kernel's meminfo
// counts them; and numbers as people write them in flags and config files. Any layer may use it; it
// imports nothing.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 5.2 GiB, 512 KiB, 4096 B: three significant digits, at most one decimal. */
export function formatBytes(bytes: number): string {
  let v = Math.abs(bytes);
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  const s = u === 0 ? String(v) : v.toFixed(v >= 100 ? 0 : 1);
  return `${bytes < 0 ? '-' : ''}${s} ${UNITS[u]}`;
}

/**
 * A whole number written in decimal digits (a leading minus allowed), or NaN: Number() alone also takes
 * '0x10', '1e3', '0b1' and surrounding blanks, which no flag or config key documents.
 */
export function wholeNumber(value: string): number {
  return /^-?[0-9]+$/.test(value) ? Number(value) : Number.NaN;
}

/** A number written as a plain decimal (digits, an optional fraction), or NaN: as wholeNumber, no 0x, exponents or blanks. */
export function decimalNumber(value: string): number {
  return /^([0-9]+(\.[0-9]*)?|\.[0-9]+)$/.test(value) ? Number(value) : Number.NaN;
}
