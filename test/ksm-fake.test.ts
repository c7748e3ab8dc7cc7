// Ksm against fake sysfs trees: what this machine can't show (old kernels, no KSM, a refused write, the
// scan-time advisor, shared pages on a fake), and the checks made before anything is written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ksm, InvalidSettingError, PAGE_SIZE } from '../src/index.js';
import { writeOrder } from '../src/ksm/ksm.js';

/** The files of a 6.18 kernel, as it prints them. */
const KERNEL_6_18: Record<string, string> = {
  advisor_max_cpu: '70',
  advisor_max_pages_to_scan: '30000',
  advisor_min_pages_to_scan: '500',
  advisor_mode: '[none] scan-time',
  advisor_target_scan_time: '200',
  full_scans: '12',
  general_profit: '-4096',
  ksm_zero_pages: '3',
  max_page_sharing: '256',
  merge_across_nodes: '1',
  pages_scanned: '9000',
  pages_shared: '0',
  pages_sharing: '0',
  pages_skipped: '7',
  pages_to_scan: '100',
  pages_unshared: '4',
  pages_volatile: '2',
  run: '1',
  sleep_millisecs: '20',
  smart_scan: '1',
  stable_node_chains: '0',
  stable_node_dups: '0',
  stable_node_chains_prune_millisecs: '2000',
  use_zero_pages: '0',
};

/** A 4.19-era kernel: no smart_scan, advisor, general_profit, zero-page or scan counters. */
const KERNEL_4_19: Record<string, string> = {
  full_scans: '3',
  max_page_sharing: '256',
  merge_across_nodes: '1',
  pages_shared: '2',
  pages_sharing: '30',
  pages_to_scan: '100',
  pages_unshared: '5',
  pages_volatile: '1',
  run: '1',
  sleep_millisecs: '20',
  stable_node_chains: '0',
  stable_node_chains_prune_millisecs: '2000',
  stable_node_dups: '0',
  use_zero_pages: '0',
};

const dirs: string[] = [];
test.after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function fakeSysfs(files: Record<string, string>, overrides: Record<string, string | null> = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pagefuse-fake-ksm-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries({ ...files, ...overrides })) {
    if (text !== null) await writeFile(join(dir, name), `${text}\n`);
  }
  return dir;
}

async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of await readdir(dir)) {
    try {
      out[name] = await readFile(join(dir, name), 'utf8');
    } catch {
      out[name] = '<unreadable>';
    }
  }
  return out;
}

test('read() returns every knob and counter of a 6.18 tree, advisor_mode as its selected word', async () => {
  const dir = await fakeSysfs(KERNEL_6_18);
  await writeFile(join(dir, 'some_future_knob'), '5\n');
  await writeFile(join(dir, 'some_future_counter'), '6\n');
  await chmod(join(dir, 'some_future_counter'), 0o444);
  const state = await new Ksm({ sysfsRoot: dir }).read();
  assert.deepEqual(state.settings, {
    advisor_max_cpu: 70,
    advisor_max_pages_to_scan: 30000,
    advisor_min_pages_to_scan: 500,
    advisor_mode: 'none',
    advisor_target_scan_time: 200,
    max_page_sharing: 256,
    merge_across_nodes: 1,
    pages_to_scan: 100,
    run: 1,
    sleep_millisecs: 20,
    smart_scan: 1,
    some_future_knob: 5,
    stable_node_chains_prune_millisecs: 2000,
    use_zero_pages: 0,
  });
  assert.deepEqual(state.counters, {
    full_scans: 12,
    general_profit: -4096,
    ksm_zero_pages: 3,
    pages_scanned: 9000,
    pages_shared: 0,
    pages_sharing: 0,
    pages_skipped: 7,
    pages_unshared: 4,
    pages_volatile: 2,
    some_future_counter: 6,
    stable_node_chains: 0,
    stable_node_dups: 0,
  });
  assert.equal(state.profitBytes, -4096, 'general_profit, negative as the kernel prints it');
  const scanTime = await fakeSysfs(KERNEL_6_18, { advisor_mode: 'none [scan-time]', run: '5' });
  const s = (await new Ksm({ sysfsRoot: scanTime }).read()).settings;
  assert.equal(s.advisor_mode, 'scan-time');
  assert.equal(s.run, 1, 'the transient KSM_RUN_OFFLINE bit (4) is masked off');
});

test('an old kernel: absent files are absent, profit is computed as the kernel would, new knobs are refused', async () => {
  const dir = await fakeSysfs(KERNEL_4_19);
  const ksm = new Ksm({ sysfsRoot: dir });
  const state = await ksm.read();
  assert.deepEqual(Object.keys(state.settings), [
    'max_page_sharing',
    'merge_across_nodes',
    'pages_to_scan',
    'run',
    'sleep_millisecs',
    'stable_node_chains_prune_millisecs',
    'use_zero_pages',
  ]);
  assert.equal('general_profit' in state.counters, false);
  assert.equal('ksm_zero_pages' in state.counters, false);
  assert.equal(state.profitBytes, 30 * PAGE_SIZE - (2 + 30 + 5 + 1) * 64);
  const before = await snapshot(dir);
  await assert.rejects(ksm.configure({ sleep_millisecs: 5, smart_scan: false }), (err: Error) => {
    assert.ok(err instanceof InvalidSettingError);
    assert.match(err.message, /^smart_scan is not supported by this kernel \(.*\): it appeared in Linux 6\.7$/);
    return true;
  });
  assert.deepEqual(await snapshot(dir), before, 'nothing written');
  await ksm.configure({ sleep_millisecs: 5, use_zero_pages: true });
  assert.equal(await readFile(join(dir, 'sleep_millisecs'), 'utf8'), '5\n');
  assert.equal(await readFile(join(dir, 'use_zero_pages'), 'utf8'), '1\n');
});

test('no KSM: available() is false and everything else says ENOKSM', async () => {
  const ksm = new Ksm({ sysfsRoot: '/nonexistent/ksm' });
  assert.equal(await ksm.available(), false);
  const enoksm = { code: 'ENOKSM', message: /KSM is not available: \/nonexistent\/ksm does not exist/ };
  await assert.rejects(ksm.read(), enoksm);
  await assert.rejects(ksm.configure({ run: 1 }), enoksm);
  await assert.rejects(ksm.start(), enoksm);
  await assert.rejects(ksm.unmergeAll(), enoksm);
  await assert.rejects(ksm.waitForFullScans(1), enoksm);
  await assert.rejects(ksm.get('run'), enoksm);
  // A directory without KSM's files is no KSM either.
  const empty = await mkdtemp(join(tmpdir(), 'pagefuse-fake-ksm-'));
  dirs.push(empty);
  await assert.rejects(new Ksm({ sysfsRoot: empty }).read(), { code: 'ENOKSM' });
});

test('every value is checked before anything is written; errors name the key and the value', async () => {
  const dir = await fakeSysfs(KERNEL_6_18);
  const ksm = new Ksm({ sysfsRoot: dir });
  const before = await snapshot(dir);
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ run: 3 }, /^run must be a whole number from 0 to 2 .*got 3$/],
    [{ run: -1 }, /^run .*got -1$/],
    [{ run: '1' }, /^run .*got "1"$/],
    [{ pages_to_scan: 1.5 }, /^pages_to_scan must be a whole number from 0 to 4294967295, got 1\.5$/],
    [{ pages_to_scan: 2 ** 32 }, /^pages_to_scan .*got 4294967296$/],
    [{ sleep_millisecs: Number.NaN }, /^sleep_millisecs .*got NaN$/],
    [{ merge_across_nodes: 2 }, /^merge_across_nodes must be a whole number from 0 to 1, got 2$/],
    [{ max_page_sharing: 1 }, /^max_page_sharing must be a whole number from 2 to 2147483647, got 1$/],
    [{ advisor_target_scan_time: 0 }, /^advisor_target_scan_time must be a whole number from 1 .*got 0$/],
    [{ advisor_max_cpu: 101 }, /^advisor_max_cpu .*percent of one CPU.*got 101$/],
    [{ use_zero_pages: 2 }, /^use_zero_pages must be true\/false or 1\/0, got 2$/],
    [{ smart_scan: 'yes' }, /^smart_scan must be true\/false or 1\/0, got "yes"$/],
    [{ advisor_mode: 'fast' }, /^advisor_mode must be one of none, scan-time, got "fast"$/],
    [{ pages_to_scn: 100 }, /^unknown KSM setting 'pages_to_scn'; settable: run, pages_to_scan/],
    [{ full_scans: 0 }, /^unknown KSM setting 'full_scans'/],
    // One bad value among good ones: none of them is written.
    [{ sleep_millisecs: 5, pages_to_scan: 2000, run: 7 }, /^run .*got 7$/],
  ];
  for (const [input, message] of cases) {
    await assert.rejects(ksm.configure(input as never), (err: Error & { code?: string }) => {
      assert.ok(err instanceof InvalidSettingError, `${JSON.stringify(input)}: ${err}`);
      assert.equal(err.code, 'EINVAL');
      assert.match(err.message, message);
      return true;
    });
  }
  await assert.rejects(ksm.configure(null as never), InvalidSettingError);
  await assert.rejects(ksm.configure({ run: 1 }, { timeoutMs: -1 }), RangeError);
  assert.deepEqual(await snapshot(dir), before, 'no file changed');
});

test('set() writes its one knob without reading the directory, and checks the value as configure() does', async () => {
  // Only pages_to_scan: read(), and so configure(), refuse a directory without run (ENOKSM); set() reads nothing.
  const dir = await fakeSysfs({ pages_to_scan: '100' });
  const ksm = new Ksm({ sysfsRoot: dir });
  await assert.rejects(ksm.configure({ pages_to_scan: 640 }), { code: 'ENOKSM' });
  await ksm.set('pages_to_scan', 640);
  assert.equal(await readFile(join(dir, 'pages_to_scan'), 'utf8'), '640\n');
  await assert.rejects(ksm.set('pages_to_scan', 1.5), (err: Error) => err instanceof InvalidSettingError && /^pages_to_scan must be a whole number/.test(err.message));
  assert.equal(await readFile(join(dir, 'pages_to_scan'), 'utf8'), '640\n', 'a refused value is not written');
});

test('configure is all or nothing: a refused write puts back what was already written', async () => {
  const dir = await fakeSysfs(KERNEL_6_18, { stable_node_chains_prune_millisecs: null });
  // A read-only sysfs attribute refuses writes even from root: the third write fails with EACCES.
  await symlink('/sys/kernel/mm/ksm/pages_shared', join(dir, 'stable_node_chains_prune_millisecs'));
  const past = new Date(Math.floor(Date.now() / 1000) * 1000 - 3_600_000); // whole seconds: mtimeMs compares exactly
  for (const f of ['sleep_millisecs', 'use_zero_pages', 'pages_to_scan']) await utimes(join(dir, f), past, past);
  const before = await snapshot(dir);
  const ksm = new Ksm({ sysfsRoot: dir });
  await assert.rejects(
    ksm.configure({ sleep_millisecs: 7, use_zero_pages: true, stable_node_chains_prune_millisecs: 10, run: 0 }),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'EACCES');
      assert.equal(err.message, `needs root: writing ${dir}/stable_node_chains_prune_millisecs`);
      return true;
    },
  );
  assert.deepEqual(await snapshot(dir), before, 'every knob as it was');
  for (const f of ['sleep_millisecs', 'use_zero_pages']) {
    assert.ok((await stat(join(dir, f))).mtimeMs > past.getTime() + 1000, `${f} was written, then put back`);
  }
  assert.equal((await stat(join(dir, 'pages_to_scan'))).mtimeMs, past.getTime(), 'untouched knobs stay untouched');
});

test('writes go in an order the kernel accepts', () => {
  const order = (o: Record<string, number | string>) => writeOrder(new Map(Object.entries(o)) as never);
  assert.deepEqual(order({ run: 1, pages_to_scan: 5, advisor_mode: 'none', merge_across_nodes: 0 }), [
    'advisor_mode',
    'merge_across_nodes',
    'pages_to_scan',
    'run',
  ]);
  assert.deepEqual(order({ merge_across_nodes: 0, max_page_sharing: 3, run: 2 }), ['run', 'merge_across_nodes', 'max_page_sharing']);
  assert.deepEqual(order({ advisor_mode: 'scan-time', run: 1, advisor_min_pages_to_scan: 800 }), [
    'advisor_min_pages_to_scan',
    'advisor_mode',
    'run',
  ]);
});

test('pages_to_scan is refused in scan-time mode unless the same call sets advisor_mode none', async () => {
  const dir = await fakeSysfs(KERNEL_6_18, { advisor_mode: 'none [scan-time]' });
  const ksm = new Ksm({ sysfsRoot: dir });
  const before = await snapshot(dir);
  await assert.rejects(ksm.configure({ pages_to_scan: 5000 }), {
    name: 'InvalidSettingError',
    message: /^pages_to_scan=5000 is refused while advisor_mode=scan-time .*set advisor_mode=none in the same call$/,
  });
  await assert.rejects(ksm.configure({ pages_to_scan: 5000, advisor_mode: 'scan-time', sleep_millisecs: 1 }), {
    name: 'InvalidSettingError',
    message: /cannot be set together with advisor_mode=scan-time/,
  });
  assert.deepEqual(await snapshot(dir), before);
  const after = await ksm.configure({ pages_to_scan: 5000, advisor_mode: 'none' });
  assert.equal(after.advisor_mode, 'none');
  assert.equal(after.pages_to_scan, 5000);
  assert.equal(await readFile(join(dir, 'advisor_mode'), 'utf8'), 'none\n');
});

test('merge_across_nodes / max_page_sharing with pages shared: EBUSY before any write, or unmerge first', async () => {
  const dir = await fakeSysfs(KERNEL_6_18, { pages_shared: '5', pages_sharing: '40' });
  const ksm = new Ksm({ sysfsRoot: dir });
  const before = await snapshot(dir);
  for (const input of [{ sleep_millisecs: 3, merge_across_nodes: 0 }, { max_page_sharing: 300 }]) {
    await assert.rejects(ksm.configure(input), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'EBUSY');
      assert.match(err.message, /while KSM pages are shared \(pages_shared=5\); pages are shared; unmerge first \(pagefuse set (merge_across_nodes=0|max_page_sharing=300) --unmerge-first/);
      return true;
    });
  }
  await assert.rejects(ksm.setMergeAcrossNodes(false), { code: 'EBUSY' });
  assert.deepEqual(await snapshot(dir), before, 'nothing written');
  // Writing the current value is no change, so no EBUSY.
  await ksm.configure({ merge_across_nodes: 1 });

  // unmergeFirst: run=2, then wait for pages_shared 0, which this fake never reaches: run is put back.
  await assert.rejects(ksm.setMergeAcrossNodes(false, { unmergeFirst: true, timeoutMs: 50 }), {
    code: 'ETIMEDOUT',
    message: /unmerging did not finish in 50 ms: pages_shared=5 pages_sharing=40 after run=2/,
  });
  assert.deepEqual(await snapshot(dir), before, 'run back to 1, merge_across_nodes untouched');
  const ac = new AbortController();
  const aborted = ksm.setMergeAcrossNodes(false, { unmergeFirst: true, signal: ac.signal });
  setTimeout(() => ac.abort(), 30);
  await assert.rejects(aborted, { name: 'AbortError' });
  assert.deepEqual(await snapshot(dir), before);

  // The caller's own run=2 unmerges first, so the same change is accepted in one call.
  await ksm.configure({ merge_across_nodes: 0, run: 2 });
  assert.equal(await readFile(join(dir, 'run'), 'utf8'), '2\n');
  assert.equal(await readFile(join(dir, 'merge_across_nodes'), 'utf8'), '0\n');
});

test('setMergeAcrossNodes with unmergeFirst on an unmerged tree switches and puts run back', async () => {
  const dir = await fakeSysfs(KERNEL_6_18);
  const ksm = new Ksm({ sysfsRoot: dir });
  await ksm.setMergeAcrossNodes(false, { unmergeFirst: true });
  assert.equal(await readFile(join(dir, 'merge_across_nodes'), 'utf8'), '0\n');
  assert.equal(await readFile(join(dir, 'run'), 'utf8'), '1\n');
  await assert.rejects(ksm.setMergeAcrossNodes(1 as never), TypeError);
  const noNuma = await fakeSysfs(KERNEL_6_18, { merge_across_nodes: null });
  await assert.rejects(new Ksm({ sysfsRoot: noNuma }).setMergeAcrossNodes(false), {
    code: 'ENOTSUP',
    message: /built without CONFIG_NUMA/,
  });
});

test('waitForFullScans counts across a reset of full_scans to 0', async () => {
  const dir = await fakeSysfs(KERNEL_6_18, { full_scans: '10' });
  const ksm = new Ksm({ sysfsRoot: dir });
  const file = join(dir, 'full_scans');
  const steps = ['11', '0', '1'];
  const timer = setInterval(() => {
    const next = steps.shift();
    if (next === undefined) clearInterval(timer);
    else void writeFile(`${file}.new`, `${next}\n`).then(() => rename(`${file}.new`, file)); // sysfs reads are atomic
  }, 40);
  assert.equal(await ksm.waitForFullScans(2, { timeoutMs: 5_000 }), 1);
  clearInterval(timer);
});

test('waitForFullScans times out with ETIMEDOUT naming what ksmd did', async () => {
  const dir = await fakeSysfs(KERNEL_6_18, { full_scans: '1' });
  const ksm = new Ksm({ sysfsRoot: dir });
  await assert.rejects(ksm.waitForFullScans(1, { timeoutMs: 30 }), {
    code: 'ETIMEDOUT',
    message: /^ksmd completed 0 of 1 full scans in 30 ms \(run=1\)/,
  });
});

test('waitForFullScans checks its arguments: n = 0 returns at once, a negative or fractional n is a RangeError, an aborted signal an AbortError', async () => {
  const dir = await fakeSysfs(KERNEL_6_18, { full_scans: '1' });
  const ksm = new Ksm({ sysfsRoot: dir });
  assert.equal(await ksm.waitForFullScans(0), 1);
  await assert.rejects(ksm.waitForFullScans(-1), RangeError);
  await assert.rejects(ksm.waitForFullScans(1.5), RangeError);
  await assert.rejects(ksm.waitForFullScans(1, { signal: AbortSignal.abort() }), { name: 'AbortError' });
});

test('unmergeAll on a fake writes run=2 and returns once nothing is shared', async () => {
  const dir = await fakeSysfs(KERNEL_6_18, { pages_shared: '1', pages_sharing: '3' });
  const ksm = new Ksm({ sysfsRoot: dir });
  setTimeout(() => {
    void writeFile(join(dir, 'tmp'), '0\n')
      .then(() => rename(join(dir, 'tmp'), join(dir, 'pages_shared')))
      .then(() => writeFile(join(dir, 'tmp'), '0\n'))
      .then(() => rename(join(dir, 'tmp'), join(dir, 'pages_sharing')));
  }, 50);
  await ksm.unmergeAll({ timeoutMs: 5_000 });
  assert.equal(await ksm.get('run'), 2);
  await mkdir(join(dir, 'sub'));
  assert.equal('sub' in (await ksm.read()).settings, false, 'directories are not knobs');
});

test('the test helper: a KSM test that would skip fails instead in CI with a writable sysfs', async () => {
  const { skipVerdict, ksmSkipReason } = await import('./helpers/ksm.js');
  assert.equal(skipVerdict(undefined, true, true), 'run');
  assert.equal(skipVerdict('no ksm_stat', true, true), 'fail');
  assert.equal(skipVerdict('no ksm_stat', false, true), 'skip');
  assert.equal(skipVerdict('needs root', true, false), 'skip');
  if (process.env.CI) assert.equal(ksmSkipReason(), undefined, 'this CI machine runs every KSM test');
});
