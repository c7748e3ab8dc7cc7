// The Tuner's loop on a fixture /proc tree, a fake sysfs (through KsmControl) and a scripted scan engine:
// what the real tests cannot set up (a second VMM appearing on cue, the advisor's mode switch resetting pages_to_scan).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Tuner, type TuneDecision, type TuneSavings } from '../src/tune/tuner.js';
import { defaultConfig } from '../src/tune/config.js';
import type { KsmControl } from '../src/tune/observe.js';
import type { ScanFn } from '../src/tune/schedule.js';
import type { KsmKnobs } from '../src/tune/types.js';
import { ProcTree } from './helpers/proc-tree.js';
import { KsmdClock, KSMD_MISSING_RETRY_MS } from '../src/host/ksmd.js';
import { Region, PAGE_SIZE } from '../src/region.js';
import { Registry } from '../src/safety/registry.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';

class FakeKsm implements KsmControl {
  settings: Record<string, number | string> = { run: 0, pages_to_scan: 100, sleep_millisecs: 20, advisor_mode: 'none', advisor_max_cpu: 70 };
  counters: Record<string, number> = { pages_shared: 0, pages_sharing: 0, pages_unshared: 0, pages_volatile: 0, full_scans: 0, pages_scanned: 0 };
  writes: Partial<KsmKnobs>[] = [];
  async read() {
    return { settings: { ...this.settings }, counters: { ...this.counters } };
  }
  async configure(w: Partial<KsmKnobs>) {
    this.writes.push({ ...w });
    const mode = w.advisor_mode ?? this.settings.advisor_mode;
    if (w.pages_to_scan !== undefined && mode === 'scan-time') throw Object.assign(new Error('EINVAL pages_to_scan'), { code: 'EINVAL' });
    // As the kernel does: switching the advisor mode resets pages_to_scan (500 into scan-time, 100 out of it).
    if (w.advisor_mode !== undefined && w.advisor_mode !== this.settings.advisor_mode) {
      this.settings.advisor_mode = w.advisor_mode;
      this.settings.pages_to_scan = w.advisor_mode === 'scan-time' ? 500 : 100;
    }
    for (const [k, v] of Object.entries(w)) if (k !== 'advisor_mode' && v !== undefined) this.settings[k] = v;
  }
}

const QEMU = (pid: number, name: string) => ({
  pid,
  argv: ['/usr/bin/qemu-system-x86_64', '-name', `guest=${name}`, '-m', '1G'],
  exe: '/usr/bin/qemu-system-x86_64',
  rssKiB: 1024 * 1024,
  startTime: pid,
});

/** Each VM holds 262144 pages of which half duplicate the others. */
const scan: ScanFn = async (targets) => ({
  pages: targets.length * 262144,
  estimatedSavedBytes: targets.length * 131072 * 4096,
  targets: targets.map((t) => ({ pid: (t as { pid: number }).pid, pages: 262144, mergingPages: 131072 })),
});

function setup() {
  const tree = new ProcTree().add(QEMU(300, 'a')).add({ pid: 37, argv: [], comm: 'ksmd', ppid: 2, utime: 10, stime: 20 });
  const ksm = new FakeKsm();
  const config = { ...defaultConfig(), minSavingsBytes: 16 * 1024 * 1024 };
  return { tree, ksm, config };
}

async function nextDecision(t: Tuner, pred: (d: TuneDecision) => boolean, ms = 3000): Promise<TuneDecision> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ms);
  try {
    for (;;) {
      const [d] = (await once(t, 'decision', { signal: ac.signal })) as [TuneDecision];
      if (pred(d)) return d;
    }
  } finally {
    clearTimeout(timer);
  }
}

test('adaptive Tuner: scans, starts ksmd at the budgeted pace, sees a new VM within a second, restores the knobs it found', async () => {
  const { tree, ksm, config } = setup();
  const t = new Tuner({ ksm, scan, procRoot: tree.root, config, pollMs: 100, intervalMs: 60_000 });
  const errors: Error[] = [];
  t.on('error', (e) => errors.push(e));
  try {
    const started = nextDecision(t, (d) => d.changed.run === 1);
    await t.start();
    const d = await started;
    assert.deepEqual([d.knobs, d.changed], [{ pages_to_scan: 6400, sleep_millisecs: 48, run: 1 }, { pages_to_scan: 6400, sleep_millisecs: 48, run: 1 }]);
    assert.match(d.reasons.join('\n'), /estimate 512\.0 MiB saveable, 0\.0 MiB saved \(all VMs scanned\)/);
    assert.deepEqual(ksm.settings.run, 1);

    const t0 = performance.now();
    const seen = once(t, 'vms');
    const rescanned = nextDecision(t, (x) => /estimate 1024\.0 MiB/.test(x.reasons.join('\n')));
    tree.add(QEMU(301, 'b'));
    const [change] = (await seen) as [{ added: { name: string }[] }];
    assert.deepEqual(change.added.map((v) => v.name), ['b']);
    await rescanned;
    assert.ok(performance.now() - t0 < 1000, `decided on the new VM's scan within a second (${Math.round(performance.now() - t0)} ms)`);

    await t.stop();
    assert.deepEqual(ksm.settings, { run: 0, pages_to_scan: 100, sleep_millisecs: 20, advisor_mode: 'none', advisor_max_cpu: 70 });
    assert.deepEqual(errors, []);
  } finally {
    await t.stop();
    tree.dispose();
  }
});

test('adaptive Tuner: when a VM exits, the VMs scanned with it are scanned again, and the estimate no longer counts what they had in common with it', async () => {
  // Three guests of one image: each of the 262144 pages of each guest has a copy in every other, so the VMs
  // scanned together save all but one copy of each page (two of three, then one of two).
  const calls: number[][] = [];
  const imageScan: ScanFn = async (targets) => {
    const pids = targets.map((x) => (x as { pid: number }).pid);
    calls.push(pids);
    return {
      pages: pids.length * 262144,
      estimatedSavedBytes: (pids.length - 1) * 262144 * 4096,
      targets: pids.map((pid) => ({ pid, pages: 262144, mergingPages: pids.length > 1 ? 262144 : 0 })),
    };
  };
  const { ksm, config } = setup();
  const tree = new ProcTree().add(QEMU(300, 'a')).add(QEMU(301, 'b')).add(QEMU(302, 'c')).add({ pid: 37, argv: [], comm: 'ksmd', ppid: 2, utime: 10, stime: 20 });
  const t = new Tuner({ ksm, scan: imageScan, procRoot: tree.root, config, pollMs: 100, intervalMs: 60_000 });
  const errors: Error[] = [];
  t.on('error', (e) => errors.push(e));
  try {
    const first = nextDecision(t, (d) => /estimate 2048\.0 MiB saveable/.test(d.reasons.join('\n')));
    await t.start();
    await first;
    const after = nextDecision(t, (d) => /estimate 1024\.0 MiB saveable/.test(d.reasons.join('\n')));
    tree.remove(302);
    await after;
    assert.deepEqual(calls.at(-1)?.sort(), [300, 301]);
    assert.deepEqual(errors, []);
  } finally {
    await t.stop();
    tree.dispose();
  }
});

test('while ksmd is stopped a scan round also hashes on the whole CPUs of its budget; while ksmd runs, on one thread', async () => {
  const { tree, ksm, config } = setup();
  const asked: (number | undefined)[] = [];
  const recording: ScanFn = async (targets, o) => {
    asked.push(o.threads);
    return scan(targets, o);
  };
  const t = new Tuner({ ksm, scan: recording, procRoot: tree.root, config, cpuBudget: 1, pollMs: 100, intervalMs: 60_000 });
  try {
    const started = nextDecision(t, (d) => d.changed.run === 1);
    await t.start();
    await started;
    const rescanned = nextDecision(t, (x) => /estimate 1024\.0 MiB/.test(x.reasons.join('\n')));
    tree.add(QEMU(301, 'b'));
    await rescanned;
    assert.deepEqual(asked, [Math.min(2, availableParallelism()), undefined]);
  } finally {
    await t.stop();
    tree.dispose();
  }
});

test("a decision publishes the scan's huge pages ksmd splits one per full scan beside the estimate, which leaves them out", async () => {
  const { tree, ksm, config } = setup();
  // VM a: 31 such huge pages holding 15281 zero subpages (the QEMU guests' figures, docs/savings.md).
  const slow: ScanFn = async (targets, o) => {
    const r = await scan(targets, o);
    return { ...r, targets: r.targets.map((x) => ({ ...x, thpSlowSplit: { hugePages: 31, zeroPages: 15281 } })) };
  };
  const t = new Tuner({ ksm, scan: slow, procRoot: tree.root, config, pollMs: 100, intervalMs: 60_000 });
  try {
    const decided = nextDecision(t, (d) => d.estimatedBytes !== null);
    await t.start();
    const d = await decided;
    assert.deepEqual([d.estimatedBytes, d.thpSlowSplitPages, d.thpSlowSplitZeroBytes], [131072 * 4096, 31, 15281 * 4096]);
  } finally {
    await t.stop();
    tree.dispose();
  }
});

/** The scripted scan, taking `ms` and logging when each round began and which pids it held. */
function slowScan(ms: number, log: { at: number; pids: number[] }[]): ScanFn {
  return async (targets, options) => {
    log.push({ at: performance.now(), pids: targets.map((t) => (t as { pid: number }).pid) });
    await new Promise((resolve) => setTimeout(resolve, ms));
    return scan(targets, options);
  };
}

test('adaptive Tuner: the VMs found at start are scanned before the first decision is taken', async () => {
  const { tree, ksm, config } = setup();
  const rounds: { at: number; pids: number[] }[] = [];
  const t = new Tuner({ ksm, scan: slowScan(150, rounds), procRoot: tree.root, config, pollMs: 100, intervalMs: 60_000 });
  const decidedAt: number[] = [];
  t.on('decision', () => decidedAt.push(performance.now()));
  try {
    const first = once(t, 'decision');
    await t.start();
    await first;
    assert.deepEqual(rounds.map((r) => r.pids), [[300]]);
    assert.ok(rounds[0].at < decidedAt[0], `the scan round began ${(rounds[0].at - decidedAt[0]).toFixed(1)} ms after the first decision`);
  } finally {
    await t.stop();
    tree.dispose();
  }
});

test("adaptive Tuner: the first decision waits for the start's scan round to end, and starts ksmd", async () => {
  const { tree, ksm, config } = setup();
  const rounds: { at: number; pids: number[] }[] = [];
  const t = new Tuner({ ksm, scan: slowScan(300, rounds), procRoot: tree.root, config, pollMs: 100, intervalMs: 60_000 });
  const decisions: { at: number; d: TuneDecision }[] = [];
  t.on('decision', (d: TuneDecision) => decisions.push({ at: performance.now(), d }));
  try {
    const first = once(t, 'decision');
    await t.start();
    await first;
    assert.equal(decisions.length, 1);
    assert.ok(decisions[0].at - rounds[0].at >= 295, `the first decision came ${(decisions[0].at - rounds[0].at).toFixed(1)} ms into the 300 ms round`);
    // The default budget's pace at the initial guess of ksmd's throughput: 400000 × 0.25 × 0.048 s / 0.75.
    assert.deepEqual(decisions[0].d.changed, { pages_to_scan: 6400, sleep_millisecs: 48, run: 1 });
  } finally {
    await t.stop();
    tree.dispose();
  }
});

test('adaptive Tuner: with memory tight at start, the first decision starts ksmd at once, before the scan round ends', async () => {
  const { ksm, config } = setup();
  const tree = new ProcTree('MemTotal:       16777216 kB\nMemFree:          524288 kB\nMemAvailable:    1048576 kB\n')
    .add(QEMU(300, 'a'))
    .add({ pid: 37, argv: [], comm: 'ksmd', ppid: 2, utime: 10, stime: 20 });
  const rounds: { at: number; pids: number[] }[] = [];
  const t = new Tuner({ ksm, scan: slowScan(300, rounds), procRoot: tree.root, config, pollMs: 100, intervalMs: 60_000 });
  try {
    const first = once(t, 'decision') as Promise<[TuneDecision]>;
    await t.start();
    const [d] = await first;
    assert.ok(performance.now() - rounds[0].at < 300, 'the first decision waited for the scan round');
    assert.equal(d.knobs.run, 1);
    assert.match(d.reasons[0], /^MemAvailable is 6\.3% of MemTotal \(< \d+%\); no scan estimate yet, so merge anyway$/);
  } finally {
    await t.stop();
    tree.dispose();
  }
});

test('adaptive Tuner: a decision taken while a VM is being scanned does not queue a second scan of it', async () => {
  const { tree, ksm, config } = setup();
  const rounds: { at: number; pids: number[] }[] = [];
  const t = new Tuner({ ksm, scan: slowScan(150, rounds), procRoot: tree.root, config, pollMs: 100, intervalMs: 60_000 });
  try {
    const running = nextDecision(t, (d) => d.changed.run === 1);
    await t.start();
    await running;
    await new Promise((resolve) => setTimeout(resolve, 500)); // five polls, each of which would start a due round
    assert.deepEqual(rounds.map((r) => r.pids), [[300]]);
  } finally {
    await t.stop();
    tree.dispose();
  }
});

test('adaptive Tuner: stop() while a decision that starts ksmd is writing leaves no pacer timer behind', async () => {
  const { tree, ksm, config } = setup();
  let release: () => void = () => undefined;
  const writing = new Promise<void>((resolve) => {
    const configure = ksm.configure.bind(ksm);
    ksm.configure = async (w) => {
      if (w.run === 1) {
        resolve();
        await new Promise<void>((r) => (release = r));
      }
      return configure(w);
    };
  });
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const before = timers();
  const t = new Tuner({ ksm, scan, procRoot: tree.root, config, cpuBudget: 0.25, pollMs: 100, intervalMs: 60_000 });
  try {
    await t.start();
    await writing;
    const stopped = t.stop();
    release();
    await stopped;
    assert.equal(timers(), before);
  } finally {
    await t.stop();
    tree.dispose();
  }
});

test("adaptive Tuner: between decisions, the pacer cuts pages_to_scan as soon as ksmd's pages per CPU-second fall", async () => {
  const { tree, ksm, config } = setup();
  // While ksmd runs, each look at KSM finds 1250 more pages scanned and 31.25 ms more of ksmd's CPU time:
  // 40 k pages per CPU-second, a tenth of the 400 k the first decision's pace assumed.
  let cpuNs = 0;
  const read = ksm.read.bind(ksm);
  ksm.read = async () => {
    if (ksm.settings.run === 1) {
      ksm.counters.pages_scanned += 1250;
      cpuNs += 31_250_000;
      tree.write('37/schedstat', `${cpuNs} 0 0\n`);
    }
    return read();
  };
  const t = new Tuner({ ksm, scan, procRoot: tree.root, config, cpuBudget: 0.25, pollMs: 100, intervalMs: 60_000 });
  const decisions: TuneDecision[] = [];
  t.on('decision', (d) => decisions.push(d));
  try {
    const started = nextDecision(t, (d) => d.changed.run === 1);
    await t.start();
    await started;
    const before = ksm.writes.length;
    const paced = decisions.length;
    for (let i = 0; i < 40 && ksm.writes.length === before; i++) await new Promise((r) => setTimeout(r, 50));
    // 0.25 CPU at 48 ms off the CPU per batch (too few batches yet to learn it): 40000 × 0.25 × 0.048 / 0.75 pages.
    assert.deepEqual(ksm.writes.slice(before, before + 1), [{ pages_to_scan: 640 }]);
    assert.equal(decisions.length, paced, 'no decision in between: the pacer wrote it');
  } finally {
    await t.stop();
    tree.dispose();
  }
});

test('adaptive Tuner: the pacer reads four of KSM\'s files, not the whole directory, and writes pages_to_scan alone', async () => {
  const { tree, config } = setup();
  // A control with one-file reads and writes (as Ksm has): ksmd at 40 k pages per CPU-second, as above.
  class OneFileKsm extends FakeKsm {
    reads = 0;
    gets: string[] = [];
    sets: [string, number | string][] = [];
    cpuNs = 0;
    override async read() {
      this.reads++;
      return super.read();
    }
    async get(name: string) {
      this.gets.push(name);
      if (name === 'pages_scanned' && this.settings.run === 1) {
        this.counters.pages_scanned += 1250;
        this.cpuNs += 31_250_000;
        tree.write('37/schedstat', `${this.cpuNs} 0 0\n`);
      }
      return this.settings[name] ?? this.counters[name];
    }
    async set(key: keyof KsmKnobs, value: number | string) {
      this.sets.push([key, value]);
      this.settings[key] = value;
    }
  }
  const ksm = new OneFileKsm();
  const t = new Tuner({ ksm, scan, procRoot: tree.root, config, cpuBudget: 0.25, pollMs: 100, intervalMs: 60_000 });
  try {
    const started = nextDecision(t, (d) => d.changed.run === 1);
    await t.start();
    await started;
    const reads = ksm.reads;
    const writes = ksm.writes.length;
    for (let i = 0; i < 40 && ksm.sets.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(ksm.sets, [['pages_to_scan', 640]]);
    assert.deepEqual(ksm.gets.slice(0, 4), ['pages_scanned', 'run', 'pages_to_scan', 'sleep_millisecs']);
    assert.equal(ksm.reads, reads, 'no read of the whole directory between decisions');
    assert.equal(ksm.writes.length, writes, 'no configure() for the pacer\'s write');
  } finally {
    await t.stop();
    tree.dispose();
  }
});

test('kernel-advisor Tuner: hands over to scan-time, and stop puts back advisor_mode, advisor_max_cpu and pages_to_scan', async () => {
  const { tree, ksm, config } = setup();
  ksm.settings.pages_to_scan = 1234;
  const t = new Tuner({ policy: 'kernel-advisor', cpuBudget: 0.3, ksm, scan, procRoot: tree.root, config, pollMs: 100 });
  try {
    const started = nextDecision(t, (d) => d.changed.run === 1);
    await t.start();
    assert.deepEqual((await started).changed, { advisor_mode: 'scan-time', advisor_max_cpu: 30, run: 1 });
    assert.equal(ksm.settings.pages_to_scan, 500, 'the fake kernel reset it on the switch');
    await t.stop();
    assert.deepEqual(ksm.settings, { run: 0, pages_to_scan: 1234, sleep_millisecs: 20, advisor_mode: 'none', advisor_max_cpu: 70 });
  } finally {
    await t.stop();
    tree.dispose();
  }
});

test('dry run decides and writes nothing; keepKnobs leaves the decided knobs; retune() decides at once', async () => {
  const { tree, ksm, config } = setup();
  tree.add({ ...QEMU(301, 'b'), rssKiB: 14 * 1024 * 1024 });
  const dry = new Tuner({ policy: 'ksmtuned', ksm, procRoot: tree.root, config, dryRun: true });
  try {
    await dry.start();
    const d = await dry.retune();
    assert.deepEqual(d?.changed, { pages_to_scan: 64, sleep_millisecs: 10, run: 1 });
    assert.equal(d?.dryRun, true);
    await dry.stop();
    assert.deepEqual(ksm.writes, []);
  } finally {
    await dry.stop();
  }
  const keep = new Tuner({ policy: 'ksmtuned', ksm, procRoot: tree.root, config, keepKnobs: true });
  try {
    await keep.start();
    await keep.retune();
    await keep.stop();
    assert.deepEqual([ksm.settings.run, ksm.settings.pages_to_scan, ksm.settings.sleep_millisecs], [1, 64, 10]);
  } finally {
    await keep.stop();
    tree.dispose();
  }
});

test('register(Region) scans the Region itself and watches this process for its merged pages; register refuses other things', async () => {
  const { tree, ksm, config } = setup();
  tree.add({ pid: process.pid, argv: ['node', 'test'], exe: '/usr/bin/node', comm: 'node', rssKiB: 50_000 });
  const seen: unknown[][] = [];
  const recording: ScanFn = async (targets, o) => {
    seen.push(targets);
    return scan(targets.map((t) => (t instanceof Region ? { pid: 0 } : t)), o);
  };
  const stateDir = mkdtempSync(join(tmpdir(), 'pf-tuner-reg-'));
  const registry = new Registry({ stateDir, procRoot: tree.root });
  const t = new Tuner({ ksm, scan: recording, procRoot: tree.root, config, pollMs: 100, registry, isolation: 'host' });
  const region = Region.alloc(4 * PAGE_SIZE);
  try {
    t.register(region);
    assert.throws(() => t.register('a region' as unknown as number), { name: 'TypeError', message: /expected a pid or a Region/ });
    const first = nextDecision(t, (d) => d.estimatedBytes !== null);
    await t.start();
    await first;
    const last = seen.at(-1)!;
    assert.equal(last.includes(region), true, 'the Region is a scan target');
    assert.deepEqual(last.filter((x) => !(x instanceof Region)).map((x) => (x as { pid: number }).pid), [300], 'this process is not scanned by pid');
    assert.equal(t.vms.some((v) => v.pid === process.pid && v.vmm === 'registered'), true, 'this process is watched');
    assert.deepEqual(registry.list().map((r) => [r.pid, r.via, r.merge]), [[process.pid, 'register', true]]);
  } finally {
    await t.stop();
    region.dispose();
    tree.dispose();
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('processes registered host-wide (pagefuse exec, spawnMerged) are watched by every tuner', async () => {
  const { tree, ksm, config } = setup();
  tree.add({ pid: 302, argv: ['/usr/bin/firecracker-like', '--no-id'], exe: '/usr/bin/firecracker-like', comm: 'vmm', rssKiB: 4096, startTime: 302 });
  const stateDir = mkdtempSync(join(tmpdir(), 'pf-tuner-host-'));
  const registry = new Registry({ stateDir, procRoot: tree.root });
  registry.add({ pid: 302, merge: true, via: 'spawn', tenant: 'acme' });
  const t = new Tuner({ ksm, scan, procRoot: tree.root, config, pollMs: 100, registry, isolation: 'host' });
  try {
    await t.start();
    assert.deepEqual(t.vms.map((v) => [v.pid, v.vmm]), [[300, 'qemu'], [302, 'registered']]);
    await t.stop();
    assert.deepEqual(registry.list().map((r) => r.pid), [302], "another's registration stays");
  } finally {
    await t.stop();
    tree.dispose();
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('isolation: zero-only never runs ksmd and refuses register(); tenant refuses a second tenant unless forced', async () => {
  const { tree, ksm, config } = setup();
  tree.add(QEMU(301, 'b'));
  const stateDir = mkdtempSync(join(tmpdir(), 'pf-tuner-iso-'));
  const registry = new Registry({ stateDir, procRoot: tree.root });
  const zero = new Tuner({ ksm, scan, procRoot: tree.root, config, pollMs: 100, registry, isolation: 'zero-only' });
  try {
    assert.throws(() => zero.register(300, { tenant: 'acme' }), { code: 'ERR_ISOLATION', message: /zero-only/ });
    const decided = nextDecision(zero, (d) => d.estimatedBytes !== null);
    await zero.start();
    const d = await decided;
    assert.equal(d.knobs.run, 0, 'the scan says 1 GiB could be saved, yet ksmd stays off');
    assert.match(d.reasons.join('\n'), /isolation is zero-only: KSM content merging stays off/);
    assert.equal(ksm.settings.run, 0);
    assert.equal(ksm.writes.some((w) => w.run === 1), false);
  } finally {
    await zero.stop();
  }
  const tenant = new Tuner({ ksm, scan, procRoot: tree.root, config, registry, isolation: 'tenant' });
  try {
    tenant.register(300, { tenant: 'acme', name: 'vm-a' });
    tenant.register(300, { tenant: 'acme' });
    assert.throws(() => tenant.register(301, { tenant: 'globex' }), { code: 'ERR_ISOLATION', message: /tenant 'acme' already has mergeable VMs \(pid 300\)/ });
    assert.throws(() => tenant.register(301), { code: 'ERR_ISOLATION', message: /needs a tenant id/ });
    assert.throws(() => tenant.register(301, { tenant: 'bad tenant' }), RangeError);
    tenant.register(301, { tenant: 'globex', force: true });
    assert.deepEqual(registry.list().map((r) => [r.pid, r.tenant]), [[300, 'acme'], [301, 'globex']]);
    await tenant.stop();
    assert.deepEqual(registry.list().map((r) => r.pid), [300, 301], 'registrations outlive the tuner');
  } finally {
    await tenant.stop();
    tree.dispose();
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('overcommit guard: risk fires when the un-share exposure eats the margin, and again when it clears', async () => {
  const { tree, ksm, config } = setup();
  // meminfo: MemTotal 16 GiB, MemAvailable 10 GiB, no swap; the default threshold is 10 % of MemTotal.
  const GiB = 1024 ** 3;
  ksm.counters.pages_sharing = (9 * GiB) / PAGE_SIZE - 1000;
  ksm.counters.ksm_zero_pages = 1000;
  const t = new Tuner({ policy: 'ksmtuned', ksm, procRoot: tree.root, config, isolation: 'host' });
  const risks: { atRisk: boolean; exposureBytes: number; marginBytes: number; thresholdBytes: number }[] = [];
  t.on('risk', (r) => risks.push(r));
  try {
    await t.start();
    const d = await t.retune();
    assert.deepEqual(
      [d?.risk.exposureBytes, d?.risk.availableBytes, d?.risk.marginBytes, d?.risk.thresholdBytes, d?.risk.atRisk],
      [9 * GiB, 10 * GiB, 1 * GiB, Math.round(1.6 * GiB), true],
    );
    await t.retune();
    assert.equal(risks.length, 1, 'one event on entering the risk zone, not one per decision');
    ksm.counters.pages_sharing = (5 * GiB) / PAGE_SIZE;
    ksm.counters.ksm_zero_pages = 0;
    const cleared = await t.retune();
    assert.equal(cleared?.risk.atRisk, false);
    assert.deepEqual(risks.map((r) => [r.atRisk, r.exposureBytes]), [[true, 9 * GiB], [false, 5 * GiB]]);
    assert.throws(() => new Tuner({ riskMarginBytes: -1 }), RangeError);
  } finally {
    await t.stop();
    tree.dispose();
  }
});

const ksmStat = (merging: number) => `ksm_rmap_items ${merging}\nksm_zero_pages 0\nksm_merging_pages ${merging}\nksm_process_profit 0\nksm_mergeable yes\n`;

/** A fake host where every process has a ksm_stat (as on Linux 6.1+): VM a (pid 300) and ksmd. */
function savingsSetup() {
  const { tree, ksm, config } = setup();
  tree.add({ ...QEMU(300, 'a'), ksmStat: ksmStat(0) }).add({ pid: 37, argv: [], comm: 'ksmd', ppid: 2, utime: 10, stime: 20, ksmStat: '' });
  return { tree, ksm, config };
}

test("a decision's saved figure is the VMs' share of the host's KSM pages; another process's share is only in hostSavedBytes", async () => {
  const { tree, ksm, config } = savingsSetup();
  // 100 KSM pages mapped 4 times (pages_sharing 300): VM a maps each twice, a non-VM process twice.
  tree.add({ ...QEMU(300, 'a'), ksmStat: ksmStat(200) }).add({ pid: 400, argv: ['/usr/bin/redis-server'], comm: 'redis-server', startTime: 400, ksmStat: ksmStat(200) });
  Object.assign(ksm.counters, { pages_shared: 100, pages_sharing: 300 });
  const t = new Tuner({ policy: 'ksmtuned', ksm, procRoot: tree.root, config, dryRun: true });
  try {
    await t.start();
    const d = await t.retune();
    assert.deepEqual(
      [d?.saved, d?.savedBytes, d?.hostSavedBytes],
      [{ ksmPages: 150, ksmZeroPages: 0, thpSplitZeroPages: 0 }, 150 * PAGE_SIZE, 300 * PAGE_SIZE],
    );
  } finally {
    await t.stop();
    tree.dispose();
  }
});

/**
 * VM a (pid 300) gets one mergeable area of two 2 MiB chunks at 1 GiB, and frames 50 (the zero page) and 100
 * (a KSM page) in the fake kpageflags. Chunk 0 is a huge page of zeros split before ksmd ran (512 zero-page
 * mappings); `merged()` has ksmd merge one page of chunk 1, splitting it (511 zero subpages freed).
 */
function splitHugePage(tree: ProcTree, ksm: FakeKsm): { merged: () => void; chunk0Freed: () => void } {
  const base = 0x40000000;
  tree.write('300/smaps', `${base.toString(16)}-${(base + 4 * 1024 * 1024).toString(16)} rw-p 00000000 00:00 0\nPss:  4096 kB\nVmFlags: rd wr mg\n`);
  const flags = Buffer.alloc(101 * 8);
  flags.writeBigUInt64LE(1n << 24n, 50 * 8);
  flags.writeBigUInt64LE(1n << 21n, 100 * 8);
  writeFileSync(join(tree.root, 'kpageflags'), flags);
  const counts = Buffer.alloc(101 * 8);
  counts.writeBigUInt64LE(2n, 100 * 8);
  writeFileSync(join(tree.root, 'kpagecount'), counts);
  const pagemap = (chunk1: boolean, chunk0 = true) => {
    const map = Buffer.alloc((base / 4096 + 1024) * 8);
    const present = 1n << 63n;
    if (chunk0) for (let i = 0; i < 512; i++) map.writeBigUInt64LE(present | 50n, (base / 4096 + i) * 8);
    if (chunk1) for (let i = 0; i < 512; i++) map.writeBigUInt64LE(present | (i === 0 ? 100n : 50n), (base / 4096 + 512 + i) * 8);
    writeFileSync(join(tree.root, '300', 'pagemap'), map);
  };
  pagemap(false);
  return {
    merged: () => {
      pagemap(true);
      tree.write('300/ksm_stat', ksmStat(1));
      Object.assign(ksm.counters, { pages_shared: 1, pages_sharing: 1 });
    },
    // The VM gives chunk 0 back (MADV_DONTNEED): its page map changes, KSM's counters do not.
    chunk0Freed: () => pagemap(true, false),
  };
}

test("a decision's saved figure counts the zero subpages freed by ksmd's huge page splits in the VMs, not those split before", async () => {
  const { tree, ksm, config } = savingsSetup();
  const host = splitHugePage(tree, ksm);
  const tuner = new Tuner({ policy: 'ksmtuned', ksm, procRoot: tree.root, config, dryRun: true });
  try {
    await tuner.start();
    await tuner.retune(); // before ksmd merged anything: its 512 zero-page mappings are the baseline
    host.merged();
    const d = await tuner.retune(); // ksmd stopped: the page maps are walked afresh
    assert.deepEqual(
      [d?.saved, d?.savedBytes, d?.savedThpSplitKnown, d?.savedUpperBound],
      [{ ksmPages: 1, ksmZeroPages: 0, thpSplitZeroPages: 511 }, 512 * PAGE_SIZE, true, false],
    );
  } finally {
    await tuner.stop();
    tree.dispose();
  }
});

test("the 'savings' event carries the decision's saved figure with its parts", async () => {
  const { tree, ksm, config } = savingsSetup();
  tree.add({ ...QEMU(300, 'a'), ksmStat: ksmStat(200) });
  Object.assign(ksm.counters, { pages_shared: 100, pages_sharing: 200 });
  const t = new Tuner({ policy: 'ksmtuned', ksm, procRoot: tree.root, config, dryRun: true });
  try {
    await t.start();
    const event = once(t, 'savings');
    const d = await t.retune();
    const [s] = (await event) as [TuneSavings];
    const figure = (x: TuneSavings | TuneDecision | undefined) => [x?.saved, x?.savedBytes, x?.savedThpSplitKnown, x?.savedUpperBound, x?.hostSavedBytes];
    assert.deepEqual(figure(s), [{ ksmPages: 200, ksmZeroPages: 0, thpSplitZeroPages: 0 }, 200 * PAGE_SIZE, false, false, 200 * PAGE_SIZE]);
    assert.deepEqual(figure(s), figure(d));
  } finally {
    await t.stop();
    tree.dispose();
  }
});

test("while ksmd is stopped and KSM's counters and the VMs hold still, a decision reuses the last saved figure without walking the page maps", async (t) => {
  const { tree, ksm, config } = savingsSetup();
  const host = splitHugePage(tree, ksm);
  host.merged();
  t.mock.timers.enable({ apis: ['Date'], now: Date.now() });
  const tuner = new Tuner({ policy: 'ksmtuned', ksm, procRoot: tree.root, config, dryRun: true });
  try {
    await tuner.start();
    const settled = await tuner.retune(); // ksmd stopped: the page maps are walked afresh
    host.chunk0Freed();
    t.mock.timers.tick(60_000);
    const later = await tuner.retune();
    assert.deepEqual([settled?.saved.thpSplitZeroPages, later?.saved.thpSplitZeroPages], [1023, 1023]);
  } finally {
    await tuner.stop();
    tree.dispose();
  }
});

test('a search that found no ksmd (a procfs without kernel threads) is not repeated for KSMD_MISSING_RETRY_MS', async () => {
  const tree = new ProcTree().add(QEMU(300, 'a'));
  let now = 0;
  const clock = new KsmdClock(tree.root, () => now);
  try {
    assert.equal(await clock.cpuSeconds(), undefined);
    tree.add({ pid: 37, argv: [], comm: 'ksmd', ppid: 2, utime: 10, stime: 20 });
    now = KSMD_MISSING_RETRY_MS - 1;
    assert.equal(await clock.cpuSeconds(), undefined);
    now = KSMD_MISSING_RETRY_MS;
    assert.equal(await clock.cpuSeconds(), 0.3);
  } finally {
    tree.dispose();
  }
});
