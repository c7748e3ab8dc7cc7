import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI, REPO as ROOT, builtBin, runCliAsync } from './helpers/cli.js';
import { startMergedChild, waitMerging } from './helpers/report-ksm.js';
import { RUNNING_SETTINGS, withKsm } from './helpers/ksm.js';
import { requireRoot } from './helpers/root.js';

const PTY = fileURLToPath(new URL('./helpers/run_in_pty.py', import.meta.url));

interface PtyRun {
  ready: boolean;
  code: number | null;
  output: string;
  raw_while_running: boolean;
  canonical_after: boolean;
  echo_after: boolean;
}

function inPty(args: string[], keys: string, waitFor: string[]): PtyRun {
  const spec = { argv: [process.execPath, ...CLI, ...args], wait_for: waitFor, keys, timeout: 30, rows: 30, cols: 120 };
  return JSON.parse(execFileSync('python3', [PTY, JSON.stringify(spec)], { cwd: ROOT, encoding: 'utf8' })) as PtyRun;
}

function checkRun(r: PtyRun): void {
  assert.equal(r.ready, true, `the screen was drawn with rates after a refresh:\n${r.output}`);
  assert.equal(r.code, 0);
  assert.ok(r.output.startsWith('\x1b[?1049h\x1b[?25l'), 'entered the alternate screen and hid the cursor');
  assert.ok(r.output.endsWith('\x1b[?25h\x1b[?1049l'), 'showed the cursor and left the alternate screen last');
  assert.match(r.output, /saved [\d.]+ \S*B = KSM pages [\d.]+ \S*B \+ KSM zero pages [\d.]+ \S*B \+ THP-split zero pages /);
  assert.match(r.output, /would save /);
  assert.match(r.output, /KSM run=\d pages_to_scan=\d+ sleep_millisecs=\d+/);
  assert.equal(r.raw_while_running, true, 'raw mode while running, so q needs no Enter');
  assert.equal(r.canonical_after, true, 'canonical mode back after exit');
  assert.equal(r.echo_after, true, 'echo back after exit');
}

test('top in a pseudo-terminal beside a merged VM', async (t) => {
  await withKsm(t, async () => {
    const vm = await startMergedChild(32, 'pf-top-vm');
    try {
      await waitMerging(vm.pid, 32);
      const r = inPty(['top', '--interval', '0.2'], 'q', ['pagefuse top', 'merge rate +', 'pf-top-vm [vm]']);
      await t.test('it refreshes, quits on q with exit 0 and gives the terminal back as it was', () => checkRun(r));
      await t.test('its VM row names the VM and gives its saved share, PSS, pages, metadata and kernel profit', () => {
        // 32 pages merged into one KSM page: 31 saved, all this VM's share (124 KiB); 32 rmap items
        // (2.0 KiB); the kernel's profit 32 × 4096 − 32 × 64 = 129024 B = 126 KiB.
        assert.match(r.output, new RegExp(`\\n${vm.pid} +pf-top-vm \\[vm\\] +124 KiB +[\\d.]+ \\S+ +31 +0 +0 +32 +2\\.0 KiB +126 KiB\\x1b\\[K`));
      });
    } finally {
      await vm.stop();
    }
  }, { settings: RUNNING_SETTINGS });
});

test('top quits on Ctrl-C too, restoring the terminal', () => {
  checkRun(inPty(['top', '--interval', '0.2'], '\x03', ['pagefuse top', 'merge rate +']));
});

test('top with stdout not a terminal prints one plain report and exits 0', async () => {
  // No tuner state file: the host's own (a daemon that ran here once) would change the tuner line.
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-top-'));
  try {
    const r = await runCliAsync(['top', '--interval', '0.1'], { env: { ...process.env, PAGEFUSE_TUNER_STATE: join(dir, 'tuner.json') } });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.doesNotMatch(r.stdout, /\x1b\[/, 'no escape sequences');
    assert.match(r.stdout, /^KSM run=\d /);
    assert.match(r.stdout, /\nmerge rate [+-]\d+ pages\/s {2}ksmd CPU \d+\.\d %/);
    assert.match(r.stdout, /\ntuner: none running\n/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('top shows the tuner daemon\'s latest decision from its state file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-top-'));
  try {
    const state = join(dir, 'tuner.json');
    // Five hours old: shown as 5h ago however long the CLI takes to start on a loaded machine.
    writeFileSync(state, JSON.stringify({ at: Date.now() - 5 * 3600_000, policy: 'adaptive', settings: { run: 1, pages_to_scan: 20000, sleep_millisecs: 0 }, reason: 'new VM 4242', pid: process.pid }));
    const r = await runCliAsync(['top', '--interval', '0.1'], { env: { ...process.env, PAGEFUSE_TUNER_STATE: state } });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`\\ntuner adaptive pid ${process.pid} 5h ago: run=1 pages_to_scan=20000 sleep_millisecs=0 \\(new VM 4242\\)\\n`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("top escapes what the tuner's state file says, as it escapes names", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-top-'));
  try {
    const state = join(dir, 'tuner.json');
    writeFileSync(state, JSON.stringify({ at: Date.now() - 5 * 3600_000, policy: 'a\x1b[2J', settings: { 'run\x07': 1 }, reason: 'r', pid: process.pid }));
    const r = await runCliAsync(['top', '--interval', '0.1'], { env: { ...process.env, PAGEFUSE_TUNER_STATE: state } });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.stdout.includes(`\ntuner a\\033[2J pid ${process.pid} 5h ago: run\\007=1 (r)\n`), r.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("top's would-save lines give the tuner's estimate and, under it, the figure once ksmd has split the slow huge pages", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-top-'));
  try {
    const state = join(dir, 'tuner.json');
    const MiB = 1024 * 1024;
    writeFileSync(
      state,
      JSON.stringify({ at: Date.now() - 5 * 3600_000, policy: 'adaptive', settings: { run: 1 }, reason: 'estimate', pid: process.pid, estimatedBytes: 600 * MiB, thpSlowSplitPages: 31, thpSlowSplitZeroBytes: 60 * MiB }),
    );
    const r = await runCliAsync(['top', '--interval', '0.1'], { env: { ...process.env, PAGEFUSE_TUNER_STATE: state } });
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stdout,
      /\nwould save 600 MiB by ksmd's second full scan {2}\(tuner's scan 5h ago; saved now [^)]+\)\n {2}660 MiB once ksmd has split 31 more huge pages, at most one a full scan \(\+60\.0 MiB of zero subpages; use_zero_pages=1 frees them in one\)\n/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

async function checkUsageError(args: string[]): Promise<void> {
  const r = await runCliAsync(['top', ...args]);
  assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /^pagefuse top: /);
}

test('top refuses an unknown flag or an extra argument with one line, exit 2', async () => {
  for (const args of [['--bogus'], ['extra']]) await checkUsageError(args);
});

test('top refuses a bad --interval with one line, exit 2', async () => {
  for (const args of [['--interval', '0'], ['--interval', 'soon']]) await checkUsageError(args);
});

test("top without root says under the report that other users' processes are not listed", async (t) => {
  if (!requireRoot(t, 'runs the CLI as uid 65534')) return;
  const r = await runCliAsync(['top', '--interval', '0.1'], { uid: 65534, gid: 65534, bin: builtBin() });
  assert.deepEqual([r.status, r.stderr], [0, '']);
  assert.ok(r.stdout.endsWith("\n(not root: other users' processes are not listed; run as root to see every process)\n"), r.stdout);
});
