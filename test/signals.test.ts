// SIGUSR1 never opens Node's inspector in a pagefuse process: not 200 ms after spawn, not while it runs,
// not while it stops; and the process goes on as if the signal had not come.
// The commands run from the build (node dist/cli/bin.js, as installed): tsx's loader would add its own
// start-up time before the entry point's first line. On Node 20 Node answers SIGUSR1 itself until that first
// line (docs/signals.md has the window as measured: under 200 ms on an idle machine, over a second on a
// loaded one). "At start" is 200 ms after spawn on an idle machine, stretched by the load average per CPU
// (the child's share of a CPU shrinks by as much). A start whose signal still opened the inspector or killed
// the process landed in Node's window, not pagefuse's: it is tried again with a new process, up to 5 times,
// and each retry is reported. On Node >= 22.14 the child gets --disable-sigusr1, which closes the window,
// and nothing is retried.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { REPO } from './helpers/cli.js';
import { lockKsm } from './helpers/lock.js';

const BIN = join(REPO, 'dist/cli/bin.js');
const [major, minor] = process.versions.node.split('.').map(Number);
const NODE_FLAGS = major > 22 || (major === 22 && minor >= 14) ? ['--disable-sigusr1'] : [];

/** Local ports of the TCP sockets in LISTEN state that process `pid` holds open (/proc/net/tcp and tcp6). */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9])) continue;
      ports.push(parseInt(f[1].split(':')[1], 16));
    }
  }
  return ports;
}

class Run {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly pid: number;
  readonly spawnedAt = performance.now();
  /** Every listening port seen on the process, sampled after each SIGUSR1. */
  readonly ports = new Set<number>();

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(process.execPath, [...NODE_FLAGS, BIN, ...args], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    this.pid = this.child.pid!;
    this.child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends SIGUSR1, waits long enough for an inspector to have opened, and records the listening ports. */
  async usr1(settleMs = 300): Promise<void> {
    this.child.kill('SIGUSR1');
    await sleep(settleMs);
    if (this.alive()) for (const p of listeningPorts(this.pid)) this.ports.add(p);
  }

  async waitFor(text: string, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.stdout.includes(text)) {
      assert.ok(Date.now() < deadline, `no '${text}' within ${ms} ms; stdout: ${this.stdout} stderr: ${this.stderr}`);
      assert.ok(this.alive(), `exited before '${text}'; stderr: ${this.stderr}`);
      await sleep(20);
    }
  }

  /** Sends `stop`, then SIGUSR1 every 10 ms until the process has exited. */
  async stopWithUsr1(stop: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.child.kill(stop);
    let done = false;
    void this.exited.then(() => (done = true));
    while (!done) {
      this.child.kill('SIGUSR1');
      await sleep(10);
    }
    return this.exited;
  }
}

/** Starts `args` and sends SIGUSR1 200 ms after spawn, trying again while that lands in Node 20's window. */
async function start(t: TestContext, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  for (let attempt = 1; ; attempt++) {
    const atMs = 200 * Math.max(1, loadavg()[0] / availableParallelism());
    const run = new Run(args, env);
    await sleep(Math.max(0, run.spawnedAt + atMs - performance.now()));
    await run.usr1(1000); // long enough for an inspector opened in a loaded machine to say so
    const inWindow = !run.alive() || run.stderr.includes('Debugger listening');
    if (!inWindow || NODE_FLAGS.length > 0 || attempt === 5) return run;
    t.diagnostic(`attempt ${attempt}: SIGUSR1 ${Math.round(atMs)} ms after spawn opened the inspector or ended the process: Node 20's window before the entry point's first line, or a pagefuse bug; again`);
    run.child.kill('SIGKILL');
    await run.exited;
  }
}

/** After the 200 ms signal, SIGUSR1 once `ready` resolves; the process must still be running after each. */
async function startAndRun(run: Run, ready: () => Promise<void>): Promise<void> {
  assert.ok(run.alive(), `SIGUSR1 200 ms after spawn ended the process; stderr: ${run.stderr}`);
  await ready();
  await run.usr1();
  assert.ok(run.alive(), `SIGUSR1 while running ended the process; stderr: ${run.stderr}`);
}

function assertNoInspector(run: Run, allowed: number[] = []): void {
  assert.ok(!run.stderr.includes('Debugger listening'), `the inspector opened: ${run.stderr}`);
  assert.deepEqual([...run.ports].filter((p) => !allowed.includes(p)), []);
}

test('serve: SIGUSR1 at start, while serving and while stopping opens no socket and does not stop it', async (t) => {
  const run = await start(t, ['serve', '--listen', '127.0.0.1:0']);
  await startAndRun(run, () => run.waitFor('listening on'));
  const port = Number(/:(\d+)\/metrics/.exec(run.stdout)![1]);
  const result = await run.stopWithUsr1('SIGTERM');
  assertNoInspector(run, [port]);
  assert.deepEqual(result, { code: 0, signal: null });
});

test('top: SIGUSR1 at start and while sampling opens no socket, and the report still comes', async (t) => {
  // Not on a terminal, top prints its report after one interval and exits: the interval outlasts the
  // signal at start (stretched by the load, see start()), its 1 s settle and the 600 ms before the next.
  const interval = Math.ceil(0.2 * Math.max(1, loadavg()[0] / availableParallelism()) + 1 + 0.6 + 1);
  const run = await start(t, ['top', '--interval', String(interval)]);
  await startAndRun(run, () => sleep(600));
  const result = await run.exited;
  assertNoInspector(run);
  assert.deepEqual(result, { code: 0, signal: null });
  assert.match(run.stdout, /saved/i);
});

test('top: SIGUSR1 while it stops opens no socket and it ends as SIGTERM asked', async (t) => {
  const run = await start(t, ['top', '--interval', '5']);
  await startAndRun(run, () => sleep(600));
  const result = await run.stopWithUsr1('SIGTERM');
  assertNoInspector(run);
  assert.deepEqual(result, { code: null, signal: 'SIGTERM' });
});

test('exec: SIGUSR1 to the parent at start, while the command runs and while it stops is ignored', async (t) => {
  const run = await start(t, ['exec', '--', 'sleep', '30']);
  await startAndRun(run, () => sleep(800));
  const result = await run.stopWithUsr1('SIGTERM');
  assertNoInspector(run);
  // The parent dies of the signal its command died of, as without it.
  assert.deepEqual(result, { code: null, signal: 'SIGTERM' });
});

test('tune: SIGUSR1 before the tuner starts, while it runs and while it stops opens no socket; SIGTERM still ends it with 0', async (t) => {
  const release = await lockKsm();
  try {
    const dir = mkdtempSync(join(tmpdir(), 'pagefuse-signals-'));
    const run = await start(t, ['tune', '--dry-run', '--force', '--interval', '1'], {
      PAGEFUSE_TUNER_STATE: join(dir, 'tuner.json'),
      PAGEFUSE_TUNE_LOCK: join(dir, 'tune.lock'),
    });
    await startAndRun(run, () => run.waitFor('pagefuse tune started'));
    const result = await run.stopWithUsr1('SIGTERM');
    assertNoInspector(run);
    assert.deepEqual(result, { code: 0, signal: null }, run.stderr);
  } finally {
    release();
  }
});

/** Whether `pid` has signal `signo` still pending, not yet taken by its handler (/proc/<pid>/status). */
function signalPending(pid: number, signo: number): boolean {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const bit = 1n << BigInt(signo - 1);
  return ['SigPnd', 'ShdPnd'].some((k) => (BigInt(`0x${new RegExp(`^${k}:\\s*([0-9a-f]+)`, 'm').exec(status)![1]}`) & bit) !== 0n);
}

/**
 * Sends `signal` to `pagefuse tune` while its command module is held mid-load (test/fixtures/hold-tune-load.mjs),
 * waits until the process has taken it, lets the load go on, and returns the events logged from 'start' on.
 */
async function signalWhileLoading(signal: 'SIGUSR1' | 'SIGHUP', signo: number): Promise<{ event: string; signal?: string; config?: null }[]> {
  const release = await lockKsm();
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-signals-'));
  const marker = join(dir, 'loading');
  try {
    const run = new Run(['tune', '--dry-run', '--json', '--policy', 'ksmtuned', '--interval', '3600'], {
      NODE_OPTIONS: `--import=${join(REPO, 'test/fixtures/hold-tune-load.mjs')}`,
      PAGEFUSE_TEST_LOAD_MARKER: marker,
      PAGEFUSE_TUNER_STATE: join(dir, 'tuner.json'),
      PAGEFUSE_STATE_DIR: dir,
    });
    try {
      for (const deadline = Date.now() + 20_000; !existsSync(marker); await sleep(10)) {
        assert.ok(Date.now() < deadline && run.alive(), `tune's module never started loading; stderr: ${run.stderr}`);
      }
      run.child.kill(signal);
      while (run.alive() && signalPending(run.pid, signo)) await sleep(5);
      writeFileSync(`${marker}.go`, '');
      await run.waitFor('"event":"start"');
      await sleep(300); // what was queued is played as the tuner starts running
      run.child.kill('SIGTERM');
      assert.deepEqual(await run.exited, { code: 0, signal: null }, run.stderr);
      const events = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string; signal?: string; config?: null });
      return events.slice(events.findIndex((e) => e.event === 'start'));
    } finally {
      run.child.kill('SIGKILL');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    release();
  }
}

test('tune: a SIGUSR1 that comes while the CLI is still loading is queued, and the tuner retunes for it once it runs', async () => {
  const after = await signalWhileLoading('SIGUSR1', 10);
  assert.deepEqual(after.filter((e) => e.event === 'signal'), [{ event: 'signal', signal: 'SIGUSR1' }]);
});

test('tune: a SIGHUP that comes while the CLI is still loading is queued, and the tuner reloads its config once it runs', async () => {
  const after = await signalWhileLoading('SIGHUP', 1);
  assert.deepEqual(after.filter((e) => e.event === 'reload'), [{ event: 'reload', config: null }]);
});
