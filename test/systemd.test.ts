// The shipped systemd units: systemd-analyze verify accepts them, and their sandboxing scores no worse
// than the README says (systemd-analyze security --offline=true, 0 = fully sandboxed, 10 = none).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, REPO } from './helpers/cli.js';
import { DEFAULT_PORT } from '../src/cli/serve.js';

const UNITS = ['pagefuse-tune.service', 'pagefuse-serve.service'];
const ANALYZE = '/usr/bin/systemd-analyze';
let dir = '';

before(() => {
  // verify checks that ExecStart's binary exists; pagefuse is not installed globally here, so the
  // copies name this Node instead of /usr/local/bin/pagefuse. Nothing else changes.
  dir = mkdtempSync(join(tmpdir(), 'pagefuse-units-'));
  for (const unit of UNITS) {
    const text = readFileSync(join(REPO, 'systemd', unit), 'utf8');
    assert.match(text, /^ExecStart=\/usr\/local\/bin\/pagefuse /m);
    writeFileSync(join(dir, unit), text.replaceAll('/usr/local/bin/pagefuse', process.execPath));
  }
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('systemd-analyze verify accepts both units without a warning', () => {
  const r = spawnSync(ANALYZE, ['verify', '--man=no', ...UNITS.map((u) => `./${u}`)], { cwd: dir, encoding: 'utf8' });
  assert.equal(r.stderr, '');
  assert.equal(r.status, 0);
});

test('each unit scores at or below the exposure the README states', () => {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  for (const unit of UNITS) {
    const stated = new RegExp(`\`${unit.replace('.', '\\.')}\` exposure (\\d+\\.\\d)`).exec(readme);
    assert.ok(stated, `README states no exposure for ${unit}`);
    const r = spawnSync(ANALYZE, ['security', '--offline=true', `./${unit}`], { cwd: dir, encoding: 'utf8' });
    const score = /Overall exposure level for \S+: (\d+\.\d)/.exec(r.stdout);
    assert.ok(score, r.stdout + r.stderr);
    assert.ok(Number(score[1]) <= Number(stated[1]), `${unit}: exposure ${score[1]} > README's ${stated[1]}`);
  }
});

// The kernel's own MemoryDenyWriteExecute (PR_SET_MDWE with PR_MDWE_REFUSE_EXEC_GAIN, Linux 6.3+), set by
// a python3 wrapper that then execs node: what systemd's MemoryDenyWriteExecute=yes refuses, refused.
/** The wrapper's exit when the kernel has no PR_SET_MDWE (before Linux 6.3). */
const NO_MDWE = 99;
const MDWE = `import ctypes, os, sys\nif ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0: sys.exit(${NO_MDWE})\nos.execvp(sys.argv[1], sys.argv[1:])`;

function underMdwe(nodeOptions: string) {
  const state = mkdtempSync(join(tmpdir(), 'pagefuse-mdwe-'));
  try {
    return spawnSync('python3', ['-c', MDWE, process.execPath, ...CLI, 'tune', '--dry-run', '--once'], {
      cwd: REPO,
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: nodeOptions, PAGEFUSE_TUNER_STATE: join(state, 'tuner.json'), PAGEFUSE_TUNE_LOCK: join(state, 'tune.lock'), PAGEFUSE_STATE_DIR: state },
    });
  } finally {
    rmSync(state, { recursive: true, force: true });
  }
}

test("the tuner runs where writable-and-executable memory is refused, with its unit's NODE_OPTIONS", (t) => {
  const text = readFileSync(join(REPO, 'systemd', 'pagefuse-tune.service'), 'utf8');
  assert.match(text, /^MemoryDenyWriteExecute=yes$/m);
  const options = /^Environment=NODE_OPTIONS=(.*)$/m.exec(text)?.[1];
  assert.ok(options !== undefined, 'the unit sets NODE_OPTIONS');
  const r = underMdwe(options);
  if (r.status === NO_MDWE) return t.skip('this kernel has no PR_SET_MDWE (Linux 6.3+)');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /dry run, nothing written/);
});

test('without --jitless, Node aborts where writable-and-executable memory is refused', (t) => {
  const r = underMdwe('');
  if (r.status === NO_MDWE) return t.skip('this kernel has no PR_SET_MDWE (Linux 6.3+)');
  assert.equal(r.status, null, 'killed by a signal');
});

test("the exporter's unit listens on serve's default port, the one the README names", () => {
  // It said 9904 while the README and serve's default said 10452, and its header named the tuner's unit.
  const unit = readFileSync(join(REPO, 'systemd', 'pagefuse-serve.service'), 'utf8');
  assert.match(unit, new RegExp(`^ExecStart=/usr/local/bin/pagefuse serve --listen 127\\.0\\.0\\.1:${DEFAULT_PORT}$`, 'm'));
  assert.match(unit, /^# Install as pagefuse-serve\.service /m);
});
