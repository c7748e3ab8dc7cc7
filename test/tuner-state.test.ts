// Published tuner state tells the truth: a dry run applies nothing and is shown as nothing once it exits,
// never overwrites a live daemon's state, and a tuner that has exited is shown as exited.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, REPO as ROOT, runCliAsync } from './helpers/cli.js';
import { lockKsm } from './helpers/lock.js';
import { parseExposition } from './helpers/prom-text.js';

const DIR = mkdtempSync(join(tmpdir(), 'pagefuse-tuner-state-'));
/** The dry run publishes next to this file; a live daemon's decision is in it (pid: this test process). */
const LIVE = join(DIR, 'live', 'tuner.json');
/** A host where only the dry run ever ran. */
const ALONE = join(DIR, 'alone', 'tuner.json');
const LIVE_STATE = JSON.stringify({ at: Date.now(), policy: 'kernel-advisor', settings: { run: 1, pages_to_scan: 4242 }, reason: 'the daemon', pid: process.pid }) + '\n';

/**
 * Runs `tune --dry-run` against `statePath` until it has made its first decision and two more intervals have
 * passed (each decision is published; the log repeats one only when it changes), then stops it.
 */
async function dryRun(statePath: string): Promise<void> {
  const child = spawn(process.execPath, [...CLI, 'tune', '--dry-run', '--force', '--json', '--interval', '0.2'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PAGEFUSE_TUNER_STATE: statePath, PAGEFUSE_TUNE_LOCK: join(DIR, 'tune.lock') },
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  for (let i = 0; i < 1200 && !/"event":"decision"/.test(out); i++) await sleep(50);
  // Waiting for a second decision line instead waited out the whole 60 s twice: a dry run that would write
  // the same for the same reasons logs it once.
  await sleep(500);
  child.kill('SIGTERM');
  assert.equal(await exited, 0, err);
  assert.match(out, /"event":"decision".*"dry_run":true/);
}

before(async () => {
  const release = await lockKsm();
  try {
    await dryRun(ALONE);
    mkdirSync(join(DIR, 'live'));
    writeFileSync(LIVE, LIVE_STATE);
    await dryRun(LIVE);
  } finally {
    release();
  }
});
after(() => rmSync(DIR, { recursive: true, force: true }));

const env = (statePath: string) => ({ env: { ...process.env, PAGEFUSE_TUNER_STATE: statePath } });

test('after tune --dry-run exits, top shows no tuner', async () => {
  const r = await runCliAsync(['top', '--interval', '0.1'], env(ALONE));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\ntuner: none running\n/);
});

test('after tune --dry-run exits, /metrics exports no tuner series', async () => {
  const serve = spawn(process.execPath, [...CLI, 'serve', '--listen', '127.0.0.1:0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], ...env(ALONE) });
  try {
    let out = '';
    serve.stdout.on('data', (d: Buffer) => (out += d.toString()));
    for (let i = 0; i < 600 && !/:(\d+)\/metrics/.test(out); i++) await sleep(50);
    const families = parseExposition(await (await fetch(`http://127.0.0.1:${/:(\d+)\/metrics/.exec(out)![1]}/metrics`)).text());
    // pagefuse_tuner_up is always there, for alerting: 0, no tuner at work. No other tuner series.
    const tunerSamples = [...families.values()].filter((f) => f.name.startsWith('pagefuse_tuner_') && f.name !== 'pagefuse_tuner_up').flatMap((f) => f.samples);
    assert.deepEqual(tunerSamples, []);
    assert.deepEqual(families.get('pagefuse_tuner_up')?.samples.map((x) => x.value), [0]);
  } finally {
    serve.kill('SIGTERM');
  }
});

test('after tune --dry-run exits, report lists no decision', async () => {
  const html = join(DIR, 'report.html');
  const r = await runCliAsync(['report', '--html', html, '--duration', '0.3', '--interval', '0.1'], env(ALONE));
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(readFileSync(html, 'utf8'), /class="decision"/);
});

test('tune --dry-run leaves a live daemon\'s state file as it was', () => {
  assert.equal(readFileSync(LIVE, 'utf8'), LIVE_STATE);
});

test('top shows a tuner whose process exited as exited, with none of its knobs', async () => {
  const exitedState = join(DIR, 'exited.json');
  // A pid that cannot be running: above the kernel's pid_max.
  const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  writeFileSync(exitedState, JSON.stringify({ at: Date.now() - 3000, policy: 'adaptive', settings: { run: 1 }, reason: 'x', pid: pidMax + 1 }));
  const r = await runCliAsync(['top', '--interval', '0.1'], env(exitedState));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`\\ntuner: none running \\(pid ${pidMax + 1} exited; its last decision, \\d+s ago, is not in force\\)\\n`));
});

test('top marks a running dry run as a dry run that writes nothing', async () => {
  const dir = mkdtempSync(join(DIR, 'dry-'));
  writeFileSync(join(dir, 'tuner.dry-run.json'), JSON.stringify({ at: Date.now(), policy: 'adaptive', settings: { run: 1 }, reason: 'x', pid: process.pid, dryRun: true }));
  const r = await runCliAsync(['top', '--interval', '0.1'], env(join(dir, 'tuner.json')));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`\\ntuner adaptive dry run, pid ${process.pid} \\d+s ago: would set run=1, writes nothing \\(x\\)\\n`));
});
