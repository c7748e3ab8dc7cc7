// pagefuse tune's refusals: bad flags and configs (exit 2 or 1 with one line), other tuners, the host lock.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { findOtherTuners, isPagefuseTune, lockTuner } from '../src/host/lock.js';
import { loadConfig } from '../src/tune/config.js';
import { lockKsm } from './helpers/lock.js';
import { cliArgv, runCli, runCliAsync, startCli } from './helpers/cli.js';
import { withKsm } from './helpers/ksm.js';
import { Workload } from '../src/workload/workload.js';
import { Ksm } from '../src/ksm/ksm.js';
import { requireRoot } from './helpers/root.js';

const HOLD_LOCK = new URL('./fixtures/hold-tune-lock.ts', import.meta.url).pathname;

// A fake ksmtuned or pagefuse tune, or a real run of the CLI's tune, is seen by every test run on the
// machine (findOtherTuners, /run/pagefuse/tune.lock): a daemon test elsewhere would refuse to start.
// Such tests hold the machine-wide KSM test lock, as the daemon tests do.
function locked(fn: (t: TestContext) => Promise<void> | void): (t: TestContext) => Promise<void> {
  return async (t) => {
    const release = await lockKsm();
    try {
      await fn(t);
    } finally {
      release();
    }
  };
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const { status, stdout, stderr } = runCli(['tune', ...args], { env, timeoutMs: 30_000 });
  return { status, stdout, stderr };
}

test('--cpu-budget takes a plain decimal: words, hex and exponents are refused with the value as given, exit 2', () => {
  const cpus = availableParallelism();
  for (const value of ['abc', '0x1', '1e-1']) {
    const r = cli(['--cpu-budget', value]);
    assert.deepEqual([r.status, r.stderr], [2, `pagefuse tune: --cpu-budget must be a number above 0 and at most the number of CPUs (${cpus}), got '${value}'\n`], value);
  }
});

test('bad flags are usage errors (exit 2, one line naming the flag and value)', () => {
  const cpus = availableParallelism();
  let r = cli(['--policy', 'fastest']);
  assert.deepEqual([r.status, r.stderr], [2, 'pagefuse tune: --policy: unknown policy "fastest": use one of adaptive, ksmtuned, kernel-advisor\n']);
  r = cli(['--cpu-budget', '0']);
  assert.deepEqual([r.status, r.stderr], [2, `pagefuse tune: --cpu-budget must be above 0 and at most the number of CPUs (${cpus}), got 0\n`]);
  r = cli(['--cpu-budget', String(cpus + 1)]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, new RegExp(`got ${cpus + 1}\\n$`));
  r = cli(['--interval=-3']);
  assert.deepEqual([r.status, r.stderr], [2, "pagefuse tune: --interval must be a duration from 50ms to 24h (seconds, or with ms, s, m or h), got '-3'\n"]);
  r = cli(['--frobnicate']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^pagefuse tune: Unknown option '--frobnicate'/);
  r = cli(['--help']);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /SIGUSR1 retunes at once, SIGHUP reloads --config/);
});

test('a FIFO given as --config is refused at once (exit 1, one line), not waited on for a writer that never comes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-conf-'));
  try {
    const fifo = join(dir, 'tune.conf');
    execFileSync('mkfifo', [fifo]);
    const r = cli(['--config', fifo, '--dry-run', '--once']);
    assert.deepEqual([r.status, r.stderr], [1, `pagefuse tune: cannot read the config ${fifo}: it is a FIFO, not a regular file\n`]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a LOGFILE that is a FIFO nobody reads: the line it cannot take is said on stderr, and the decision still made', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-conf-'));
  try {
    const fifo = join(dir, 'log');
    execFileSync('mkfifo', [fifo]);
    const conf = join(dir, 'tune.conf');
    writeFileSync(conf, `LOGFILE=${fifo}\n`);
    const r = cli(['--config', conf, '--dry-run', '--once']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, `pagefuse tune: cannot append to LOGFILE ${fifo}: ENXIO (no such device or address)\n`);
    assert.match(r.stdout, /^\S+ adaptive: \(dry run, nothing written\) /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('tune reads KSM from the fixture tree PAGEFUSE_KSM_SYSFS names, as status and set do, not from the host', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-sysfs-'));
  try {
    const files = { run: '0', pages_to_scan: '1234', sleep_millisecs: '20', pages_shared: '0', pages_sharing: '0', pages_unshared: '0', pages_volatile: '0', full_scans: '0' };
    for (const [name, value] of Object.entries(files)) writeFileSync(join(dir, name), `${value}\n`);
    const tune = startCli(['tune', '--dry-run', '--json', '--interval', '0.2'], { env: { PAGEFUSE_KSM_SYSFS: dir }, json: true });
    const start = (await tune.next((l) => l.event === 'start', 30_000, 'the start line')) as { found_knobs: Record<string, unknown> };
    tune.kill('SIGTERM');
    await tune.exited;
    assert.equal(start.found_knobs.pages_to_scan, 1234);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--once with --history is a usage error: one decision keeps no history', () => {
  const r = cli(['--once', '--dry-run', '--history', '/tmp/pagefuse-history-never.json']);
  assert.deepEqual([r.status, r.stderr], [2, 'pagefuse tune: --history is kept by the daemon; --once makes one decision and keeps none\n']);
});

test('--restore with another flag is a usage error: it would be ignored, and --restore --dry-run would write', () => {
  const r = cli(['--restore', '--dry-run']);
  assert.deepEqual([r.status, r.stderr], [2, 'pagefuse tune: --restore takes only --json, got --dry-run\n']);
});

test('a config with an unknown key or a bad value is refused with file:line and key (exit 1)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-conf-'));
  try {
    const file = join(dir, 'ksmtuned.conf');
    writeFileSync(file, '# ok\nKSM_NPAGES_MAX=1250\nKSM_TURBO=1\n');
    let r = cli(['--config', file, '--dry-run', '--once']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`^pagefuse tune: ${file}:3: unknown key KSM_TURBO \\(known: `));
    writeFileSync(file, 'KSM_THRES_COEF=-5\n');
    r = cli(['--config', file, '--dry-run', '--once']);
    assert.deepEqual([r.status, r.stderr], [1, `pagefuse tune: ${file}:1: KSM_THRES_COEF must be from 0 to 100, got -5\n`]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the shipped example config parses', async () => {
  const conf = await loadConfig(new URL('../systemd/pagefuse-tune.conf', import.meta.url).pathname);
  assert.equal(conf.ksmtuned.KSM_MONITOR_INTERVAL, 60);
});

test('the tune unit runs pagefuse by its absolute path with flags the command has, reloads by SIGHUP and restores after stop', () => {
  const unit = readFileSync(new URL('../systemd/pagefuse-tune.service', import.meta.url), 'utf8');
  const exec = /^ExecStart=\/usr\/local\/bin\/pagefuse tune (.*)$/m.exec(unit);
  assert.ok(exec, 'ExecStart runs pagefuse tune by its absolute path');
  for (const flag of exec[1].match(/--[a-z-]+/g) ?? []) assert.match(cli(['--help']).stdout, new RegExp(`  ${flag} `));
  assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
  assert.match(unit, /^ExecStopPost=\/usr\/local\/bin\/pagefuse tune --restore$/m);
});

test('argv recognised as another pagefuse tune, installed or run from a checkout', () => {
  assert.equal(isPagefuseTune(['/usr/bin/node', '/usr/lib/node_modules/pagefuse/dist/cli/bin.js', 'tune', '--json']), true);
  assert.equal(isPagefuseTune(['node', '/usr/local/bin/pagefuse', 'tune']), true);
  assert.equal(isPagefuseTune(['node', '--import', 'tsx', '/work/pagefuse/src/cli/bin.ts', 'tune']), true);
  assert.equal(isPagefuseTune(['node', '/work/wt/knobs/dist/cli/bin.js', 'tune']), true, 'a checkout not named pagefuse');
  assert.equal(isPagefuseTune(['node', '/usr/local/bin/pagefuse', 'status']), false);
  assert.equal(isPagefuseTune(['vim', 'tune']), false);
});

test('argv of a dry run (or --restore, --help) is not another tuner: it drives no ksmd', () => {
  assert.equal(isPagefuseTune(['/usr/bin/node', '/usr/lib/node_modules/pagefuse/dist/cli/bin.js', 'tune', '--dry-run', '--json']), false);
  assert.equal(isPagefuseTune(['node', '/usr/local/bin/pagefuse', 'tune', '--restore']), false);
  assert.equal(isPagefuseTune(['node', '/usr/local/bin/pagefuse', 'tune', '--policy', 'ksmtuned', '-h']), false);
  assert.equal(isPagefuseTune(['node', '/usr/local/bin/pagefuse', 'tune', '--once']), true);
});

test('a running ksmtuned (its process, or a live pid in its pid file) makes the daemon refuse unless --force', locked(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-ksmtuned-'));
  const fake = join(dir, 'ksmtuned');
  copyFileSync('/bin/sleep', fake);
  const child = spawn(fake, ['30'], { stdio: 'ignore' });
  try {
    await new Promise((resolve, reject) => child.once('spawn', resolve).once('error', reject));
    const found = await findOtherTuners();
    assert.ok(found.some((f) => f.pid === child.pid && f.what === 'ksmtuned'), JSON.stringify(found));
    const r = cli(['--dry-run', '--once']);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `pagefuse tune: another tuner is running: ksmtuned (pid ${child.pid}); stop it first (systemctl stop ksmtuned), or pass --force\n`);
    const pidFile = join(dir, 'ksmtune.pid');
    writeFileSync(pidFile, `${child.pid}\n`);
    assert.deepEqual((await findOtherTuners('/proc', [pidFile])).find((f) => f.pid === child.pid)?.what, `ksmtuned (pid file ${pidFile})`);
    writeFileSync(pidFile, '999999999\n');
    assert.equal((await findOtherTuners('/proc', [pidFile])).some((f) => f.what.includes('pid file')), false, 'a dead pid in the file is stale');
  } finally {
    child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}));

/** A process holding the tuner lock at `path` (test/fixtures/hold-tune-lock.ts), once it says so. */
async function lockHolder(path: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', HOLD_LOCK, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  assert.equal(line.toString(), 'locked\n');
  return child;
}

test('the host lock: a second taker in the same process is refused with EBUSY naming this process', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-lock-'));
  const path = join(dir, 'sub', 'tune.lock');
  try {
    const lock = await lockTuner({ path });
    assert.equal(readFileSync(path, 'utf8'), `${process.pid}\n`);
    await assert.rejects(lockTuner({ path }), { code: 'EBUSY', message: `a Tuner in this process (pid ${process.pid}) holds ${path}: stop it first, or force it (--force; lock: { force: true } in the API)` });
    lock.release();
    const again = await lockTuner({ path });
    assert.equal(again.held, true);
    again.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the host lock: a file naming a dead or unrelated pid is no lock at all', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-lock-'));
  const path = join(dir, 'tune.lock');
  try {
    for (const stale of ['999999999\n', '1\n', '']) {
      writeFileSync(path, stale);
      const lock = await lockTuner({ path });
      assert.deepEqual([lock.held, readFileSync(path, 'utf8')], [true, `${process.pid}\n`], JSON.stringify(stale));
      lock.release();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the host lock: a live holder in another process is refused (force goes on without it); its SIGKILL frees it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-lock-'));
  const path = join(dir, 'tune.lock');
  const holder = await lockHolder(path);
  try {
    await assert.rejects(lockTuner({ path }), { code: 'EBUSY', message: `another pagefuse tuner (pid ${holder.pid}) holds ${path}: stop it first, or force it (--force; lock: { force: true } in the API)` });
    const forced = await lockTuner({ path, force: true });
    assert.equal(forced.held, false);
    holder.kill('SIGKILL');
    await once(holder, 'exit');
    const lock = await lockTuner({ path });
    assert.equal(lock.held, true);
    lock.release();
  } finally {
    holder.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--once --dry-run --json: one decision line and the host lock released (dry runs write nothing: see tune-tuner)', locked(async () => {
  const r = cli(['--once', '--dry-run', '--json', '--policy', 'ksmtuned']);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines.length, 1);
  assert.deepEqual([lines[0].event, lines[0].policy, lines[0].dry_run], ['decision', 'ksmtuned', true]);
  assert.match((lines[0].reasons as string[])[0], /^total \d+(\.\d)? (KiB|MiB|GiB|TiB), sleep \d+ ms, threshold \d+(\.\d)? (KiB|MiB|GiB|TiB)$/);
  const lock = await lockTuner();
  assert.equal(lock.held, true, 'the lock is free again');
  lock.release();
}));

/** A dry-run tune daemon started through `prefix` (e.g. chrt): its threads' scheduling policies and its nice value at its first decision. */
async function tuneScheduling(prefix: string[]): Promise<{ policies: number[]; nice: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-batch-'));
  const [node, ...argv] = cliArgv(['tune', '--dry-run', '--json', '--policy', 'ksmtuned', '--interval', '3600']);
  const child = spawn(prefix[0] ?? node!, [...prefix.slice(1), ...(prefix.length > 0 ? [node!] : []), ...argv], {
    env: { ...process.env, PAGEFUSE_STATE_DIR: dir, PAGEFUSE_TUNE_LOCK: join(dir, 'tune.lock') },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no decision within 30 s: ${out}`)), 30_000);
      child.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('"event":"decision"')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const task = `/proc/${child.pid}/task`;
    const policies = readdirSync(task).map((tid) => Number(/^policy\s*:\s*(\d+)$/m.exec(readFileSync(join(task, tid, 'sched'), 'utf8'))![1]));
    const nice = Number(readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]);
    return { policies: [...new Set(policies)], nice };
  } finally {
    child.kill('SIGTERM');
    await once(child, 'exit');
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the tune daemon runs every thread SCHED_BATCH, its nice value kept', locked(async () => {
  // Before: every thread SCHED_OTHER (0).
  assert.deepEqual(await tuneScheduling(['nice', '-n', '5']), { policies: [3], nice: 5 });
}));

test('the tune daemon keeps a scheduling policy its operator chose (SCHED_IDLE from chrt -i)', locked(async () => {
  assert.deepEqual(await tuneScheduling(['chrt', '-i', '0']), { policies: [5], nice: 0 });
}));

test('a dry run takes no tuner lock: it decides while another process holds the lock', locked(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-lock-'));
  const path = join(dir, 'tune.lock');
  const holder = await lockHolder(path);
  try {
    const r = runCli(['tune', '--dry-run', '--once', '--json', '--policy', 'ksmtuned'], { env: { PAGEFUSE_TUNE_LOCK: path, PAGEFUSE_STATE_DIR: dir } });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n').map((l) => JSON.parse(l).dry_run), [true]);
  } finally {
    holder.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}));

test('tune --dry-run as nobody (uid 65534) needs no root: one decision, exit 0, nothing on stderr', locked(async (t) => {
  if (!requireRoot(t, 'runs the CLI as uid 65534')) return;
  // root's, 0755 like /run/pagefuse: nobody reads the (empty) registry in it, and cannot create a lock there.
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-lock-'));
  chmodSync(dir, 0o755);
  try {
    const env = { PAGEFUSE_TUNE_LOCK: join(dir, 'tune.lock'), PAGEFUSE_STATE_DIR: dir, PAGEFUSE_TUNER_STATE: join(dir, 'tuner.json') };
    const r = runCli(['tune', '--dry-run', '--once', '--policy', 'ksmtuned'], { env, uid: 65534, gid: 65534 });
    assert.deepEqual([r.status, r.stderr], [0, '']);
    assert.match(r.stdout, /^\S+Z ksmtuned: \(dry run, nothing written\) [^\n]+\n$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}));

test('an error that recurs at every decision is logged once (here: a state file that cannot be written)', locked(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-errors-'));
  try {
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    // Decisions every 100 ms for about 2 s: each one fails to publish under a path through a regular file.
    const env = { PAGEFUSE_TUNER_STATE: join(file, 'tuner.json'), PAGEFUSE_STATE_DIR: dir, PAGEFUSE_DEBUG: '' };
    const tune = startCli(['tune', '--dry-run', '--json', '--policy', 'ksmtuned', '--interval', '0.1'], { env, json: true });
    await tune.next((l) => l.event === 'start', 30_000, 'the start line');
    await new Promise((resolve) => setTimeout(resolve, 2000));
    tune.kill('SIGTERM');
    await tune.exited;
    assert.deepEqual(tune.lines.filter((l) => l.notJson), [], 'every line is JSON');
    const errors = (tune.lines as { event: string; message?: string }[]).filter((l) => l.event === 'error');
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.match(errors[0].message!, /^publishing the decision: /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}));

test('tune --once that leaves ksmd running says so on stderr, with the pace it left and how to stop it', async (t) => {
  if (!requireRoot(t, 'writes the KSM knobs')) return;
  await withKsm(t, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pagefuse-once-'));
    // Two stand-in VMs sharing 64 MiB: as much as the adaptive policy's minimum saving, so it starts ksmd.
    const w = await Workload.start({ processes: 2, imagePages: 16384, zeroPages: 0, uniquePages: 256, asQemu: { namePrefix: 'once-' }, seed: 23 });
    try {
      const r = await runCliAsync(['tune', '--once', '--cpu-budget', '0.25', '--force'], { env: { PAGEFUSE_STATE_DIR: dir, PAGEFUSE_TUNE_LOCK: join(dir, 'tune.lock'), PAGEFUSE_TUNER_STATE: join(dir, 'tuner.json') } });
      assert.equal(r.status, 0, r.stderr);
      const knobs = await new Ksm().read();
      // Before: nothing on stderr.
      assert.deepEqual(
        r.stderr,
        `pagefuse tune: --once left ksmd running at ${knobs.settings.pages_to_scan} pages / ${knobs.settings.sleep_millisecs} ms, and nothing paces it from here: 'pagefuse stop' stops it, 'pagefuse tune' keeps it within its budget\n`,
      );
    } finally {
      await w.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
