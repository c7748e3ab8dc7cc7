// Builds fixture /proc trees: the files VM discovery and the tuner read, with NUL-separated cmdlines.
import { mkdtempSync, mkdirSync, renameSync, symlinkSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface FakeProcess {
  pid: number;
  argv: string[];
  /** Target of the exe symlink (omit for none, as for kernel threads). */
  exe?: string;
  comm?: string;
  ppid?: number;
  rssKiB?: number;
  startTime?: number;
  /** ksm_stat text (omit for a kernel without it). */
  ksmStat?: string;
  utime?: number;
  stime?: number;
}

export function statLine(p: FakeProcess): string {
  const comm = p.comm ?? (p.argv[0] ?? '').split('/').pop()!.slice(0, 15);
  // Fields 3.. : state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime … starttime (22).
  const rest = ['S', p.ppid ?? 1, p.pid, p.pid, 0, -1, 4194560, 0, 0, 0, 0, p.utime ?? 0, p.stime ?? 0, 0, 0, 20, 0, 1, 0, p.startTime ?? 1000];
  return `${p.pid} (${comm}) ${rest.join(' ')} 0 0\n`;
}

export class ProcTree {
  readonly root = mkdtempSync(join(tmpdir(), 'pagefuse-proc-'));

  constructor(meminfo = 'MemTotal:       16777216 kB\nMemFree:         8388608 kB\nMemAvailable:   10485760 kB\nBuffers:          102400 kB\nCached:          1048576 kB\n') {
    writeFileSync(join(this.root, 'meminfo'), meminfo);
  }

  add(p: FakeProcess): this {
    const dir = join(this.root, String(p.pid));
    rmSync(dir, { recursive: true, force: true });
    this.fill(dir, p);
    return this;
  }

  /**
   * A new process on a pid that names another: a new directory with a new inode, as procfs gives it (a
   * directory removed and made again may get the same inode number back from tmpfs or ext4).
   */
  replace(p: FakeProcess): this {
    const dir = join(this.root, String(p.pid));
    const aside = `${dir}.new`;
    this.fill(aside, p);
    rmSync(dir, { recursive: true, force: true });
    renameSync(aside, dir);
    return this;
  }

  private fill(dir: string, p: FakeProcess): void {
    mkdirSync(dir);
    writeFileSync(join(dir, 'cmdline'), p.argv.map((a) => `${a}\0`).join(''));
    writeFileSync(join(dir, 'stat'), statLine(p));
    writeFileSync(join(dir, 'status'), `Name:\t${p.comm ?? 'x'}\nVmRSS:\t${p.rssKiB ?? 0} kB\n`);
    if (p.exe !== undefined) symlinkSync(p.exe, join(dir, 'exe'));
    if (p.ksmStat !== undefined) writeFileSync(join(dir, 'ksm_stat'), p.ksmStat);
  }

  remove(pid: number): this {
    rmSync(join(this.root, String(pid)), { recursive: true, force: true });
    return this;
  }

  write(rel: string, text: string): this {
    const path = join(this.root, rel);
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, text);
    return this;
  }

  dispose(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}
