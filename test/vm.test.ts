import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { discoverVms, VmWatcher } from '../src/vm/discover.js';
import { classifyVmm, configuredMemory, parseQemuOpts, parseSize, vmName } from '../src/vm/identify.js';
import { ProcTree } from './helpers/proc-tree.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const KSM_STAT = 'ksm_rmap_items 1200\nksm_zero_pages 7\nksm_merging_pages 900\nksm_process_profit 3609600\nksm_merge_any: no\nksm_mergeable: yes\n';

function hostTree(): ProcTree {
  return new ProcTree()
    .add({
      pid: 101,
      // libvirt: absolute emulator path, -name guest=…, -m size=…k
      argv: ['/usr/bin/qemu-system-x86_64', '-name', 'guest=web01,debug-threads=on', '-machine', 'pc-q35-8.2,accel=kvm', '-m', 'size=4194304k', '-smp', '2'],
      exe: '/usr/bin/qemu-system-x86_64',
      comm: 'qemu-system-x86',
      rssKiB: 2_000_000,
      ksmStat: KSM_STAT,
      startTime: 5000,
    })
    .add({ pid: 102, argv: ['/usr/libexec/qemu-kvm', '-name', 'db,,primary', '-m', '2G'], exe: '/usr/libexec/qemu-kvm', rssKiB: 1_000_000, startTime: 5001 })
    // Proxmox's /usr/bin/kvm: the executable tells, not argv[0].
    .add({ pid: 103, argv: ['/usr/bin/kvm', '-id', '100', '-name', 'pve100,debug-threads=on', '-m', '1024'], exe: '/usr/bin/qemu-system-x86_64', comm: 'kvm', rssKiB: 500_000 })
    .add({ pid: 104, argv: ['firecracker', '--id', 'fc-7', '--api-sock', '/run/fc-7.sock'], exe: '/opt/fc/firecracker (deleted)', rssKiB: 130_000 })
    .add({ pid: 105, argv: ['/usr/bin/cloud-hypervisor', '--api-socket', 'path=/run/ch/vm3.sock', '--memory', 'size=1G,shared=on'], exe: '/usr/bin/cloud-hypervisor', rssKiB: 300_000 })
    .add({ pid: 106, argv: ['crosvm', 'run', '--mem', '512', '--socket', '/run/crosvm/vm4.sock', 'vmlinux'], exe: '/usr/bin/crosvm', rssKiB: 200_000 })
    .add({ pid: 107, argv: ['/bin/bash', '-c', 'qemu-system-x86_64 is only mentioned here'], exe: '/bin/bash', rssKiB: 4000 })
    .add({ pid: 108, argv: [], comm: 'kworker/0:1', ppid: 2 });
}

test('discovery finds every VMM whatever its path, with its name, configured memory and RSS', async () => {
  const tree = hostTree();
  try {
    const vms = await discoverVms({ procRoot: tree.root });
    assert.deepEqual(
      vms.map((v) => [v.pid, v.vmm, v.name, v.memoryBytes, v.rssBytes]),
      [
        [101, 'qemu', 'web01', 4 * GiB, 2_000_000 * 1024],
        [102, 'qemu', 'db,primary', 2 * GiB, 1_000_000 * 1024],
        [103, 'qemu', 'pve100', 1024 * MiB, 500_000 * 1024],
        [104, 'firecracker', 'fc-7', undefined, 130_000 * 1024],
        [105, 'cloud-hypervisor', 'vm3', 1 * GiB, 300_000 * 1024],
        [106, 'crosvm', 'vm4', 512 * MiB, 200_000 * 1024],
      ],
    );
  } finally {
    tree.dispose();
  }
});

test("discovery reads a VM's start time and its ksm_stat", async () => {
  const tree = hostTree();
  try {
    const [web01] = await discoverVms({ procRoot: tree.root });
    assert.equal(web01.startTime, 5000);
    assert.deepEqual(web01.ksm, { rmapItems: 1200, zeroPages: 7, mergingPages: 900, profitBytes: 3609600, mergeAny: false, mergeable: true });
  } finally {
    tree.dispose();
  }
});

test('a VM without a ksm_stat file has ksm null', async () => {
  const tree = hostTree();
  try {
    const vms = await discoverVms({ procRoot: tree.root });
    assert.equal(vms.find((v) => v.pid === 102)?.ksm, null);
  } finally {
    tree.dispose();
  }
});

test('registered pids are reported even when they are no VMM, under their comm', async () => {
  const tree = hostTree();
  try {
    const vms = await discoverVms({ procRoot: tree.root, pids: [107, 999] });
    const bash = vms.find((v) => v.pid === 107);
    assert.deepEqual([bash?.vmm, bash?.name, bash?.rssBytes], ['registered', 'bash', 4000 * 1024]);
  } finally {
    tree.dispose();
  }
});

test('a registered pid that does not exist is left out', async () => {
  const tree = hostTree();
  try {
    const vms = await discoverVms({ procRoot: tree.root, pids: [999] });
    assert.equal(vms.some((v) => v.pid === 999), false);
  } finally {
    tree.dispose();
  }
});

test('the watcher refuses a pid that is not a positive whole number', () => {
  assert.throws(() => new VmWatcher({ pids: [0] }), { name: 'RangeError', message: /got 0/ });
});

test('the watcher reports VMs that come and go, and a process that execs into qemu after fork', async () => {
  const tree = new ProcTree();
  try {
    const w = new VmWatcher({ procRoot: tree.root });
    // Up 100 s: pid 200 started 0.5 s ago (young: looked at again), pid 50 100 s ago.
    tree.write('uptime', '100.00 150.00\n');
    tree.add({ pid: 50, argv: ['/usr/sbin/sshd'], exe: '/usr/sbin/sshd', startTime: 0 });
    tree.add({ pid: 200, argv: ['/usr/sbin/libvirtd'], exe: '/usr/sbin/libvirtd', startTime: 9950 });
    let r = await w.poll(1000);
    assert.deepEqual([r.vms.length, r.added.length, r.removed.length], [0, 0, 0]);
    // libvirt forked pid 200 and now execs the emulator: same pid, same start time, new argv.
    tree.add({ pid: 200, argv: ['/usr/bin/qemu-system-aarch64', '-name', 'guest=arm1'], exe: '/usr/bin/qemu-system-aarch64', startTime: 9950 });
    tree.add({ pid: 201, argv: ['firecracker', '--id', 'f1'], exe: '/usr/bin/firecracker' });
    tree.add({ pid: 50, argv: ['/usr/bin/qemu-system-x86_64', '-name', 'never'], exe: '/usr/bin/qemu-system-x86_64', startTime: 0 });
    r = await w.poll(2000);
    assert.deepEqual(r.added.map((v) => v.name), ['arm1', 'f1'], 'an old process is not read again (exec after 5 s is no VM start)');
    r = await w.poll(3000);
    assert.deepEqual([r.added.length, r.removed.length, r.vms.length], [0, 0, 2]);
    tree.remove(201);
    r = await w.poll(4000);
    assert.deepEqual([r.removed, r.vms.map((v) => v.pid)], [[201], [200]]);
  } finally {
    tree.dispose();
  }
});

test('a process seen mid-exec, with its new comm and no argv yet, is found as a VM once its argv is there', async () => {
  const tree = new ProcTree();
  try {
    const w = new VmWatcher({ procRoot: tree.root });
    tree.write('uptime', '100.00 150.00\n');
    tree.add({ pid: 300, argv: [], exe: '/usr/bin/qemu-system-x86_64', comm: 'qemu-system-x86', startTime: 9950 });
    assert.deepEqual((await w.poll(1000)).added, []);
    tree.add({ pid: 300, argv: ['/usr/bin/qemu-system-x86_64', '-name', 'guest=late'], exe: '/usr/bin/qemu-system-x86_64', comm: 'qemu-system-x86', startTime: 9950 });
    assert.deepEqual((await w.poll(1500)).added.map((v) => v.name), ['late']);
  } finally {
    tree.dispose();
  }
});

test('a poll without figures reports the VMs gone as it last read them, and keeps the known ones as they were', async () => {
  const tree = hostTree();
  try {
    const w = new VmWatcher({ procRoot: tree.root });
    const first = await w.poll();
    const web = first.vms.find((v) => v.pid === 101)!;
    tree.add({ pid: 102, argv: ['/usr/libexec/qemu-kvm', '-name', 'db,,primary', '-m', '2G'], exe: '/usr/libexec/qemu-kvm', rssKiB: 1_500_000, startTime: 5001 });
    tree.remove(101);
    const r = await w.poll(Date.now(), { figures: false });
    assert.deepEqual([r.removed, r.gone], [[101], [web]]);
    assert.equal(r.vms.find((v) => v.pid === 102)!.rssBytes, 1_000_000 * 1024, 'the known VM keeps the figures of the last read');
  } finally {
    tree.dispose();
  }
});

test('a VM whose pid a new process takes between two looks is reported gone, not kept under its name', async () => {
  const tree = new ProcTree();
  try {
    const w = new VmWatcher({ procRoot: tree.root });
    tree.write('uptime', '100.00 150.00\n');
    tree.add({ pid: 4242, argv: ['/usr/bin/qemu-system-x86_64', '-name', 'guest=prod-db'], exe: '/usr/bin/qemu-system-x86_64', startTime: 1000 });
    assert.deepEqual((await w.poll(1000)).added.map((v) => v.name), ['prod-db']);
    // The guest exited and, before the next look, another user's process came round to its pid.
    tree.replace({ pid: 4242, argv: ['/home/mallory/evil'], exe: '/home/mallory/evil', startTime: 9000 });
    const r = await w.poll(2000, { figures: false });
    assert.deepEqual([r.removed, r.vms], [[4242], []]);
  } finally {
    tree.dispose();
  }
});

test('a VM started on the pid of a process that exited between two looks is found', async () => {
  const tree = new ProcTree();
  try {
    const w = new VmWatcher({ procRoot: tree.root });
    tree.write('uptime', '100.00 150.00\n');
    tree.add({ pid: 4343, argv: ['/usr/sbin/cron'], exe: '/usr/sbin/cron', startTime: 0 });
    assert.deepEqual((await w.poll(1000)).added, []);
    tree.replace({ pid: 4343, argv: ['/usr/bin/qemu-system-x86_64', '-name', 'guest=new-vm'], exe: '/usr/bin/qemu-system-x86_64', startTime: 9000 });
    assert.deepEqual((await w.poll(2000, { figures: false })).added.map((v) => v.name), ['new-vm']);
  } finally {
    tree.dispose();
  }
});

test("QEMU option strings: ',,' escapes a comma and a bare first value takes the implied key", () => {
  assert.deepEqual([...parseQemuOpts('guest=a,,b,debug-threads=on', 'guest')], [['guest', 'a,b'], ['debug-threads', 'on']]);
  assert.deepEqual([...parseQemuOpts('vm9,process=qemu:vm9', 'guest')], [['guest', 'vm9'], ['process', 'qemu:vm9']]);
});

test('sizes take a default unit, suffixes and fractions; anything else is undefined', () => {
  assert.equal(parseSize('4096', 'm'), 4 * GiB);
  assert.equal(parseSize('1.5G', 'm'), 1.5 * GiB);
  assert.equal(parseSize('512MiB', 'b'), 512 * MiB);
  assert.equal(parseSize('lots', 'm'), undefined);
});

test("a QEMU guest's memory comes from -m in any of its spellings, undefined without it", () => {
  assert.equal(configuredMemory('qemu', ['qemu-system-x86_64', '-m', '8G,slots=4,maxmem=32G']), 8 * GiB);
  assert.equal(configuredMemory('qemu', ['qemu-system-x86_64', '--m=256']), 256 * MiB);
  assert.equal(configuredMemory('qemu', ['qemu-system-x86_64']), undefined);
});

test("a VM's name comes from its VMM's id or socket, else the VMM and pid", () => {
  assert.equal(vmName('qemu', ['qemu-system-x86_64', '-m', '1G'], 42), 'qemu-42');
  assert.equal(vmName('cloud-hypervisor', ['cloud-hypervisor', '--api-socket', '/tmp/a.sock'], 5), 'a');
  assert.equal(vmName('firecracker', ['firecracker', '--id=x1'], 5), 'x1');
});

test('a VMM is told by its argv[0] or executable, and qemu tools are not VMMs', () => {
  assert.equal(classifyVmm(['/opt/qemu/bin/qemu-system-riscv64']), 'qemu');
  assert.equal(classifyVmm(['qemu-img', 'info'], '/usr/bin/qemu-img'), undefined);
  assert.equal(classifyVmm(['sh'], '/usr/bin/crosvm'), 'crosvm');
});

test('a real process started through a symlink named qemu-system-x86_64 is found with its -name', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-vm-'));
  const link = join(dir, 'qemu-system-x86_64');
  symlinkSync(process.execPath, link);
  const child = spawn(link, ['-e', 'setInterval(() => {}, 1000)', '--', '-name', 'guest=real1', '-m', '64'], { stdio: 'ignore' });
  try {
    await new Promise((resolve, reject) => child.once('spawn', resolve).once('error', reject));
    const w = new VmWatcher();
    let found;
    for (let i = 0; i < 50 && found === undefined; i++) {
      found = (await w.poll()).vms.find((v) => v.pid === child.pid);
      if (found === undefined) await sleep(20);
    }
    assert.ok(found, 'the child is discovered');
    assert.deepEqual([found.vmm, found.name, found.memoryBytes], ['qemu', 'real1', 64 * MiB]);
    assert.ok(found.rssBytes > 1 * MiB, `RSS is read (${found.rssBytes})`);
    assert.notEqual(found.ksm, null, 'this kernel has ksm_stat');
    child.kill();
    await new Promise((resolve) => child.once('exit', resolve));
    const r = await w.poll();
    assert.deepEqual(r.removed, [child.pid]);
  } finally {
    child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
