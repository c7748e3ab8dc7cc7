// Pressure stall information (PSI) for memory.
import { readProcText } from './procfs.js';

/** /proc/pressure/memory averages, percent of wall time stalled. */
export interface MemoryPressure {
  someAvg10: number;
  fullAvg10: number;
}

/** /proc/pressure/memory, or null where the kernel has no PSI (CONFIG_PSI off, or psi=0). */
export async function readMemoryPressure(procRoot = '/proc'): Promise<MemoryPressure | null> {
  const text = await readProcText(procRoot, 'pressure', 'memory');
  if (text === undefined) return null;
  const avg = (kind: string) => Number(new RegExp(`^${kind} avg10=([\\d.]+)`, 'm').exec(text)?.[1] ?? 0);
  return { someAvg10: avg('some'), fullAvg10: avg('full') };
}
