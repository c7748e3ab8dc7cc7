import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readablePids } from '../src/scan/pids.js';

// --vms goes through VM discovery (src/vm, test/vm.test.ts); --all takes every readable process.
test('--all takes every numbered process of a fake /proc but this one', () => {
  const root = mkdtempSync(join(tmpdir(), 'pagefuse-proc-'));
  try {
    const proc = (pid: number, comm: string, exe?: string): void => {
      mkdirSync(join(root, String(pid)));
      writeFileSync(join(root, String(pid), 'comm'), `${comm}\n`);
      writeFileSync(join(root, String(pid), 'pagemap'), '');
      if (exe) symlinkSync(exe, join(root, String(pid), 'exe'));
    };
    proc(100, 'qemu-system-x86', '/usr/bin/qemu-system-x86_64');
    proc(101, 'node', '/usr/bin/node');
    proc(102, 'firecracker');
    proc(103, 'CPU 0/KVM', '/usr/libexec/qemu-kvm'); // a thread name as comm: the executable decides
    proc(104, 'cloud-hyperviso', '/opt/bin/cloud-hypervisor');
    proc(process.pid, 'node');
    mkdirSync(join(root, 'self'));
    assert.deepEqual(readablePids(root), [100, 101, 102, 103, 104]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
