// Things on the host that switch KSM on or drive it behind pagefuse's back: ksmtuned, the distro's
// ksm/ksmtuned services, Ubuntu's KSM_ENABLED.
import { readdir, readFile, access } from 'node:fs/promises';
import { join } from 'node:path';

export interface HostRoots {
  /** Where /proc is (tests point it at a fixture tree). */
  procRoot?: string;
  /** Prefix for /etc, /run, /var/run (tests point it at a fixture tree). */
  rootDir?: string;
}

const KSMTUNED_PID_FILES = ['/run/ksmtune.pid', '/var/run/ksmtune.pid'];

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Pids of processes whose command name is `comm` (the name /proc/<pid>/comm gives, 15 characters at most). */
export async function pidsByComm(comm: string, procRoot = '/proc'): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir(procRoot)) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if ((await readFile(join(procRoot, entry, 'comm'), 'utf8')).trim() === comm.slice(0, 15)) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids.sort((a, b) => a - b);
}

/** A running ksmtuned: by process name, or by a pid file whose process is alive. */
export async function findKsmtuned(roots: HostRoots = {}): Promise<{ pids: number[]; pidFile?: string }> {
  const procRoot = roots.procRoot ?? '/proc';
  const pids = await pidsByComm('ksmtuned', procRoot);
  for (const file of KSMTUNED_PID_FILES) {
    const path = join(roots.rootDir ?? '/', file);
    let pid: number;
    try {
      pid = Number((await readFile(path, 'utf8')).trim());
    } catch {
      continue;
    }
    if (Number.isInteger(pid) && pid > 0 && (await exists(join(procRoot, String(pid))))) {
      return { pids: [...new Set([...pids, pid])].sort((a, b) => a - b), pidFile: file };
    }
  }
  return { pids };
}

/** Distro switches that turn KSM on at boot. */
export async function ksmBootSwitches(roots: HostRoots = {}): Promise<string[]> {
  const root = roots.rootDir ?? '/';
  const found: string[] = [];
  for (const unit of ['ksm.service', 'ksmtuned.service']) {
    for (const dir of ['etc/systemd/system/multi-user.target.wants', 'etc/systemd/system/default.target.wants']) {
      if (await exists(join(root, dir, unit))) {
        found.push(`systemd unit ${unit} (enabled)`);
        break;
      }
    }
  }
  try {
    const text = await readFile(join(root, 'etc/default/qemu-kvm'), 'utf8');
    const m = /^\s*KSM_ENABLED\s*=\s*"?(\w+)"?/m.exec(text);
    if (m && m[1] !== '0') found.push(`/etc/default/qemu-kvm KSM_ENABLED=${m[1]}`);
  } catch {
    // not Ubuntu's qemu packaging
  }
  return found;
}
