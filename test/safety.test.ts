import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, mkdtemp, mkdir, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OvercommitGuard, admission, unshareExposure } from '../src/safety/exposure.js';
import { admit } from '../src/safety/admission.js';
import type { MemInfo } from '../src/host/meminfo.js';
import { evaluateAudit, auditExitCode, qemuMemMergeOn, type AuditSnapshot } from '../src/safety/audit.js';
import { Registry, processStartTime } from '../src/safety/registry.js';
import { checkMergeAdmission, readIsolation } from '../src/safety/isolation.js';

const GiB = 1024 ** 3;
const mem: MemInfo = { memTotal: 16 * GiB, memFree: 3 * GiB, memAvailable: 4 * GiB, buffers: 0, cached: 1 * GiB, swapTotal: 2 * GiB, swapFree: 1 * GiB };

test('un-share exposure counts merged and KSM zero pages against MemAvailable + SwapFree', () => {
  const e = unshareExposure({ pagesSharing: 262144, ksmZeroPages: 262144, pageSize: 4096, mem });
  assert.deepEqual(e, { exposureBytes: 2 * GiB, availableBytes: 5 * GiB, marginBytes: 3 * GiB });
});

test('canAdmit: a VM fits only if it and every merged page coming back fit', () => {
  const e = unshareExposure({ pagesSharing: 262144, ksmZeroPages: 0, pageSize: 4096, mem });
  assert.equal(admission(4 * GiB, e).admit, true); // 4 + 1 ≤ 5
  assert.equal(admission(4 * GiB + 1, e).admit, false);
  assert.equal(admission(3 * GiB, e, 1 * GiB).admit, true);
  assert.equal(admission(3 * GiB + 4096, e, 1 * GiB).admit, false);
  assert.match(admission(5 * GiB, e).reason, /does not fit/);
  assert.throws(() => admission(-1, e), RangeError);
});

function snapshot(over: Partial<AuditSnapshot> = {}): AuditSnapshot {
  return {
    ksmAvailable: true,
    run: 1,
    mergeAcrossNodes: 1,
    useZeroPages: 0,
    topology: { nodes: [{ id: 0, cpus: [0, 1], memTotal: 16 * GiB, memFree: 8 * GiB }], distances: [[10]] },
    mem,
    exposure: { exposureBytes: 0, availableBytes: 5 * GiB, marginBytes: 5 * GiB },
    processes: [],
    registrations: [],
    isolation: 'host',
    ksmtuned: { pids: [] },
    bootSwitches: [],
    ...over,
  };
}

const reg = (pid: number, tenant?: string) => ({ pid, startTime: 1, merge: true, via: 'exec', registeredAt: '', ...(tenant ? { tenant } : {}) });
const proc = (pid: number, name: string, mergeAny = true, cmdline: string[] = [name]) => ({ pid, name, mergeAny, mergeable: true, mergingPages: 10, zeroPages: 0, cmdline });

test('audit: a quiet host has no findings and exits 0 at any --fail-on', () => {
  const r = evaluateAudit(snapshot());
  assert.deepEqual(r.findings, []);
  assert.equal(auditExitCode(r, 'info'), 0);
});

test('audit: exposure severity follows the margin', () => {
  const sev = (marginBytes: number) =>
    evaluateAudit(snapshot({ exposure: { exposureBytes: 1 * GiB, availableBytes: 1 * GiB + marginBytes, marginBytes } })).findings[0];
  assert.equal(sev(-1).severity, 'critical');
  assert.match(sev(-1).message, /swap must cover committed RAM/);
  assert.equal(sev(1 * GiB).severity, 'warning'); // < 10 % of 16 GiB
  assert.equal(sev(2 * GiB).severity, 'info');
});

test('audit: several tenants mergeable at once, NUMA, ksmtuned, QEMU mem-merge and strays', () => {
  const r = evaluateAudit(
    snapshot({
      topology: {
        nodes: [
          { id: 0, cpus: [0], memTotal: 8 * GiB, memFree: 4 * GiB },
          { id: 1, cpus: [1], memTotal: 8 * GiB, memFree: 4 * GiB },
        ],
        distances: [[10, 21], [21, 10]],
      },
      processes: [proc(10, 'qemu-system-x86', true, ['/usr/bin/qemu-system-x86_64', '-m', '1G']), proc(11, 'qemu-system-x86'), proc(12, 'node')],
      registrations: [reg(10, 'acme'), reg(11, 'globex')],
      ksmtuned: { pids: [99] },
      bootSwitches: ['systemd unit ksm.service (enabled)'],
    }),
  );
  const ids = r.findings.map((f) => `${f.severity}:${f.id}`);
  assert.deepEqual(ids, [
    'warning:ksmtuned-running',
    'warning:merge-across-nodes',
    'warning:multiple-tenants',
    'warning:unregistered-merge-any',
    'info:ksm-enabled-at-boot',
    'info:qemu-mem-merge',
  ]);
  assert.match(r.findings.find((f) => f.id === 'multiple-tenants')!.message, /acme: qemu-system-x86 \(pid 10\); globex: qemu-system-x86 \(pid 11\)/);
  assert.match(r.findings.find((f) => f.id === 'unregistered-merge-any')!.message, /: node \(pid 12\)/);
  assert.match(r.findings.find((f) => f.id === 'qemu-mem-merge')!.message, / in qemu-system-x86 \(pid 10\), qemu-system-x86 \(pid 11\);/);
  assert.equal(auditExitCode(r, 'warning'), 3);
  assert.equal(auditExitCode(r, 'critical'), 0);
  assert.equal(qemuMemMergeOn(['qemu-system-x86_64', '-machine', 'pc,mem-merge=off']), false);
});

test('audit: processes it could not read make it a warning that the audit is incomplete', () => {
  const r = evaluateAudit(snapshot({ processesUnreadable: 7 }));
  assert.deepEqual(r.findings.map((f) => `${f.severity}:${f.id}`), ['warning:audit-incomplete']);
  assert.match(r.findings[0].message, /^7 processes could not be read .*run as root to audit every process$/);
});

test('audit: zero-only with ksmd running is critical', () => {
  const r = evaluateAudit(snapshot({ isolation: 'zero-only', run: 1 }));
  assert.equal(r.findings[0].id, 'zero-only-violated');
  assert.equal(r.findings[0].severity, 'critical');
});

/** A registry in a fresh state directory, removed after fn. */
async function withRegistry(fn: (registry: Registry, stateDir: string) => Promise<void> | void): Promise<void> {
  const stateDir = await mkdtemp(join(tmpdir(), 'pf-reg-'));
  try {
    await fn(new Registry({ stateDir }), stateDir);
  } finally {
    await rm(stateDir, { recursive: true, force: true });
  }
}

/** A registry where this process is registered, mergeable, for tenant acme. */
async function withAcme(fn: (registry: Registry) => void): Promise<void> {
  await withRegistry((registry) => {
    registry.add({ pid: process.pid, tenant: 'acme', merge: true, via: 'register' });
    fn(registry);
  });
}

test("a registration records the process's start time", async () => {
  await withRegistry((registry) => {
    const r = registry.add({ pid: process.pid, tenant: 'acme', merge: true, via: 'register' });
    assert.equal(r.startTime, processStartTime(process.pid));
  });
});

test('the registry lists live processes with their tenant and forgets exited ones', async () => {
  await withRegistry(async (registry, stateDir) => {
    registry.add({ pid: process.pid, tenant: 'acme', merge: true, via: 'register' });
    await mkdir(join(stateDir, 'processes'), { recursive: true });
    await writeFile(join(stateDir, 'processes', '999999999.json'), JSON.stringify({ ...reg(999999999, 'ghost') }));
    assert.deepEqual(registry.list().map((x) => [x.pid, x.tenant]), [[process.pid, 'acme']]);
  });
});

test('a registry read under another proc root leaves the host\'s registrations in place', async () => {
  await withRegistry(async (registry, stateDir) => {
    registry.add({ pid: process.pid, tenant: 'acme', merge: true, via: 'register' });
    const emptyProc = await mkdtemp(join(tmpdir(), 'pf-proc-'));
    try {
      assert.deepEqual(new Registry({ stateDir, procRoot: emptyProc }).list(), []);
      assert.deepEqual(registry.list().map((x) => x.pid), [process.pid]);
    } finally {
      await rm(emptyProc, { recursive: true, force: true });
    }
  });
});

test('a registry entry whose pid is a path is skipped, and no file outside the registry is touched', async () => {
  await withRegistry(async (registry, stateDir) => {
    await mkdir(join(stateDir, 'victim'));
    await writeFile(join(stateDir, 'victim', 'vm-config.json'), 'precious\n');
    await mkdir(join(stateDir, 'processes'));
    await writeFile(join(stateDir, 'processes', '1.json'), JSON.stringify({ ...reg(1), pid: '../victim/vm-config' }));
    assert.deepEqual(registry.list(), []);
    assert.deepEqual(
      [await readFile(join(stateDir, 'victim', 'vm-config.json'), 'utf8'), await readdir(join(stateDir, 'processes'))],
      ['precious\n', ['1.json']],
    );
  });
});

test("a registry entry whose pid is not its file's name is skipped, not listed under either pid", async () => {
  await withRegistry(async (registry, stateDir) => {
    const live = { ...reg(process.pid, 'acme'), startTime: processStartTime(process.pid) };
    await mkdir(join(stateDir, 'processes'));
    await writeFile(join(stateDir, 'processes', '7.json'), JSON.stringify(live));
    assert.deepEqual([registry.list(), await readdir(join(stateDir, 'processes'))], [[], ['7.json']]);
  });
});

test('a registry entry whose tenant is not a string is skipped', async () => {
  await withRegistry(async (registry, stateDir) => {
    const entry = { ...reg(process.pid), startTime: processStartTime(process.pid), tenant: ['acme'] };
    await mkdir(join(stateDir, 'processes'));
    await writeFile(join(stateDir, 'processes', `${process.pid}.json`), JSON.stringify(entry));
    assert.deepEqual(registry.list(), []);
  });
});

test('a state directory owned by another uid is refused, naming it and its owner', async () => {
  await withRegistry(async (registry, stateDir) => {
    await chown(stateDir, 65534, 65534);
    const refused = { code: 'EPERM', message: `refusing the state directory ${stateDir}: it is owned by uid 65534, not by root` };
    assert.throws(() => registry.list(), refused);
    assert.throws(() => registry.add({ pid: process.pid, tenant: 'acme', merge: true, via: 'register' }), refused);
    assert.deepEqual(await readdir(stateDir), []);
  });
});

test('a state directory others can write is refused, with its mode', async () => {
  await withRegistry(async (registry, stateDir) => {
    await chmod(stateDir, 0o777);
    assert.throws(() => registry.list(), { code: 'EPERM', message: `refusing the state directory ${stateDir}: it is writable by group and others (mode 0777)` });
  });
});

test("a registry subdirectory the group can write is refused, though the state directory is the user's", async () => {
  await withRegistry(async (registry, stateDir) => {
    await mkdir(join(stateDir, 'processes'));
    await chmod(join(stateDir, 'processes'), 0o770);
    assert.throws(() => registry.prepare(), { code: 'EPERM', message: `refusing the state directory ${join(stateDir, 'processes')}: it is writable by group (mode 0770)` });
  });
});

test('a state directory that is a symbolic link is refused', async () => {
  await withRegistry(async (_registry, stateDir) => {
    await mkdir(join(stateDir, 'real'));
    await symlink(join(stateDir, 'real'), join(stateDir, 'link'));
    const registry = new Registry({ stateDir: join(stateDir, 'link') });
    assert.throws(() => registry.prepare(), { code: 'EPERM', message: `refusing the state directory ${join(stateDir, 'link')}: it is a symbolic link` });
    assert.deepEqual(await readdir(join(stateDir, 'real')), []);
  });
});

test("a non-root user's state directory and its registry are made 0700", async (t) => {
  await withRegistry(async (_registry, stateDir) => {
    t.mock.method(process as { getuid: () => number }, 'getuid', () => 1001); // this process is root: the directories it makes are root's, which a user trusts too
    new Registry({ stateDir: join(stateDir, 'user') }).prepare();
    const modes = [(await stat(join(stateDir, 'user'))).mode & 0o7777, (await stat(join(stateDir, 'user', 'processes'))).mode & 0o7777];
    assert.deepEqual(modes, [0o700, 0o700]);
  });
});

test("root's state directory is still made 0755, for other users' status to read", async () => {
  await withRegistry(async (_registry, stateDir) => {
    const umask = process.umask(0o022);
    try {
      new Registry({ stateDir: join(stateDir, 'run') }).prepare();
    } finally {
      process.umask(umask);
    }
    assert.deepEqual([(await stat(join(stateDir, 'run'))).mode & 0o7777, (await stat(join(stateDir, 'run', 'processes'))).mode & 0o7777], [0o755, 0o755]);
  });
});

test('registering a process that does not exist is ESRCH', async () => {
  await withRegistry((registry) => {
    assert.throws(() => registry.add({ pid: 999999999, merge: true, via: 'x' }), { code: 'ESRCH' });
  });
});

test('a malformed tenant id is a RangeError', async () => {
  await withRegistry((registry) => {
    assert.throws(() => registry.add({ pid: process.pid, tenant: 'bad tenant!', merge: true, via: 'x' }), RangeError);
  });
});

test("isolation 'tenant' admits more VMs of the tenant already merging", async () => {
  await withAcme((registry) => assert.equal(checkMergeAdmission(registry, { isolation: 'tenant', tenant: 'acme' }), undefined));
});

test("isolation 'tenant' refuses a second tenant with ERR_ISOLATION", async () => {
  await withAcme((registry) =>
    assert.throws(() => checkMergeAdmission(registry, { isolation: 'tenant', tenant: 'globex' }), {
      code: 'ERR_ISOLATION',
      message: /tenant 'acme' already has mergeable VMs/,
    }),
  );
});

test("isolation 'tenant' admits a second tenant with force", async () => {
  await withAcme((registry) => assert.equal(checkMergeAdmission(registry, { isolation: 'tenant', tenant: 'globex', force: true }), undefined));
});

test("isolation 'host' admits a second tenant", async () => {
  await withAcme((registry) => assert.equal(checkMergeAdmission(registry, { isolation: 'host', tenant: 'globex' }), undefined));
});

test("isolation 'zero-only' refuses content merging even with force", async () => {
  await withAcme((registry) =>
    assert.throws(() => checkMergeAdmission(registry, { isolation: 'zero-only', tenant: 'acme', force: true }), {
      code: 'ERR_ISOLATION',
      message: /zero-only/,
    }),
  );
});

test('admit records an admitted process with its tenant', async () => {
  await withRegistry((registry) => {
    admit(registry, { isolation: 'tenant', tenant: 'acme', merge: true }).record(process.pid, { via: 'register', name: 'vm1' });
    assert.deepEqual(
      registry.list().map((r) => [r.pid, r.tenant, r.name, r.merge, r.via]),
      [[process.pid, 'acme', 'vm1', true, 'register']],
    );
  });
});

test('admit refuses before anything is recorded', async () => {
  await withAcme((registry) => {
    assert.throws(() => admit(registry, { isolation: 'tenant', tenant: 'globex', merge: true }), { code: 'ERR_ISOLATION' });
    assert.deepEqual(registry.list().map((r) => r.tenant), ['acme']);
  });
});

test("an admission under 'tenant' isolation waits for one in progress, then sees its tenant", async () => {
  await withRegistry(async (registry, stateDir) => {
    const acme = admit(registry, { isolation: 'tenant', tenant: 'acme', merge: true });
    // Another process admits tenant globex while acme's admission is between its check and its record.
    const admission = fileURLToPath(new URL('../dist/safety/admission.js', import.meta.url));
    const reg = fileURLToPath(new URL('../dist/safety/registry.js', import.meta.url));
    const other = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { admit } = await import(${JSON.stringify(admission)}); const { Registry } = await import(${JSON.stringify(reg)});
         process.stdout.write('ready\\n');
         try { admit(new Registry({ stateDir: ${JSON.stringify(stateDir)} }), { isolation: 'tenant', tenant: 'globex', merge: true }); console.log('admitted'); }
         catch (err) { console.log(err.code); }`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise((resolve) => other.once('exit', resolve));
    let out = '';
    other.stdout.on('data', (d: Buffer) => (out += d));
    await new Promise<void>((resolve) => other.stdout.once('data', () => resolve()));
    await sleep(300); // without the lock, its check (a directory read) is over by now
    acme.record(process.pid, { via: 'register' });
    await exited;
    assert.equal(out, 'ready\nERR_ISOLATION\n');
  });
});

test('admit checks no isolation for a process without content merging', async () => {
  await withAcme((registry) => {
    assert.doesNotThrow(() => admit(registry, { isolation: 'zero-only', tenant: 'globex', merge: false }));
  });
});

test('the isolation setting is read from ISOLATION= in the config file', async () => {
  await withRegistry(async (_registry, stateDir) => {
    const conf = join(stateDir, 'pagefuse.conf');
    await writeFile(conf, '# host policy\nISOLATION="tenant"\n');
    assert.equal(readIsolation(conf), 'tenant');
  });
});

test('an unknown isolation in the config file is refused with file:line', async () => {
  await withRegistry(async (_registry, stateDir) => {
    const conf = join(stateDir, 'pagefuse.conf');
    await writeFile(conf, 'ISOLATION=shared\n');
    assert.throws(() => readIsolation(conf), { message: /pagefuse\.conf:1: ISOLATION must be one of host, tenant, zero-only, got the string "shared"/ });
  });
});

test('a misspelt key in the config file is refused with file:line, not read as no setting (host)', async () => {
  await withRegistry(async (_registry, stateDir) => {
    const conf = join(stateDir, 'pagefuse.conf');
    await writeFile(conf, '# host policy\nISOLATON=zero-only\n');
    assert.throws(() => readIsolation(conf), { code: 'EINVAL', message: `${conf}:2: unknown key ISOLATON (pagefuse.conf holds ISOLATION only)` });
  });
});

test('a config line that is not KEY=VALUE is refused with file:line, without repeating the line', async () => {
  await withRegistry(async (_registry, stateDir) => {
    const conf = join(stateDir, 'pagefuse.conf');
    await writeFile(conf, 'ISOLATION tenant\n');
    assert.throws(() => readIsolation(conf), { code: 'EINVAL', message: `${conf}:1: expected KEY=VALUE (pagefuse.conf holds ISOLATION=host|tenant|zero-only)` });
  });
});

test('ISOLATION set twice in the config file is refused', async () => {
  await withRegistry(async (_registry, stateDir) => {
    const conf = join(stateDir, 'pagefuse.conf');
    await writeFile(conf, 'ISOLATION=tenant\nexport ISOLATION=host\n');
    assert.throws(() => readIsolation(conf), { code: 'EINVAL', message: `${conf}:2: ISOLATION is set twice` });
  });
});

test('a FIFO as the config file is refused at once', async () => {
  await withRegistry(async (_registry, stateDir) => {
    const conf = join(stateDir, 'pagefuse.conf');
    execFileSync('mkfifo', [conf]);
    assert.throws(() => readIsolation(conf), { code: 'EINVAL', message: `cannot read the config ${conf}: it is a FIFO, not a regular file` });
  });
});

test("without a config file the isolation is 'host'", async () => {
  await withRegistry((_registry, stateDir) => {
    assert.equal(readIsolation(join(stateDir, 'missing.conf')), 'host');
  });
});

test('the overcommit guard puts the host at risk when the margin falls under its threshold', () => {
  const guard = new OvercommitGuard(4 * GiB);
  // 1 GiB exposure against 5 GiB available: a 4 GiB margin is not under 4 GiB; 2 GiB exposure leaves 3.
  assert.equal(guard.assess({ pages_sharing: 262144 }, mem, 4096).risk.atRisk, false);
  const { risk } = guard.assess({ pages_sharing: 262144, ksm_zero_pages: 262144 }, mem, 4096);
  assert.deepEqual({ ...risk, at: 0 }, { at: 0, exposureBytes: 2 * GiB, availableBytes: 5 * GiB, marginBytes: 3 * GiB, thresholdBytes: 4 * GiB, atRisk: true });
});

test('the overcommit guard reports a change only on entering or leaving the risk zone', () => {
  const guard = new OvercommitGuard(4 * GiB);
  const changes = [262144, 524288, 524288, 262144, 0].map((pages) => guard.assess({ pages_sharing: pages }, mem, 4096).changed);
  assert.deepEqual(changes, [false, true, false, true, false]);
});

test('the overcommit guard never puts a host without merged pages at risk', () => {
  assert.equal(new OvercommitGuard(100 * GiB).assess({ pages_sharing: 0 }, mem, 4096).risk.atRisk, false);
});

test("the overcommit guard's default threshold is a tenth of MemTotal", () => {
  assert.equal(new OvercommitGuard().assess({ pages_sharing: 1 }, mem, 4096).risk.thresholdBytes, Math.round(1.6 * GiB));
});
