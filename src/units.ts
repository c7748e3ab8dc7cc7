// Human units for every output: bytes in binary multiples (KiB, MiB, GiB…), as the kernel's meminfo
// counts them. Any layer may use it; it imports nothing.

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
