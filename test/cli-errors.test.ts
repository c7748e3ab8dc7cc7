// What a user sees on a mistake: one line on stderr that says what to write, and the exit status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO, builtBin, runCli as runSourceCli, type CliOptions } from './helpers/cli.js';
import { durationFlag } from '../src/cli/common.js';
import { EXIT_CODES } from '../src/cli/main.js';

const bin = builtBin();
const runCli = (args: string[], options: CliOptions = {}) => runSourceCli(args, { ...options, bin });

test("a negative value after a flag: that flag's range error, not 'argument is ambiguous', exit 2", () => {
  for (const [args, line] of [
    [['status', '--top', '-1'], "pagefuse status: --top must be a whole number from 0 to 1000000, got '-1'"],
    [['unmerge', '--timeout', '-5'], "pagefuse unmerge: --timeout must be a duration from 0ms to 24h (seconds, or with ms, s, m or h), got '-5'"],
    [['top', '--interval', '-1'], "pagefuse top: --interval must be a duration from 50ms to 24h (seconds, or with ms, s, m or h), got '-1'"],
  ] as const) {
    const r = runCli([...args]);
    assert.equal(r.status, 2, args.join(' '));
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `${line}\n`);
  }
});

test('a whole-number flag takes decimal digits only: hex and exponents are refused, exit 2', () => {
  for (const value of ['0x10', '1e3']) {
    const r = runCli(['status', '--top', value]);
    assert.equal(r.status, 2, value);
    assert.equal(r.stderr, `pagefuse status: --top must be a whole number from 0 to 1000000, got '${value}'\n`);
  }
});

test('a duration with an unknown unit is refused with the units it takes, exit 2', () => {
  const r = runCli(['top', '--interval', '2x']);
  assert.equal(r.status, 2);
  assert.equal(r.stderr, "pagefuse top: --interval must be a duration from 50ms to 24h (seconds, or with ms, s, m or h), got '2x'\n");
});

test('durations are seconds, with ms, s, m and h accepted', () => {
  for (const [value, seconds] of [['1.5', 1.5], ['500ms', 0.5], ['30s', 30], ['2m', 120], ['1h', 3600]] as const) {
    assert.equal(durationFlag('x', 'interval', value, { min: 0, max: 86_400 }), seconds, value);
  }
});

test('--version prints the package version', () => {
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
  const v = runCli(['--version']);
  assert.equal(v.status, 0);
  assert.equal(v.stdout, `pagefuse ${pkg.version}\n`);
});

test('--version with anything after it is a usage error, exit 2', () => {
  assert.deepEqual(runCli(['-V', 'extra']), { status: 2, stdout: '', stderr: "pagefuse: -V takes no arguments; run 'pagefuse --help'\n", signal: null });
});

test("'pagefuse help tune' prints what 'pagefuse tune --help' prints", () => {
  const viaHelp = runCli(['help', 'tune']);
  assert.equal(viaHelp.status, 0);
  assert.equal(viaHelp.stdout, runCli(['tune', '--help']).stdout);
  assert.match(viaHelp.stdout, /^usage: pagefuse tune /);
});

test("names of Object's prototype are unknown commands, exit 2 (they failed with 'entry.load is not a function', exit 1)", () => {
  for (const name of ['constructor', '__proto__', 'toString']) {
    assert.deepEqual(runCli([name]), { status: 2, stdout: '', stderr: `pagefuse: unknown command '${name}'; run 'pagefuse --help'\n`, signal: null }, name);
  }
});

test('--help prints the usage on stdout, ending with the exit-status table, exit 0', () => {
  const h = runCli(['--help']);
  assert.equal(h.status, 0);
  assert.equal(h.stderr, '');
  assert.match(h.stdout, /^usage: pagefuse <command> \[options\]\n/);
  assert.ok(h.stdout.endsWith(EXIT_CODES), 'the exit-status table ends the top-level help');
  for (const code of ['0', '1', '2', '3', '125', '126', '127', '141']) assert.match(EXIT_CODES, new RegExp(`\\b${code}\\b`));
});

test("the README's exit-status table lists the statuses --help lists", () => {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('Exit statuses (also at the end of `pagefuse --help`)')).split('\n\n')[1];
  const inReadme = [...table.matchAll(/^\| (\d+) \|/gm)].map((m) => m[1]);
  const inHelp = [...EXIT_CODES.matchAll(/^ {2}(\d+) /gm)].map((m) => m[1]).concat([...EXIT_CODES.matchAll(/\b(12[5-7])\b/g)].map((m) => m[1]));
  assert.deepEqual(inReadme.sort(), inHelp.sort());
});

test('tune without root: one line that says the tuner lock needs root, not a bare EACCES', (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root to run the CLI as another user');
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-lock-')); // 0700, root's
  try {
    const lock = join(dir, 'tune.lock');
    const r = runCli(['tune', '--once', '--force'], { uid: 65534, gid: 65534, env: { PAGEFUSE_TUNE_LOCK: lock }, timeoutMs: 30_000 });
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stderr, `pagefuse tune: needs root: creating the tuner lock ${lock} (PAGEFUSE_TUNE_LOCK names another file)\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('no command: the usage on stderr, nothing on stdout, exit 2', () => {
  const none = runCli([]);
  assert.equal(none.status, 2);
  assert.equal(none.stdout, '');
  assert.match(none.stderr, /^usage: pagefuse <command> \[options\]\n/);
});

test('scan --sample-rate without --mode sampled is refused rather than ignored', () => {
  const r = runCli(['scan', '--all', '--sample-rate', '64']);
  assert.equal(r.status, 2);
  assert.equal(r.stderr, 'pagefuse scan: --sample-rate goes with --mode sampled\n');
});
