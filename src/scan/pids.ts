// Which processes `pagefuse scan --all` looks at (--vms asks VM discovery, src/vm/).
import { accessSync, constants, readdirSync } from 'node:fs';

/** Every process whose memory this user may read (its pagemap opens), except this one. */
export function readablePids(procRoot = '/proc'): number[] {
  const pids: number[] = [];
  for (const name of readdirSync(procRoot)) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    try {
      accessSync(`${procRoot}/${pid}/pagemap`, constants.R_OK);
      pids.push(pid);
    } catch {
      // another user's process, or gone already
    }
  }
  return pids.sort((a, b) => a - b);
}
