// Things on the host that switch KSM on or drive it behind pagefuse's back: ksmtuned, the distro's
// ksm/ksmtuned services, Ubuntu's KSM_ENABLED.
import { readFile, access } from 'node:fs/promises';
import { findOtherTuners, KSMTUNED_PID_FILES } from './lock.js';
import { join } from 'node:path';

export interface HostRoots {
  /** Where /proc is (tests point it at a fixture tree). */
  procRoot?: string;
  /** Prefix for /etc, /run, /var/run (tests point it at a fixture tree). */
  rootDir?: string;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** A running ksmtuned: by its process (name or argv), or by a pid file whose process is alive. */
export async function findKsmtuned(roots: HostRoots = {}): Promise<{ pids: number[]; pidFile?: string }> {
  const pidFiles = KSMTUNED_PID_FILES.map((file) => join(roots.rootDir ?? '/', file));
  const found = (await findOtherTuners(roots.procRoot, pidFiles)).filter((t) => t.kind === 'ksmtuned');
  const byFile = found.find((t) => t.pidFile !== undefined);
  const pids = [...new Set(found.map((t) => t.pid))].sort((a, b) => a - b);
  return byFile?.pidFile === undefined ? { pids } : { pids, pidFile: byFile.pidFile };
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
