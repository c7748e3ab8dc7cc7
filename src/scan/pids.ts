// Which processes `pagefuse scan --all / --vms` looks at.
import { accessSync, constants, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';

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

const VMM = /^(qemu-system-.*|qemu-kvm|kvm|firecracker|cloud-hypervisor|crosvm)$/;

/**
 * Processes that look like virtual machine monitors, by command name or executable. A stopgap until
 * src/vm/ identifies VMs (and their names) properly.
 */
export function vmmPids(procRoot = '/proc'): number[] {
  return readablePids(procRoot).filter((pid) => {
    try {
      const comm = readFileSync(`${procRoot}/${pid}/comm`, 'utf8').trim();
      // comm is cut to 15 characters ("qemu-system-x86"): the executable's name settles it.
      let exe = '';
      try {
        exe = basename(readlinkSync(`${procRoot}/${pid}/exe`)).replace(/ \(deleted\)$/, '');
      } catch {
        // kernel thread or no rights: the command name alone
      }
      return VMM.test(exe) || VMM.test(comm) || comm.startsWith('qemu-system-');
    } catch {
      return false;
    }
  });
}
