// The Tuner's lifecycle as an embedding VM manager sees it (issue 13 items 2, 3, 7): register() and
// unregister() through the registry, names used everywhere, exits seen within a second, convergence
// and per-VM events, an abortable start. A fake sysfs (KsmControl) and a scripted scan engine: no
// knob is written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tuner, type TuneDecision, type VmFigures, type VmsChange } from '../src/tune/tuner.js';
import { defaultConfig } from '../src/tune/config.js';
import type { KsmControl } from '../src/tune/observe.js';
import type { ScanFn } from '../src/tune/schedule.js';
import type { KsmKnobs } from '../src/tune/types.js';
import { Registry } from '../src/safety/registry.js';
import { discoverVms } from '../src/safety/vms.js';
import { spawnMerged } from '../src/launch/spawn.js';
import { ProcTree } from './helpers/proc-tree.js';
import { registeredSavings } from '../src/report/registered.js';
import { canAdmit } from '../src/safety/collect.js';

/** ksmd as a fake: while run=1 each read is one more full pass, and the VMs' pages merge in two passes. */
class FakeKsm implements KsmControl {
  settings: Record<string, number | string> = { run: 0, pages_to_scan: 100, sleep_millisecs: 20 };
  counters: Record<string, number> = { pages_shared: 0, pages_sharing: 0, pages_unshared: 0, pages_volatile: 0, full_scans: 0, pages_scanned: 0 };
  constructor(
    private readonly mergeable = 0,
    private readonly onMerge: (pagesSharing: number) => void = () => {},
  ) {}
  async read() {
    if (this.settings.run === 1) {
      this.counters.full_scans += 1;
      this.counters.pages_scanned += 100_000;
      this.counters.pages_sharing = Math.min(this.mergeable, this.counters.pages_sharing + Math.ceil(this.mergeable / 2));
      this.onMerge(this.counters.pages_sharing);
    }
    return { settings: { ...this.settings }, counters: { ...this.counters } };
  }
  async configure(w: Partial<KsmKnobs>) {
    for (const [k, v] of Object.entries(w)) if (v !== undefined) this.settings[k] = v;
  }
}

const PAGES = 262144;
/** Each VM holds 1 GiB of which half duplicates the others. */
const scan: ScanFn = async (targets) => ({
  pages: targets.length * PAGES,
  estimatedSavedBytes: targets.length * (PAGES / 2) * 4096,
  targets: targets.map((t) => ({ pid: (t as { pid: number }).pid, pages: PAGES, mergingPages: PAGES / 2 })),
});

const QEMU = (pid: number, name: string, ksmStat?: string) => ({
  pid,
  argv: ['/usr/bin/qemu-system-x86_64', '-name', `guest=${name}`, '-m', '1G'],
  exe: '/usr/bin/qemu-system-x86_64',
  rssKiB: 1024 * 1024,
  startTime: pid,
  ...(ksmStat === undefined ? {} : { ksmStat }),
});

function setup() {
  const tree = new ProcTree().add({ pid: 37, argv: [], comm: 'ksmd', ppid: 2, utime: 10, stime: 20 });
  const stateDir = mkdtempSync(join(tmpdir(), 'pf-lifecycle-'));
  const registry = new Registry({ stateDir, procRoot: tree.root });
  const config = { ...defaultConfig(), minSavingsBytes: 16 * 1024 * 1024 };
  return {
    tree,
    registry,
    config,
    dispose() {
      tree.dispose();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

function collect<T>(t: Tuner, event: 'vms' | 'vm-merged' | 'vm-exited' | 'converged'): T[] {
  const out: T[] = [];
  t.on(event, (x: unknown) => void out.push(x as T));
  return out;
}

test('register(pid, { name }) fires a vms event naming the process, and tuner.vms uses the name', async () => {
  const s = setup();
  s.tree.add({ pid: 500, argv: ['/opt/vmm/bin/guest-runner'], exe: '/opt/vmm/bin/guest-runner', comm: 'pf-guestsim', rssKiB: 4096, startTime: 500 });
  const t = new Tuner({ ksm: new FakeKsm(), scan, procRoot: s.tree.root, config: s.config, registry: s.registry, isolation: 'host', pollMs: 100, intervalMs: 60_000 });
  try {
    await t.start();
    const seen = once(t, 'vms');
    t.register(500, { name: 'vm-a' });
    const [change] = (await seen) as [VmsChange];
    assert.deepEqual(change.added.map((v) => [v.pid, v.vmm, v.name]), [[500, 'registered', 'vm-a']]);
    assert.deepEqual(t.vms.map((v) => [v.pid, v.name]), [[500, 'vm-a']]);
  } finally {
    await t.stop();
    s.dispose();
  }
});

test('a start() while another is under way settles with it: both resolve, one tuner running, one lock', async () => {
  const s = setup();
  const lock = join(mkdtempSync(join(tmpdir(), 'pf-lock-')), 'tune.lock');
  const t = new Tuner({ ksm: new FakeKsm(), scan, procRoot: s.tree.root, config: s.config, registry: s.registry, isolation: 'host', intervalMs: 60_000, lock: { path: lock } });
  try {
    const results = await Promise.allSettled([t.start(), t.start()]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled']);
  } finally {
    await t.stop();
    s.dispose();
    rmSync(join(lock, '..'), { recursive: true, force: true });
  }
});

test('a name given at registration wins over the VMM command line in tuner.vms and discoverVms', async () => {
  const s = setup();
  s.tree.add(QEMU(300, 'from-argv'));
  s.registry.add({ pid: 300, merge: true, via: 'spawn', name: 'vm-launched' });
  const t = new Tuner({ ksm: new FakeKsm(), scan, procRoot: s.tree.root, config: s.config, registry: s.registry, isolation: 'host', intervalMs: 60_000 });
  try {
    await t.start();
    assert.deepEqual(t.vms.map((v) => [v.pid, v.vmm, v.name]), [[300, 'qemu', 'vm-launched']]);
    const found = await discoverVms({ procRoot: s.tree.root, registry: s.registry });
    assert.deepEqual(found.map((v) => [v.pid, v.name]), [[300, 'vm-launched']]);
  } finally {
    await t.stop();
    s.dispose();
  }
});

test('stop() leaves registrations in place: the next tuner watches them under their names', async () => {
  const s = setup();
  s.tree.add({ pid: 501, argv: ['guest'], comm: 'guest', rssKiB: 4096, startTime: 501 });
  const first = new Tuner({ ksm: new FakeKsm(), scan, procRoot: s.tree.root, config: s.config, registry: s.registry, isolation: 'host', intervalMs: 60_000 });
  const second = new Tuner({ ksm: new FakeKsm(), scan, procRoot: s.tree.root, config: s.config, registry: s.registry, isolation: 'host', intervalMs: 60_000 });
  try {
    await first.start();
    first.register(501, { name: 'vm-b' });
    await first.stop();
    assert.deepEqual(s.registry.list().map((r) => [r.pid, r.name]), [[501, 'vm-b']]);
    await second.start();
    assert.deepEqual(second.vms.map((v) => [v.pid, v.name]), [[501, 'vm-b']]);
  } finally {
    await first.stop();
    await second.stop();
    s.dispose();
  }
});

test('unregister(pid) takes the process out of the registry and fires a vms event removing it', async () => {
  const s = setup();
  s.tree.add({ pid: 502, argv: ['guest'], comm: 'guest', rssKiB: 4096, startTime: 502 });
  const t = new Tuner({ ksm: new FakeKsm(), scan, procRoot: s.tree.root, config: s.config, registry: s.registry, isolation: 'host', pollMs: 100, intervalMs: 60_000 });
  try {
    t.register(502, { name: 'vm-c' });
    await t.start();
    const seen = once(t, 'vms');
    t.unregister(502);
    const [change] = (await seen) as [VmsChange];
    assert.deepEqual(change.removed, [502]);
    assert.deepEqual(s.registry.list(), []);
    assert.deepEqual(t.vms, []);
  } finally {
    await t.stop();
    s.dispose();
  }
});

test('waitForConvergence resolves with the decision that stopped ksmd, after converged and one vm-merged per VM with its figures', async () => {
  const s = setup();
  const stat = (merging: number) => `ksm_rmap_items 100\nksm_zero_pages 0\nksm_merging_pages ${merging}\nksm_process_profit ${merging * 4096 - 6400}\n`;
  s.tree.add(QEMU(300, 'a', stat(0))).add(QEMU(301, 'b', stat(0)));
  // Each VM's ksm_stat follows what the fake ksmd merged, half of it each.
  const ksm = new FakeKsm(2 * (PAGES / 2), (sharing) => {
    for (const pid of [300, 301]) s.tree.write(`${pid}/ksm_stat`, stat(sharing / 2));
  });
  const t = new Tuner({ ksm, scan, procRoot: s.tree.root, config: s.config, registry: s.registry, isolation: 'host', pollMs: 100, intervalMs: 50 });
  const converged = collect<TuneDecision>(t, 'converged');
  const merged = collect<VmFigures>(t, 'vm-merged');
  try {
    await t.start();
    const d = await t.waitForConvergence({ timeoutMs: 20_000 });
    assert.equal(d.knobs.run, 0);
    assert.match(d.reasons.join('\n'), /merging flattened/);
    assert.deepEqual(converged, [d]);
    assert.deepEqual(
      merged.map((m) => [m.pid, m.name, m.mergingPages, m.profitBytes, m.at]),
      [
        [300, 'a', 131072, 131072 * 4096 - 6400, d.at],
        [301, 'b', 131072, 131072 * 4096 - 6400, d.at],
      ],
    );
    assert.equal(await t.waitForConvergence(), d, 'resolves at once while merging stays stopped');
  } finally {
    await t.stop();
    s.dispose();
  }
});

test('waitForConvergence rejects with ETIMEDOUT, with an AbortError on abort, and with ERR_TUNER_STOPPED on stop', async () => {
  const s = setup();
  // No VM and no estimate: the adaptive policy has nothing to converge on.
  const t = new Tuner({ ksm: new FakeKsm(), scan, procRoot: s.tree.root, config: s.config, registry: s.registry, isolation: 'host', intervalMs: 60_000 });
  try {
    await assert.rejects(t.waitForConvergence(), { code: 'ERR_TUNER_STOPPED' });
    await t.start();
    await assert.rejects(t.waitForConvergence({ timeoutMs: 50 }), { code: 'ETIMEDOUT' });
    const ac = new AbortController();
    const aborted = t.waitForConvergence({ signal: ac.signal });
    ac.abort('shutting down');
    await assert.rejects(aborted, { code: 'ABORT_ERR', cause: 'shutting down' });
    const stopped = t.waitForConvergence();
    await t.stop();
    await assert.rejects(stopped, { code: 'ERR_TUNER_STOPPED' });
    assert.throws(() => t.waitForConvergence({ timeoutMs: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  } finally {
    await t.stop();
    s.dispose();
  }
});

test('a VM that goes away fires vm-exited with its last figures, and the next decision does not list it', async () => {
  const s = setup();
  s.tree.add(QEMU(300, 'a', 'ksm_rmap_items 1\nksm_zero_pages 5\nksm_merging_pages 77\nksm_process_profit 300000\n')).add(QEMU(301, 'b'));
  const t = new Tuner({ ksm: new FakeKsm(), scan, procRoot: s.tree.root, config: s.config, registry: s.registry, isolation: 'host', pollMs: 60_000, intervalMs: 60_000 });
  const exited = collect<VmFigures>(t, 'vm-exited');
  try {
    await t.start();
    s.tree.remove(300);
    const d = await t.retune();
    assert.deepEqual(d?.vms.map((v) => v.pid), [301]);
    assert.deepEqual(
      exited.map((e) => [e.pid, e.name, e.mergingPages, e.zeroPages, e.profitBytes]),
      [[300, 'a', 77, 5, 300000]],
    );
  } finally {
    await t.stop();
    s.dispose();
  }
});

test('exits are seen within a second: a spawnMerged child by its exit event, another registered process by polling', async (tc) => {
  const stateDir = mkdtempSync(join(tmpdir(), 'pf-exits-'));
  const registry = new Registry({ stateDir });
  // Real /proc: a scripted scan engine and a fake ksmd, so nothing is scanned or written.
  const t = new Tuner({ ksm: new FakeKsm(), scan, registry, isolation: 'host', intervalMs: 60_000 });
  const child = spawnMerged('sleep', ['60'], { name: 'vm-child', registry, isolation: 'host', mergeAny: false });
  const other = spawn('sleep', ['60'], { stdio: 'ignore' });
  try {
    await t.start();
    t.register(other.pid!, { name: 'vm-other' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(
      t.vms.filter((v) => v.pid === child.pid || v.pid === other.pid).map((v) => v.name).sort(),
      ['vm-child', 'vm-other'],
    );
    for (const [proc, name] of [[child, 'vm-child'], [other, 'vm-other']] as const) {
      const gone = new Promise<number>((resolve) => {
        const onExit = (vm: VmFigures): void => {
          if (vm.pid !== proc.pid) return;
          t.off('vm-exited', onExit);
          resolve(performance.now());
        };
        t.on('vm-exited', onExit);
      });
      const killed = performance.now();
      proc.kill('SIGKILL');
      const ms = (await gone) - killed;
      tc.diagnostic(`${name}: exit seen after ${Math.round(ms)} ms`);
      assert.ok(ms < 1000, `${name}: exit seen after ${Math.round(ms)} ms`);
      const d = await t.retune();
      assert.equal(d?.vms.some((v) => v.pid === proc.pid), false, `${name}: the next decision does not list it`);
    }
  } finally {
    child.kill('SIGKILL');
    other.kill('SIGKILL');
    await t.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('an aborted start() rejects with an AbortError and leaves nothing running', async () => {
  const s = setup();
  const t = new Tuner({ ksm: new FakeKsm(), scan, procRoot: s.tree.root, config: s.config, registry: s.registry, isolation: 'host' });
  try {
    const reason = new Error('manager shutting down');
    await assert.rejects(t.start({ signal: AbortSignal.abort(reason) }), { code: 'ABORT_ERR', cause: reason });
    const ac = new AbortController();
    const starting = t.start({ signal: ac.signal });
    ac.abort();
    await assert.rejects(starting, { code: 'ABORT_ERR' });
    await assert.rejects(t.waitForConvergence(), { code: 'ERR_TUNER_STOPPED' }, 'not running');
    await assert.rejects(t.start({ signal: 'x' as unknown as AbortSignal }), { code: 'ERR_INVALID_ARG_TYPE' });
  } finally {
    await t.stop();
    s.dispose();
  }
});

test('registeredSavings and canAdmit take an AbortSignal: an aborted one rejects with an AbortError carrying the reason', async () => {
  const s = setup();
  try {
    const reason = new Error('request closed');
    await assert.rejects(registeredSavings({ registry: s.registry, procRoot: s.tree.root, signal: AbortSignal.abort(reason) }), {
      code: 'ABORT_ERR',
      cause: reason,
    });
    await assert.rejects(canAdmit(1 << 30, { procRoot: s.tree.root, signal: AbortSignal.abort(reason) }), { code: 'ABORT_ERR', cause: reason });
    await assert.rejects(canAdmit(1 << 30, { signal: 'x' as unknown as AbortSignal }), { code: 'ERR_INVALID_ARG_TYPE' });
  } finally {
    s.dispose();
  }
});

/** A scan engine that finds nothing to merge: the adaptive policy stops ksmd and stays stopped. */
const scanNothing: ScanFn = async (targets) => ({
  pages: targets.length * PAGES,
  estimatedSavedBytes: 0,
  targets: targets.map((t) => ({ pid: (t as { pid: number }).pid, pages: PAGES, mergingPages: 0 })),
});

/** Starts a Tuner deciding every 50 ms over two VMs with nothing to merge; resolves once it has decided so. */
async function stoppedTuner(s: ReturnType<typeof setup>): Promise<{ t: Tuner; decisions: TuneDecision[] }> {
  s.tree.add(QEMU(300, 'a')).add(QEMU(301, 'b'));
  const t = new Tuner({ ksm: new FakeKsm(), scan: scanNothing, procRoot: s.tree.root, config: s.config, registry: s.registry, isolation: 'host', pollMs: 60_000, intervalMs: 50 });
  const decisions: TuneDecision[] = [];
  const settled = new Promise<void>((resolve) =>
    t.on('decision', (d) => {
      decisions.push(d);
      if (d.estimatedBytes !== null) resolve();
    }),
  );
  await t.start();
  await settled;
  return { t, decisions };
}

test('while ksmd is stopped and nothing changes, no decision is made at each interval', async () => {
  const s = setup();
  const { t, decisions } = await stoppedTuner(s);
  try {
    const before = decisions.length;
    await new Promise((resolve) => setTimeout(resolve, 600)); // 12 intervals
    assert.deepEqual(decisions.slice(before), []);
  } finally {
    await t.stop();
    s.dispose();
  }
});

test('while ksmd is stopped, memory turning tight brings a decision at the next interval', async () => {
  const s = setup();
  const { t, decisions } = await stoppedTuner(s);
  try {
    const before = decisions.length;
    s.tree.write('meminfo', 'MemTotal:       16777216 kB\nMemFree:           65536 kB\nMemAvailable:     102400 kB\nBuffers:               0 kB\nCached:                0 kB\n');
    for (let i = 0; i < 40 && decisions.length === before; i++) await new Promise((resolve) => setTimeout(resolve, 25));
    assert.match(decisions[before]?.reasons.join('\n') ?? '', /MemAvailable is 0\.6% of MemTotal/);
  } finally {
    await t.stop();
    s.dispose();
  }
});

test("another process's registration is seen through the registry's change notice, before any poll", async () => {
  const s = setup();
  s.tree.add({ pid: 400, argv: ['/usr/bin/worker'], comm: 'worker', startTime: 400, rssKiB: 1024 });
  const t = new Tuner({ ksm: new FakeKsm(), scan, procRoot: s.tree.root, config: s.config, registry: s.registry, isolation: 'host', pollMs: 60_000, intervalMs: 60_000 });
  try {
    await t.start();
    const added = new Promise<VmsChange>((resolve) => t.on('vms', resolve));
    // Written as pagefuse exec in another process writes it: this process's change emitter never hears of it.
    const other = new Registry({ stateDir: s.registry.stateDir, procRoot: s.tree.root });
    const dir = join(other.stateDir, 'processes');
    writeFileSync(join(dir, '400.json.tmp'), JSON.stringify({ pid: 400, startTime: 400, merge: true, via: 'exec', name: 'vm-w', registeredAt: new Date().toISOString() }));
    renameSync(join(dir, '400.json.tmp'), join(dir, '400.json'));
    const change = await Promise.race([added, new Promise<undefined>((resolve) => setTimeout(resolve, 2000))]);
    assert.deepEqual(change?.added.map((vm) => [vm.pid, vm.name]), [[400, 'vm-w']]);
  } finally {
    await t.stop();
    s.dispose();
  }
});
