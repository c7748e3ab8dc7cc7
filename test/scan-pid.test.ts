import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { scan } from '../src/index.js';
import { Workload } from '../src/workload/workload.js';
import { holdKsmLockForFile } from './helpers/hold-lock.js';
import { requireRoot } from './helpers/root.js';
import { REPO, cliArgv } from './helpers/cli.js';

holdKsmLockForFile(); // the workload children hold mergeable memory

test('a pid scan of a workload child finds exactly the memory it holds', async () => {
  const w = await Workload.start({ processes: 1, imagePages: 300, zeroPages: 40, uniquePages: 200 });
  try {
    for (const mode of ['exact', 'fast'] as const) {
      const r = await scan({ pid: w.pids[0] }, { mode, useZeroPages: true });
      const t = r.targets[0];
      assert.equal(t.pid, w.pids[0]);
      assert.equal(t.name, 'node');
      assert.equal(t.pages, 540, mode);
      assert.equal(t.zeroPages, 40);
      assert.equal(t.uniquePages, 500);
      assert.equal(t.duplicatePages, 0);
      assert.equal(t.absentPages, 0);
      assert.equal(t.vanished, false);
      assert.equal(r.estimatedSavedPages, 40);
    }
  } finally {
    await w.stop();
  }
});

test('several processes in one scan: image pages shared pairwise, own pages not', async () => {
  const w = await Workload.start({ processes: 3, imagePages: 256, zeroPages: 16, uniquePages: 64, seed: 5 });
  try {
    const r = await scan(w.pids.map((pid) => ({ pid })), { useZeroPages: false });
    const e = w.expected;
    assert.equal(r.pages, e.pages);
    assert.equal(r.zeroPages, e.zeroPages);
    assert.equal(r.uniquePages, e.uniquePages);
    assert.equal(r.duplicatePages, e.duplicatePages);
    assert.equal(r.mergingPages, e.mergingPages + e.zeroPages);
    assert.deepEqual(r.sharing, [
      [0, 256, 256],
      [256, 0, 256],
      [256, 256, 0],
    ]);
    assert.deepEqual(r.targets.map((t) => t.sharedWithOthers), [256, 256, 256]);
    assert.equal(r.estimatedSavedPages, e.duplicatePages + e.zeroPages - 1);
  } finally {
    await w.stop();
  }
});

test('a process that exits during its scan ends that target cleanly', async () => {
  const w = await Workload.start({ processes: 1, imagePages: 64 * 1024, seed: 9 }); // 256 MiB
  const pid = w.pids[0];
  let killed = false;
  const r = await scan({ pid }, {
    threads: 1,
    onProgress: () => {
      if (!killed) {
        killed = true;
        process.kill(pid, 'SIGKILL');
      }
    },
  });
  await w.stop();
  const t = r.targets[0];
  assert.equal(t.vanished, true);
  assert.ok(t.pages < 64 * 1024, `${t.pages} pages read before it went`);
  await assert.rejects(scan({ pid }), { code: 'ESRCH' });
});

test('reading another user\'s process without the rights is a clear EPERM', async (t) => {
  if (!requireRoot(t, 'starts a child as uid 65534 to read a process it does not own')) return;
  // A child running as nobody scans this (root-owned) process.
  const script = `
    import { scan } from ${JSON.stringify(fileURLToPath(new URL('../src/index.ts', import.meta.url)))};
    try { await scan({ pid: ${process.pid} }); console.log(JSON.stringify({ ok: true })); }
    catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    uid: 65534,
    gid: 65534,
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    env: { ...process.env, HOME: '/tmp' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.equal(code, 0, err);
  const res = JSON.parse(out.trim().split('\n').at(-1) ?? '{}');
  assert.equal(res.code, 'EPERM');
  assert.match(res.message, /not allowed to read the memory of process \d+: run as root/);
});

test('zero pages inside transparent huge pages are told apart (root: kpageflags) and predicted freed by the THP split, not by KSM', async (t) => {
  if (!requireRoot(t, 'reads /proc/kpageflags to tell huge pages apart')) return;
  const w = await Workload.start({ processes: 1, imagePages: 0, zeroPages: 4096, hugepages: 'always', seed: 12 }); // 16 MiB
  try {
    const r = await scan({ pid: w.pids[0] }, { useZeroPages: true });
    const t = r.targets[0];
    assert.equal(t.zeroPages, 4096);
    // A 16 MiB MADV_HUGEPAGE mapping holds at least six aligned 2 MiB extents, each a huge page here.
    assert.ok(t.thpZeroPages >= 6 * 512, `${t.thpZeroPages} zero pages inside huge pages`);
    assert.deepEqual(
      r.estimate,
      { ksmPages: 0, ksmZeroPages: 4096 - t.thpZeroPages, thpSplitZeroPages: t.thpZeroPages },
      'ksmd splits every huge page holding a zero subpage (it has a match) and the split frees the zero subpages',
    );
    assert.equal(r.estimatedSavedPages, 4096);
  } finally {
    await w.stop();
  }
});

test('without use_zero_pages, huge pages holding only zero subpages and unique data are kept out of the estimate as slow splits', async (t) => {
  if (!requireRoot(t, 'reads /proc/kpageflags to tell huge pages apart')) return;
  // 1024 pages of distinct (image) content, 2048 zero pages, 1024 own pages, in one 16 MiB MADV_HUGEPAGE
  // mapping: however the mapping is aligned, its partial 2 MiB ends hold non-zero pages, so every zero page
  // sits in a huge page that holds no duplicate. ksmd splits such huge pages one per full scan when zero
  // pages have no KSM page to merge into (docs/savings.md, "The prediction").
  const w = await Workload.start({ processes: 1, imagePages: 1024, zeroPages: 2048, uniquePages: 1024, hugepages: 'always', seed: 13 });
  try {
    const r = await scan({ pid: w.pids[0] }, { useZeroPages: false });
    const tg = r.targets[0];
    // Where the kernel had no huge page to give, zero pages are 4 KiB pages and merge as such.
    assert.ok(tg.thpZeroPages >= 3 * 512, `${tg.thpZeroPages} zero pages inside huge pages`);
    assert.deepEqual(r.estimate.thpSplitZeroPages, 0);
    assert.deepEqual(
      [r.thpSplitPages, r.thpSlowSplitPages, r.thpSlowSplitZeroPages],
      [0, tg.density.thpZeroPages.filter((z) => z > 0).length, tg.thpZeroPages],
    );
  } finally {
    await w.stop();
  }
});

test("a process root may not read (no CAP_SYS_PTRACE over one with capabilities it lacks): the error does not tell root to run as root", async (t) => {
  if (!requireRoot(t, 'a scan as root without CAP_SYS_PTRACE')) return;
  const target = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    const r = spawnSync('setpriv', ['--bounding-set', '-sys_ptrace', '--inh-caps', '-sys_ptrace', '--', ...cliArgv(['scan', '--pid', String(target.pid), '--unmergeable'])], { encoding: 'utf8', cwd: REPO });
    assert.deepEqual(
      [r.status, r.stderr],
      [1, `pagefuse scan: not allowed to read the memory of process ${target.pid}: the kernel refused ptrace access even to root (it needs CAP_SYS_PTRACE over a process with capabilities it lacks; see /proc/sys/kernel/yama/ptrace_scope)\n`],
    );
  } finally {
    target.kill();
  }
});
