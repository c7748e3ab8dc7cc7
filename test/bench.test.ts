import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { CLI, REPO as ROOT, runCliAsync } from './helpers/cli.js';
import { lockKsm } from './helpers/lock.js';
import { vmsInTheWay, type BenchResult, type TunerResult } from '../src/bench/bench.js';
import { ProcTree } from './helpers/proc-tree.js';
import type { HashingResult } from '../src/bench/hashing.js';
import type { EstimateResult } from '../src/bench/estimate.js';

const KNOBS = ['run', 'pages_to_scan', 'sleep_millisecs'];
const knobs = (): string[] => KNOBS.map((k) => readFileSync(`/sys/kernel/mm/ksm/${k}`, 'utf8').trim());

function checkHashing(h: HashingResult): void {
  const rates = ['read_gb_per_s', 'read_one_stream_gb_per_s', 'exact_gb_per_s', 'exact_no_state_gb_per_s', 'fast_gb_per_s', 'node_crypto_sha1_gb_per_s',
    'read_gb_per_cpu_s', 'exact_gb_per_cpu_s', 'read_threads_gb_per_s', 'exact_threads_gb_per_s'] as const;
  for (const k of [...rates, 'exact_vs_read', 'fast_vs_exact', 'exact_vs_sha1', 'exact_vs_read_cpu', 'exact_threads_vs_read'] as const) {
    assert.equal(typeof h[k], 'number', k);
    assert.ok(h[k] > 0, `${k} = ${h[k]}`);
  }
  assert.equal(h.bytes, 512 * 1024 * 1024);
  assert.equal(h.threads, 1);
  assert.equal(h.rounds, 3);
  assert.ok([1, 2, 4, 8].includes(h.read_streams), `read_streams ${h.read_streams}`);
  assert.ok(h.read_gb_per_s >= h.read_one_stream_gb_per_s, 'the baseline is the best read, one stream included');
  assert.match(h.hash_kernel, /^(avx512|avx2|sse2|scalar)\+(vaes|aes|xxh3)$/);
  assert.equal(h.fast_matches_exact, true);
  assert.ok(h.node_rs_xxhash_gb_per_s === null ? /@node-rs\/xxhash/.test(h.node_rs_xxhash_note ?? '') : h.node_rs_xxhash_gb_per_s > 0);
  assert.ok(Math.abs(h.exact_vs_read - h.exact_gb_per_s / h.read_gb_per_s) < 0.02);
}

test('bench --quick --json names every figure; the KSM parts run as root and put the knobs back', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-bench-'));
  const release = await lockKsm();
  try {
    const before = knobs();
    const page = join(dir, 'bench.html');
    // --force: the KSM test lock keeps other tests' guests off ksmd, but a VM of another run may be alive.
    const r = await runCliAsync(['bench', '--quick', '--json', '--html', page, '--force'], { timeoutMs: 180_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(knobs(), before, 'run, pages_to_scan and sleep_millisecs are as they were');
    const b = JSON.parse(r.stdout) as BenchResult;
    assert.equal(b.quick, true);
    assert.ok(b.seconds < 90, `--quick took ${b.seconds} s`);
    assert.deepEqual(Object.keys(b.machine), ['cpu', 'cpus', 'mem_total_bytes', 'kernel', 'node', 'cpu_flags']);
    assert.ok(b.machine.cpu_flags.includes('sse2'), `x86-64 has sse2: ${b.machine.cpu_flags.join(' ')}`);
    assert.ok(!('skipped' in b.hashing), JSON.stringify(b.hashing));
    checkHashing(b.hashing as HashingResult);

    assert.ok(!('skipped' in b.estimate), `root runs the estimate: ${JSON.stringify(b.estimate)}`);
    const e = b.estimate as EstimateResult;
    // 4 guests × (32 MiB common + 8 MiB unique + 2 MiB zero), no THP: the common pages and the zero pages merge.
    assert.equal(e.guests, 4);
    assert.equal(e.bytes, 4 * 42 * 1024 * 1024);
    assert.equal(e.predicted_merging_pages, 4 * (8192 + 512));
    assert.equal(e.predicted_saved_pages, 3 * 8192 + (4 * 512 - 1));
    assert.equal(e.converged, true);
    assert.equal(e.ksmd_merging_pages, e.predicted_merging_pages, 'ksm_stat of the bench process matches the scan');
    assert.equal(e.merging_error_percent, 0);
    // Host-wide: ksmd running fast also merges other mergeable memory on a shared machine, so only its type is fixed.
    assert.equal(typeof e.saved_error_percent, 'number');
    for (const k of ['scan_seconds', 'ksmd_seconds', 'ksmd_cpu_seconds'] as const) assert.equal(typeof e[k], 'number', k);

    assert.ok(!('skipped' in b.tuner), `root runs the tuner policies: ${JSON.stringify(b.tuner)}`);
    const t = b.tuner as TunerResult;
    assert.deepEqual(
      t.rows.map((row) => row.policy),
      ['unthrottled ksmd (20000 pages / 0 ms)', 'kernel defaults (100 pages / 20 ms)', 'ksmtuned (KSM_THRES_COEF=100, interval 6 s)', 'kernel-advisor (scan-time, min 16 MiB)', 'adaptive (0.25 CPU, min 16 MiB)'],
    );
    // 4 guests × (16 MiB common + 1 MiB zero): 3 × 4096 common pages and 4 × 256 − 1 zero pages can go.
    const achievable = (3 * 4096 + 4 * 256 - 1) * 4096;
    for (const row of t.rows) {
      assert.deepEqual(Object.keys(row), [
        'policy',
        'budget',
        'seconds_to_95',
        'ksmd_cpu_seconds',
        'ksmd_cpu_average',
        'ksmd_wait_seconds',
        'merging_pages',
        'predicted_merging_pages',
        'saved_bytes',
        'saved_parts_pages',
        'achievable_bytes',
      ]);
      assert.equal(row.achievable_bytes, achievable);
      assert.equal(row.predicted_merging_pages, 4 * (4096 + 256));
      assert.ok(row.seconds_to_95 === null || row.seconds_to_95 <= 12, row.policy);
    }
    const adaptive = t.rows[4];
    assert.notEqual(adaptive.seconds_to_95, null, 'the adaptive tuner reaches 95 % within the quick run');
    assert.ok(adaptive.merging_pages >= 0.95 * adaptive.predicted_merging_pages);

    const html = readFileSync(page, 'utf8');
    assert.match(html, /<svg id="hashing-chart"/);
    assert.match(html, /<svg id="savings-chart"/);
    assert.doesNotMatch(html, /<script/);
  } finally {
    release();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an interrupted bench (Ctrl-C) puts ksmd\'s knobs back before it exits', async () => {
  const release = await lockKsm();
  const original = knobs();
  const set = (values: string[]): void => KNOBS.forEach((k, i) => writeFileSync(`/sys/kernel/mm/ksm/${k}`, values[i]));
  try {
    const before = ['0', '123', '7'];
    set(before);
    const child = spawn(process.execPath, [...CLI, 'bench', '--quick'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const deadline = Date.now() + 60_000;
    while (!(err.includes('bench: tuner policies') && knobs().join() !== before.join())) {
      assert.ok(Date.now() < deadline && child.exitCode === null, `the bench drives ksmd while it runs: ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill('SIGINT');
    const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
    assert.equal(signal, null);
    assert.equal(code, 130);
    assert.deepEqual(knobs(), before);
  } finally {
    set(original);
    release();
  }
});

test('bench without root skips the KSM parts with one clear line and runs the rest', () => {
  // nobody (65534) can read the checkout but not write /sys/kernel/mm/ksm.
  const out = execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, ...CLI, 'bench', '--quick', '--json'], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HOME: '/tmp' },
  });
  const b = JSON.parse(out) as BenchResult;
  checkHashing(b.hashing as HashingResult);
  assert.deepEqual(b.estimate, { skipped: 'needs root: writing /sys/kernel/mm/ksm/run' });
  assert.deepEqual(b.tuner, { skipped: 'needs root: writing /sys/kernel/mm/ksm/run' });
});

test('bench without KSM in the kernel says so; the table names what was skipped', async () => {
  const r = await runCliAsync(['bench', '--quick'], { env: { ...process.env, PAGEFUSE_KSM_SYSFS: '/nonexistent/ksm' } });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /^bench: skipping the KSM parts \(scan estimate vs ksmd, tuner policies\): KSM is not available in this kernel \(no \/sys\/kernel\/mm\/ksm\)$/m);
  assert.match(r.stdout, /^pagefuse exact \(\w+\+\w+\), 1 thread +[\d.]+ +[\d.]+ × read +[\d.]+ \([\d.]+ × read\)$/m);
  assert.match(r.stdout, /Scan estimate vs what ksmd merged\n {2}skipped: KSM is not available/);
});

test('bench: unknown flag exits 2; an unwritable --html fails at once with exit 1 and writes nothing', async () => {
  const bad = await runCliAsync(['bench', '--fast']);
  assert.equal(bad.status, 2);
  assert.equal(bad.stderr, "pagefuse bench: Unknown option '--fast'\n");
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-bench-'));
  try {
    const t0 = Date.now();
    const r = await runCliAsync(['bench', '--quick', '--html', join(dir, 'missing', 'b.html')]);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `pagefuse bench: cannot write ${join(dir, 'missing', 'b.html')}: ENOENT on ${join(dir, 'missing')}\n`);
    assert.ok(Date.now() - t0 < 10_000, 'before running anything');
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bench leaves ksmd alone while a VM runs: the reason names the VM and says --force', async () => {
  const tree = new ProcTree().add({
    pid: 4242,
    argv: ['/usr/bin/qemu-system-x86_64', '-name', 'guest=web01', '-m', '1G'],
    exe: '/usr/bin/qemu-system-x86_64',
    rssKiB: 1000,
  });
  const empty = new ProcTree();
  try {
    assert.equal(await vmsInTheWay(tree.root), '1 VM is running (web01): the bench would drive ksmd under them; pass --force to run it anyway');
    assert.equal(await vmsInTheWay(empty.root), undefined);
  } finally {
    tree.dispose();
    empty.dispose();
  }
});
