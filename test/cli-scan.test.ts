// pagefuse scan, run as an install runs it (helpers/cli.ts, the built CLI).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { builtBin, runCliAsync, type CliResult } from './helpers/cli.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Workload } from '../src/workload/workload.js';
import { Registry } from '../src/safety/registry.js';
import { holdKsmLockForFile } from './helpers/hold-lock.js';
import { requireRoot } from './helpers/root.js';

holdKsmLockForFile(); // the workload children hold mergeable memory

const bin = builtBin();
const cli = (...args: string[]): Promise<CliResult> => runCliAsync(['scan', ...args], { bin });
const cliWithEnv = (env: Record<string, string>, ...args: string[]): Promise<CliResult> => runCliAsync(['scan', ...args], { bin, env });

// Two processes: 512 identical image pages each, 10 zero pages each, 100 pages of their own.
let w: Workload;
before(async () => {
  w = await Workload.start({ processes: 2, imagePages: 512, zeroPages: 10, uniquePages: 100, seed: 77 });
});
after(async () => {
  await w?.stop();
});

test('pagefuse scan --pid prints a table per process, the sharing matrix and the estimate', async () => {
  const r = await cli('--pid', String(w.pids[0]), '--pid', String(w.pids[1]));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`node\\[${w.pids[0]}\\]`));
  assert.match(r.stdout, /duplicate pages between processes/);
  // What the estimate is a prediction of (docs/savings.md, "What the estimate predicts"): saved after ksmd's second full scan.
  assert.match(r.stdout, /estimate: merging would give back .* \(531 pages\) of .* scanned, by the end of ksmd's second full scan over them:\n/);
  assert.match(r.stdout, /  531 pages merged by KSM \(pages_sharing: 512 duplicate pages \+ 19 zero pages merged into one\)/);
  assert.match(r.stdout, /merged so far: \d+/);
});

test('pagefuse scan --json --mode fast counts zero, duplicate and unique pages and the sharing matrix exactly', async () => {
  const j = await cli('--pid', w.pids.join(','), '--json', '--mode', 'fast');
  assert.equal(j.status, 0, j.stderr);
  const out = JSON.parse(j.stdout);
  assert.equal(out.mode, 'fast');
  assert.equal(out.pages, w.expected.pages);
  assert.equal(out.zero_pages, 20);
  assert.equal(out.duplicate_pages, 512);
  assert.equal(out.unique_pages, w.expected.uniquePages);
  assert.deepEqual(out.sharing, [[0, 512], [512, 0]]);
  assert.equal(out.targets[0].pid, w.pids[0]);
  assert.equal(out.targets[0].shared_with_others, 512);
  assert.equal(typeof out.estimated_saved_bytes, 'number');
  assert.equal(typeof out.bytes_per_second, 'number');
  assert.equal(typeof out.targets[0].ksm_merging_pages, 'number');
});

test('pagefuse scan --totals prints the estimate without the per-process table or the sharing matrix', async () => {
  const r = await cli('--pid', w.pids.join(','), '--totals');
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /dup inside|duplicate pages between processes/);
  assert.match(r.stdout, /^estimate: merging would give back .* \(531 pages\)/);
  assert.match(r.stdout, /  531 pages merged by KSM \(pages_sharing: 512 duplicate pages \+ 19 zero pages merged into one\)/);
});

test('pagefuse scan --totals --json gives the totals, and null for the per-process counts it did not make', async () => {
  const j = await cli('--pid', w.pids.join(','), '--totals', '--json');
  assert.equal(j.status, 0, j.stderr);
  const out = JSON.parse(j.stdout);
  assert.equal(out.duplicate_pages, 512);
  assert.equal(out.sharing, null);
  assert.deepEqual(out.targets.map((t: Record<string, unknown>) => [t.pid, t.duplicate_pages, t.unique_pages, t.shared_with_others, t.merging_pages]), [
    [w.pids[0], null, null, null, 512 + 10],
    [w.pids[1], null, null, null, 512 + 10],
  ]);
});

test('pagefuse scan --all --json lists every process it can read, the workload\'s among them', async () => {
  const all = await cli('--all', '--json');
  assert.equal(all.status, 0, all.stderr);
  const pids = JSON.parse(all.stdout).targets.map((t: { pid: number }) => t.pid);
  for (const pid of w.pids) assert.ok(pids.includes(pid), `--all lists ${pid}`);
});

test('pagefuse scan --json: the per-process merging and would-save columns sum to the totals', async () => {
  const w = await Workload.start({ processes: 3, imagePages: 300, zeroPages: 7, uniquePages: 50, seed: 78 });
  try {
    const j = await cli('--pid', w.pids.join(','), '--json');
    assert.equal(j.status, 0, j.stderr);
    const out = JSON.parse(j.stdout);
    const sum = (k: string): number => out.targets.reduce((a: number, t: Record<string, number>) => a + t[k], 0);
    assert.equal(out.merging_pages, 3 * 300 + 21);
    assert.equal(sum('merging_pages'), out.merging_pages);
    assert.equal(out.estimated_saved_pages, 2 * 300 + 20);
    assert.equal(sum('estimated_saved_pages'), out.estimated_saved_pages);
  } finally {
    await w.stop();
  }
});

test('pagefuse scan names a registered process by its registered name, as status and top do', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'pf-scan-names-'));
  try {
    new Registry({ stateDir }).add({ pid: w.pids[0], name: 'db1', merge: true, via: 'register' });
    const r = await cliWithEnv({ PAGEFUSE_STATE_DIR: stateDir }, '--pid', String(w.pids[0]), '--json');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).targets[0].name, 'db1');
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('pagefuse scan: usage errors are one line, exit 2', async () => {
  for (const args of [[], ['--all', '--vms'], ['--pid', 'abc'], ['--all', '--mode', 'slow'], ['--all', '--sample-rate', '3'], ['--all', 'extra']]) {
    const r = await cli(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.match(r.stderr, /^pagefuse scan: /);
  }
});

test('pagefuse scan --pid past the kernel\'s pids (2^22), or with none in it, is a usage error naming --pid, exit 2', async () => {
  for (const [value, shown] of [['4194305', '4194305'], ['2147483648', '2147483648']]) {
    const r = await cli('--pid', value);
    assert.deepEqual([r.status, r.stderr], [2, `pagefuse scan: --pid needs process ids (1 to 4194304), got '${shown}'\n`]);
  }
  for (const value of ['', ',']) {
    const r = await cli('--pid', value);
    assert.deepEqual([r.status, r.stderr], [2, `pagefuse scan: --pid needs process ids, got '${value}'\n`]);
  }
});

test('pagefuse scan of a kernel thread says it is one (it has no user memory), not that it does not exist', async () => {
  // kthreadd, pid 2, where the scan's /proc is the host's.
  const r = await cli('--pid', '2');
  assert.deepEqual([r.status, r.stderr], [1, 'pagefuse scan: process 2 is a kernel thread: it has no user memory to scan\n']);
});

test('pagefuse scan of a process that does not exist is one line, exit 1', async () => {
  const gone = await cli('--pid', '4194000');
  assert.equal(gone.status, 1);
  assert.match(gone.stderr, /^pagefuse scan: process 4194000 does not exist \(or exited before it could be read\)\n$/);
});

test('pagefuse scan --help prints the usage on stdout, exit 0', async () => {
  const help = await cli('--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^usage: pagefuse scan/);
});

test('pagefuse scan --json keeps huge pages of only zero subpages apart from the estimate with use_zero_pages=0', async (t) => {
  if (!requireRoot(t, 'reads /proc/kpageflags to tell huge pages apart')) return;
  // As in scan-pid's test: every zero page in a huge page that holds no duplicate (ksmd splits those one per full scan).
  const z = await Workload.start({ processes: 1, imagePages: 1024, zeroPages: 2048, uniquePages: 1024, hugepages: 'always', seed: 13 });
  try {
    const j = await cli('--pid', String(z.pids[0]), '--json'); // use_zero_pages at its default 0 (this file holds the KSM lock)
    assert.equal(j.status, 0, j.stderr);
    const out = JSON.parse(j.stdout);
    assert.ok(out.thp_zero_pages >= 3 * 512, `${out.thp_zero_pages} zero pages inside huge pages`);
    assert.deepEqual(
      [out.use_zero_pages, out.estimate.thp_split_zero_pages, out.thp_slow_split_zero_pages, out.targets[0].thp_slow_split_zero_pages],
      [false, 0, out.thp_zero_pages, out.thp_zero_pages],
    );
  } finally {
    await z.stop();
  }
});
