// Which VMM a process is, and its readable name and configured memory, from its argv and executable.
// Pure functions: discovery (discover.ts) feeds them what /proc shows.
import { basename } from 'node:path';

export type Vmm = 'qemu' | 'firecracker' | 'cloud-hypervisor' | 'crosvm';

/** The executable's basename as the kernel shows it (a replaced binary reads "name (deleted)"). */
function exeName(path: string | undefined): string {
  if (!path) return '';
  return basename(path.replace(/ \(deleted\)$/, ''));
}

function vmmOfName(name: string): Vmm | undefined {
  if (/^qemu-system-/.test(name) || name === 'qemu-kvm') return 'qemu';
  if (name === 'firecracker') return 'firecracker';
  if (name === 'cloud-hypervisor') return 'cloud-hypervisor';
  if (name === 'crosvm') return 'crosvm';
  return undefined;
}

/**
 * The VMM a process runs, judged by its executable (/proc/<pid>/exe, which sees through renames and
 * wrappers like Proxmox's /usr/bin/kvm) and by argv[0] whatever its path (libvirt passes an absolute
 * one; a symlink named qemu-system-x86_64 shows only there).
 */
export function classifyVmm(argv: readonly string[], exePath?: string): Vmm | undefined {
  return vmmOfName(exeName(exePath)) ?? (argv.length > 0 ? vmmOfName(basename(argv[0])) : undefined);
}

/** The value of an option given as `-o v`, `--o v`, `-o=v` or `--o=v`; the last one wins, as in the VMMs. */
export function optionValue(argv: readonly string[], names: readonly string[]): string | undefined {
  let value: string | undefined;
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i];
    for (const name of names) {
      if (arg === name && i + 1 < argv.length) {
        value = argv[++i];
        break;
      }
      if (arg.startsWith(`${name}=`)) {
        value = arg.slice(name.length + 1);
        break;
      }
    }
  }
  return value;
}

/** QEMU's `key=value,…` option syntax: ',,' is a literal comma; a first part without '=' is the implied key. */
export function parseQemuOpts(value: string, impliedKey: string): Map<string, string> {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    if (value[i] === ',') {
      if (value[i + 1] === ',') {
        cur += ',';
        i++;
        continue;
      }
      parts.push(cur);
      cur = '';
    } else {
      cur += value[i];
    }
  }
  parts.push(cur);
  const out = new Map<string, string>();
  parts.forEach((part, i) => {
    const eq = part.indexOf('=');
    if (eq < 0) {
      if (i === 0) out.set(impliedKey, part);
    } else {
      out.set(part.slice(0, eq), part.slice(eq + 1));
    }
  });
  return out;
}

const UNIT_POWER: Record<string, number> = { b: 0, k: 1, m: 2, g: 3, t: 4, p: 5, e: 6 };

/** "4096", "4G", "1.5g", "512M": a size in bytes, a bare number meaning `defaultUnit`; undefined if malformed. */
export function parseSize(text: string, defaultUnit: 'b' | 'm'): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([bkmgtpe]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) return undefined;
  const unit = (m[2] || defaultUnit).toLowerCase();
  const bytes = Number(m[1]) * 1024 ** UNIT_POWER[unit];
  return Number.isFinite(bytes) ? Math.round(bytes) : undefined;
}

function socketName(path: string | undefined): string | undefined {
  if (!path) return undefined;
  const p = path.startsWith('path=') ? (parseQemuOpts(path, 'path').get('path') ?? '') : path;
  const name = basename(p).replace(/\.(sock|socket)$/, '');
  return name === '' ? undefined : name;
}

/** The VM's name as its manager gave it, or `<vmm>-<pid>` when the VMM has none. */
export function vmName(vmm: Vmm, argv: readonly string[], pid: number): string {
  let name: string | undefined;
  switch (vmm) {
    case 'qemu': {
      const opt = optionValue(argv, ['-name', '--name']);
      if (opt !== undefined) name = parseQemuOpts(opt, 'guest').get('guest');
      break;
    }
    case 'firecracker':
      name = optionValue(argv, ['--id']);
      break;
    case 'cloud-hypervisor':
      name = socketName(optionValue(argv, ['--api-socket']));
      break;
    case 'crosvm':
      name = optionValue(argv, ['--name']) ?? socketName(optionValue(argv, ['--socket', '-s']));
      break;
  }
  return name !== undefined && name !== '' ? name : `${vmm}-${pid}`;
}

/** Guest RAM the command line asks for, in bytes, when it says (firecracker keeps it in its API/config). */
export function configuredMemory(vmm: Vmm, argv: readonly string[]): number | undefined {
  switch (vmm) {
    case 'qemu': {
      const opt = optionValue(argv, ['-m', '--m']);
      if (opt === undefined) return undefined;
      const size = parseQemuOpts(opt, 'size').get('size');
      return size === undefined ? undefined : parseSize(size, 'm');
    }
    case 'cloud-hypervisor': {
      const opt = optionValue(argv, ['--memory']);
      const size = opt === undefined ? undefined : parseQemuOpts(opt, 'size').get('size');
      return size === undefined ? undefined : parseSize(size, 'b');
    }
    case 'crosvm': {
      const opt = optionValue(argv, ['--mem', '-m']);
      const size = opt === undefined ? undefined : parseQemuOpts(opt, 'size').get('size');
      return size === undefined ? undefined : parseSize(size, 'm');
    }
    case 'firecracker':
      return undefined;
  }
}
