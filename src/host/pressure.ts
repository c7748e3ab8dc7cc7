// Pressure stall information (PSI) for memory.
import { readProcText, readProcTextSync } from './procfs.js';

/** /proc/pressure/memory averages, percent of wall time stalled. */
export interface MemoryPressure {
  someAvg10: number;
  fullAvg10: number;
}

/** /proc/pressure/memory, or null where the kernel has no PSI (CONFIG_PSI off, or psi=0). */
export async function readMemoryPressure(procRoot = '/proc'): Promise<MemoryPressure | null> {
  return parsePressure(await readProcText(procRoot, 'pressure', 'memory'));
}

/** readMemoryPressure without a thread-pool round trip (the idle tuner's memory check). */
export function readMemoryPressureSync(procRoot = '/proc'): MemoryPressure | null {
  return parsePressure(readProcTextSync(procRoot, 'pressure', 'memory'));
}

function parsePressure(text: string | undefined): MemoryPressure | null {
  if (text === undefined) return null;
  const avg = (kind: string) => Number(new RegExp(`^${kind} avg10=([\\d.]+)`, 'm').exec(text)?.[1] ?? 0);
  return { someAvg10: avg('some'), fullAvg10: avg('full') };
}
