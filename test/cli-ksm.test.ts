// pagefuse status / set / start / stop / unmerge, run as an install runs them (helpers/cli.ts, the built
// CLI): output checked against sysfs, and every refused call leaves every knob as it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ksm, Region, PAGE_SIZE, processKsm } from '../src/index.js';
import { builtBin, runCliAsync, type CliOptions, type CliResult } from './helpers/cli.js';
import { RUNNING_SETTINGS, mergeAndWait, selfKsm, withKsm } from './helpers/ksm.js';
import { startMergedChild, waitMerging } from './helpers/report-ksm.js';

const bin = builtBin();
const cli = (args: string[], options: CliOptions = {}): Promise<CliResult> => runCliAsync(args, { ...options, bin });
const nobody = { uid: 65534, gid: 65534 };

function oneLine(r: CliResult, pattern: RegExp): void {
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0], pattern);
}

function mergedRegion(pages: number, byte: number): Region {
  const r = Region.alloc(pages * PAGE_SIZE, { hugepages: 'never' });
  new Uint8Array(r.buffer).fill(byte);
  return r;
}

test('status --json has the documented shape with the values sysfs and /proc give, this process listed', async (t) => {
  await withKsm(t, async (ksm) => {
    using r = mergedRegion(24, 0x21);
    await mergeAndWait(ksm, r);
    await ksm.stop(); // hold the counters still while both sides read them
    const r1 = await cli(['status', '--json']);
    assert.equal(r1.status, 0, r1.stderr);
    const out = JSON.parse(r1.stdout);
    const state = await ksm.read();
    assert.deepEqual(Object.keys(out).slice(0, 3), ['ksm', 'savings', 'processes']);
    assert.equal(out.ksm.available, true);
    assert.deepEqual(out.ksm.settings, state.settings);
    assert.deepEqual(out.ksm.counters, state.counters);
    assert.equal(out.ksm.profit_bytes, state.profitBytes);
    assert.equal(out.ksm.sharing_ratio, state.counters.pages_sharing! / state.counters.pages_shared!);
    const me = out.processes.find((p: { pid: number }) => p.pid === process.pid);
    const self = await selfKsm();
    const { saved_bytes: savedBytes, saved, pss_bytes: pss, ...rest } = me;
    assert.deepEqual(rest, {
      pid: process.pid,
      name: (await readFile('/proc/self/comm', 'utf8')).trim(),
      vm: false,
      merging_pages: 24,
      zero_pages: 0,
      rmap_items: self.rmapItems,
      kernel_profit_bytes: self.profitBytes,
      merge_any: false,
      mergeable: true,
    });
    assert.equal(savedBytes, (saved.ksm_pages + saved.ksm_zero_pages + saved.thp_split_zero_pages) * saved.page_size);
    assert.ok(pss > 0);
    const shares = out.processes.map((p: { saved_bytes: number }) => p.saved_bytes);
    assert.deepEqual(shares, [...shares].sort((a, b) => b - a), 'most saved first');
  });
});

test('status after a VM exited while ksmd was stopped: saved counts the pages the VMs left share, not the exited one\'s', async (t) => {
  await withKsm(t, async (ksm) => {
    // Page i of each guest holds i: 32 KSM pages, each mapped by the three guests.
    const vms = await Promise.all(['pf-exit-a', 'pf-exit-b', 'pf-exit-c'].map((name) => startMergedChild(32, name, 'indexed')));
    try {
      for (const vm of vms) await waitMerging(vm.pid, 32);
      await ksm.stop();
      await vms[2].stop();
      // The kernel keeps the exited guest's merged pages in its counters until ksmd passes again.
      assert.deepEqual([(await ksm.read()).counters.pages_shared, (await ksm.read()).counters.pages_sharing], [32, 64]);
      const r = await cli(['status', '--json']);
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      // Each page is mapped twice now: 32 pages saved, 16 each.
      assert.equal(out.savings.parts_pages.ksm_pages, 32);
      assert.equal(out.savings.exited_pages, 32);
      const left = out.processes.filter((p: { pid: number }) => p.pid === vms[0].pid || p.pid === vms[1].pid);
      assert.deepEqual(left.map((p: { saved: { ksm_pages: number } }) => p.saved.ksm_pages), [16, 16]);
    } finally {
      await Promise.all(vms.map((vm) => vm.stop()));
    }
  }, { settings: RUNNING_SETTINGS });
});

test('status prints the run state, savings, sharing ratio, knobs, counters and the process table', async (t) => {
  await withKsm(t, async (ksm) => {
    using r = mergedRegion(24, 0x22);
    await mergeAndWait(ksm, r);
    await ksm.stop();
    const { counters } = await ksm.read();
    const r1 = await cli(['status']);
    assert.equal(r1.status, 0, r1.stderr);
    assert.match(r1.stdout, /^KSM: stopped \(run=0; merged pages stay merged\)\n/);
    const ratio = (counters.pages_sharing! / counters.pages_shared!).toFixed(2);
    assert.match(r1.stdout, /\nsaved .* = KSM pages .* \+ KSM zero pages .* \+ THP-split zero pages .*\n/);
    assert.match(r1.stdout, new RegExp(`\\nKSM metadata .* \\(host cost\\); kernel general_profit .*; sharing ratio ${ratio.replace('.', '\\.')} \\(pages_sharing / pages_shared\\)\\n`));
    assert.match(r1.stdout, /\n {2}pages_to_scan {24}10000\n/);
    assert.match(r1.stdout, new RegExp(`\\n {2}pages_sharing +${counters.pages_sharing}\\n`));
    assert.match(r1.stdout, /\nPID +NAME +SAVED +PSS +MERGING +ZERO +KERNEL_PROFIT\n/);
    assert.match(r1.stdout, new RegExp(`\\n${process.pid} +\\S+ +[\\d.]+ KiB +[\\d.]+ MiB +24 +0 +[\\d.]+ KiB\\n`));
  });
});

test('status --top 0 leaves the process table out and says how many there were', async () => {
  // A state dir of its own: processes registered on this host (pagefuse exec, a bench) would add their own
  // table. And a process with mergeable memory of its own (this one), so there is a table to leave out.
  const stateDir = await mkdtemp(join(tmpdir(), 'pagefuse-top0-'));
  using r = mergedRegion(4, 0x5a);
  r.advise('mergeable');
  try {
    const r0 = await cli(['status', '--top', '0'], { env: { PAGEFUSE_STATE_DIR: stateDir } });
    assert.equal(r0.status, 0, r0.stderr);
    assert.doesNotMatch(r0.stdout, /\nPID /);
    assert.match(r0.stdout, /processes with KSM state or mergeable memory, most saved first \(top 0 of \d+\):/);
  } finally {
    await rm(stateDir, { recursive: true, force: true });
  }
});

test('status refuses a bad --top with one line, exit 2', async () => {
  for (const args of [['--top', 'x'], ['--top=-1'], ['--top', '1.5']]) {
    const r = await cli(['status', ...args]);
    assert.equal(r.status, 2, args.join(' '));
    oneLine(r, /^pagefuse status: /);
    assert.equal(r.stdout, '');
  }
});

test('status refuses an unknown flag with one line, exit 2', async () => {
  for (const args of [['--bogus']]) {
    const r = await cli(['status', ...args]);
    assert.equal(r.status, 2, args.join(' '));
    oneLine(r, /^pagefuse status: /);
    assert.equal(r.stdout, '');
  }
});

const noKsm = { env: { PAGEFUSE_KSM_SYSFS: '/nonexistent/ksm' } };

test('status without KSM in the kernel says so on one line, exit 1', async () => {
  const human = await cli(['status'], noKsm);
  assert.equal(human.status, 1);
  oneLine(human, /^pagefuse status: KSM is not available: \/nonexistent\/ksm does not exist/);
});

test('status --json without KSM in the kernel prints available: false, exit 1', async () => {
  const json = await cli(['status', '--json'], noKsm);
  assert.equal(json.status, 1);
  assert.deepEqual(JSON.parse(json.stdout), {
    ksm: { available: false, settings: {}, counters: {}, profit_bytes: 0 },
    processes: [],
  });
});

test('status, set, start, stop and unmerge --help print their usage on stdout, exit 0', async () => {
  for (const [cmd, usage] of [['status', 'status [--json] [--top N]'], ['set', 'set'], ['start', 'start'], ['stop', 'stop'], ['unmerge', 'unmerge']]) {
    const h = await cli([cmd, '--help']);
    assert.equal(h.status, 0, cmd);
    assert.ok(h.stdout.startsWith(`usage: pagefuse ${usage}`), h.stdout);
  }
});

test('status works without root and reads the knobs; root-owned processes are counted, not shown', async (t) => {
  await withKsm(t, async (ksm) => {
    const r = await cli(['status', '--json'], nobody);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.ksm.settings, (await ksm.read()).settings);
    assert.ok(out.processes_unreadable > 0, 'root-owned processes are counted, not shown');
  });
});

test('set without root says it needs root on one line, exit 1, and changes nothing', async (t) => {
  await withKsm(t, async (ksm) => {
    const before = (await ksm.read()).settings;
    const s = await cli(['set', 'sleep_millisecs=9'], nobody);
    assert.equal(s.status, 1);
    oneLine(s, /^pagefuse set: needs root: writing \/sys\/kernel\/mm\/ksm\/sleep_millisecs$/);
    assert.deepEqual((await ksm.read()).settings, before);
  });
});

test('set without root fails with needs root when the value already holds, and writes nothing', async (t) => {
  await withKsm(t, async (ksm) => {
    await ksm.configure({ sleep_millisecs: 9 });
    const s = await cli(['set', 'sleep_millisecs=9'], nobody);
    assert.equal(s.status, 1);
    oneLine(s, /^pagefuse set: needs root: writing \/sys\/kernel\/mm\/ksm\/sleep_millisecs$/);
    assert.equal(s.stdout, '');
  });
});

test('start without root fails with needs root when ksmd runs already', async (t) => {
  await withKsm(t, async (ksm) => {
    await ksm.start();
    const s = await cli(['start'], nobody);
    assert.equal(s.status, 1);
    oneLine(s, /^pagefuse start: needs root: writing \/sys\/kernel\/mm\/ksm\/run$/);
    assert.equal(s.stdout, '');
  });
});

test('set writes knobs and prints what they read back', async (t) => {
  await withKsm(t, async (ksm) => {
    const r = await cli(['set', 'sleep_millisecs=7', 'pages_to_scan=1234', 'use_zero_pages=on']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'sleep_millisecs=7 pages_to_scan=1234 use_zero_pages=1\n');
    const s = (await ksm.read()).settings;
    assert.deepEqual([s.sleep_millisecs, s.pages_to_scan, s.use_zero_pages], [7, 1234, 1]);
  });
});

test('start sets run=1', async (t) => {
  await withKsm(t, async (ksm) => {
    await ksm.stop();
    const start = await cli(['start']);
    assert.equal(start.status, 0, start.stderr);
    assert.equal(await ksm.get('run'), 1);
  });
});

test('stop sets run=0 and says so', async (t) => {
  await withKsm(t, async (ksm) => {
    await ksm.start();
    const stop = await cli(['stop']);
    assert.equal(stop.status, 0, stop.stderr);
    assert.match(stop.stdout, /^ksmd stopped \(run=0\)/);
    assert.equal(await ksm.get('run'), 0);
  });
});

test('unmerge unmerges every KSM page and leaves ksmd stopped with run=2', async (t) => {
  await withKsm(t, async (ksm) => {
    using region = mergedRegion(16, 0x23);
    await mergeAndWait(ksm, region);
    assert.equal((await selfKsm()).mergingPages, 16);
    const u = await cli(['unmerge']);
    assert.equal(u.status, 0, u.stderr);
    assert.match(u.stdout, /^unmerged every KSM page \(pages_sharing was \d+\); ksmd stays stopped \(run=2\)/);
    const { settings, counters } = await ksm.read();
    assert.deepEqual([settings.run, counters.pages_shared, counters.pages_sharing], [2, 0, 0]);
    assert.equal((await selfKsm()).mergingPages, 0);
  });
});

test('set refuses bad input with one line and exit 2, writing nothing', async (t) => {
  await withKsm(t, async (ksm) => {
    const cases: [string[], RegExp][] = [
      [[], /give at least one KEY=VALUE/],
      [['pages_to_scan=abc'], /pages_to_scan must be a whole number from 0 to 4294967295, got "abc"/],
      [['pages_to_scan='], /pages_to_scan must be a whole number .*got ""/],
      [['foo=1'], /unknown KSM setting 'foo'/],
      [['sleep_millisecs'], /expected KEY=VALUE, got 'sleep_millisecs'/],
      [['=5'], /expected KEY=VALUE, got '=5'/],
      [['sleep_millisecs=5', 'run=3'], /run must be a whole number from 0 to 2 .*got 3/],
      [['use_zero_pages=maybe'], /use_zero_pages must be 1\/0 \(or y\/n, on\/off\), got "maybe"/],
      [['advisor_mode=fast'], /advisor_mode must be one of none, scan-time, got "fast"/],
      [['max_page_sharing=1'], /max_page_sharing must be a whole number from 2/],
      [['sleep_millisecs=1', 'sleep_millisecs=2'], /sleep_millisecs is given twice/],
      [['sleep_millisecs=-5'], /sleep_millisecs must be a whole number .*got "-5"/],
      [['--bogus', 'run=1'], /Unknown option '--bogus'/],
      [['run=1', '--timeout', '5'], /--timeout is how long --unmerge-first waits for the unmerge: give both, or neither/],
    ];
    for (const [args, message] of cases) {
      const before = (await ksm.read()).settings;
      const r = await cli(['set', ...args]);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      oneLine(r, /^pagefuse set: /);
      assert.match(r.stderr, message);
      assert.equal(r.stdout, '');
      assert.deepEqual((await ksm.read()).settings, before, args.join(' '));
    }
  });
});

test('set refuses pages_to_scan while advisor_mode=scan-time, on one line, exit 2, writing nothing', async (t) => {
  await withKsm(t, async (ksm) => {
    await ksm.configure({ advisor_mode: 'scan-time' });
    const before = (await ksm.read()).settings;
    const refused = await cli(['set', 'pages_to_scan=5000']);
    assert.equal(refused.status, 2);
    oneLine(refused, /pages_to_scan=5000 is refused while advisor_mode=scan-time .*set advisor_mode=none in the same call/);
    assert.deepEqual((await ksm.read()).settings, before);
  });
});

test('set pages_to_scan with advisor_mode=none leaves scan-time first, so pages_to_scan holds', async (t) => {
  await withKsm(t, async (ksm) => {
    await ksm.configure({ advisor_mode: 'scan-time' });
    // The kernel resets pages_to_scan to 100 when the advisor is switched off: written in the other
    // order, this would end at 100 (or fail with EINVAL).
    const r = await cli(['set', 'pages_to_scan=5000', 'advisor_mode=none']);
    assert.equal(r.status, 0, r.stderr);
    const after = (await ksm.read()).settings;
    assert.deepEqual([after.advisor_mode, after.pages_to_scan], ['none', 5000]);
  });
});

test('set merge_across_nodes while pages are shared: the kernel refuses, exit 1, one line, every knob as it was', async (t) => {
  await withKsm(t, async (ksm) => {
    using r = mergedRegion(16, 0x24);
    await mergeAndWait(ksm, r);
    await ksm.stop();
    const before = (await ksm.read()).settings;
    const busy = await cli(['set', 'sleep_millisecs=3', 'merge_across_nodes=0']);
    assert.equal(busy.status, 1);
    oneLine(busy, /^pagefuse set: cannot change merge_across_nodes while KSM pages are shared \(pages_shared=\d+\); pages are shared; unmerge first \(pagefuse set merge_across_nodes=0 --unmerge-first/);
    assert.deepEqual((await ksm.read()).settings, before);
  });
});

test('set refused half-way (a read-only knob in a fake tree) puts the knobs it wrote back', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pagefuse-cli-ksm-'));
  try {
    for (const [f, v] of Object.entries({ run: '0', sleep_millisecs: '20', pages_to_scan: '100' })) await writeFile(join(dir, f), `${v}\n`);
    await symlink('/sys/kernel/mm/ksm/pages_shared', join(dir, 'stable_node_chains_prune_millisecs'));
    const half = await cli(['set', 'sleep_millisecs=3', 'stable_node_chains_prune_millisecs=5'], {
      env: { PAGEFUSE_KSM_SYSFS: dir },
    });
    assert.equal(half.status, 1);
    oneLine(half, new RegExp(`^pagefuse set: needs root: writing ${dir}/stable_node_chains_prune_millisecs$`));
    assert.equal(await readFile(join(dir, 'sleep_millisecs'), 'utf8'), '20\n');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('set merge_across_nodes=0 --unmerge-first switches while pages are shared and puts run back', async (t) => {
  await withKsm(t, async (ksm) => {
    using r = mergedRegion(16, 0x25);
    await mergeAndWait(ksm, r);
    assert.equal(await ksm.get('run'), 1);
    assert.ok(((await ksm.get('pages_shared')) as number) > 0);
    // ksmd re-merges two passes after run comes back: slow it so the unmerge can be seen.
    await ksm.configure({ sleep_millisecs: 500 });
    const off = await cli(['set', 'merge_across_nodes=0', '--unmerge-first']);
    assert.equal(off.status, 0, off.stderr);
    assert.equal(off.stdout, 'merge_across_nodes=0\n');
    assert.equal(await ksm.get('merge_across_nodes'), 0);
    assert.equal(await ksm.get('run'), 1);
    assert.equal((await processKsm('self')).mergingPages, 0);
    await ksm.configure({ sleep_millisecs: 1 });
    await mergeAndWait(ksm, undefined, { scans: 2 });
    assert.equal((await selfKsm()).mergingPages, 16);
    const on = await cli(['set', 'merge_across_nodes=1', '--unmerge-first']);
    assert.equal(on.status, 0, on.stderr);
    assert.equal(await ksm.get('merge_across_nodes'), 1);
    assert.equal(await ksm.get('run'), 1);
  });
  assert.equal(await new Ksm().get('merge_across_nodes'), 1);
});
