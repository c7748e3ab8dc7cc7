// What a user sees on a mistake: one line on stderr that says what to write, and the exit status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO, runCli } from './helpers/cli.js';

test('a flag value that starts with a dash: one usage line that says to write --flag=-VALUE, exit 2', () => {
  for (const [args, flag] of [
    [['status', '--top', '-1'], 'top'],
    [['unmerge', '--timeout', '-5'], 'timeout'],
    [['top', '--interval', '-1'], 'interval'],
  ] as const) {
    const r = runCli([...args]);
    assert.equal(r.status, 2, args.join(' '));
    assert.equal(r.stdout, '');
    assert.equal(
      r.stderr,
      `pagefuse ${args[0]}: Option '--${flag}' argument is ambiguous: to specify an option argument starting with a dash use '--${flag}=-XYZ'\n`,
    );
  }
});

test('tune without root: one line that says the tuner lock needs root, not a bare EACCES', (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root to run the CLI as another user');
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-lock-')); // 0700, root's
  try {
    const lock = join(dir, 'tune.lock');
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/bin.ts', 'tune', '--once', '--dry-run', '--force'], {
      cwd: REPO,
      encoding: 'utf8',
      uid: 65534,
      gid: 65534,
      env: { ...process.env, PAGEFUSE_TUNE_LOCK: lock },
      timeout: 30_000,
    });
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stderr, `pagefuse tune: needs root: creating the tuner lock ${lock} (PAGEFUSE_TUNE_LOCK names another file)\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('no command: the usage on stderr, nothing on stdout, exit 2; --help: on stdout, exit 0', () => {
  const none = runCli([]);
  assert.equal(none.status, 2);
  assert.equal(none.stdout, '');
  assert.match(none.stderr, /^usage: pagefuse <command> \[options\]\n/);
  const help = runCli(['--help']);
  assert.equal(help.status, 0);
  assert.equal(help.stderr, '');
  assert.match(help.stdout, /^usage: pagefuse <command> \[options\]\n/);
});

test('scan --sample-rate without --mode sampled is refused rather than ignored', () => {
  const r = runCli(['scan', '--all', '--sample-rate', '64']);
  assert.equal(r.status, 2);
  assert.equal(r.stderr, 'pagefuse scan: --sample-rate goes with --mode sampled\n');
});
