// An in-process Tuner cleans up after itself: however its process ends (an uncaught exception, an
// unhandled rejection, process.exit, SIGTERM, SIGINT) the knobs it found are back; one tuner per host.
// Each case runs test/fixtures/tuner-child.ts, a Tuner on the real sysfs that starts ksmd, in a child.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { snapshotKnobs } from '../src/ksm/snapshot.js';
import { Tuner } from '../src/tune/tuner.js';
import { defaultConfig } from '../src/tune/config.js';
import type { KsmControl } from '../src/tune/observe.js';
import { withKsm } from './helpers/ksm.js';

const CHILD = new URL('./fixtures/tuner-child.ts', import.meta.url).pathname;
/** Knobs no one else would set: a leak of the tuner's own would show. */
const START = { run: 0, pages_to_scan: 123, sleep_millisecs: 17 };

/** Runs the child until it says ksmd runs, then `end` (a signal, or nothing: the child ends itself). */
async function runTunerChild(mode: string, end?: NodeJS.Signals) {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-cleanup-'));
  const env = { ...process.env, PAGEFUSE_STATE_DIR: dir, PAGEFUSE_TUNE_LOCK: join(dir, 'tune.lock') };
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, mode], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  try {
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exit = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    const [line] = (await once(child.stdout, 'data')) as [Buffer];
    assert.equal(line.toString(), 'running\n', stderr);
    const during = snapshotKnobs().run;
    if (end !== undefined) child.kill(end);
    else child.stdin.write('go\n');
    const [status, signal] = await exit;
    return { status, signal, during, stderr, records: readdirSync(dir).filter((f) => f.startsWith('knobs-')) };
  } finally {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const [mode, what, status] of [
  ['throw', 'an uncaught exception', 1],
  ['reject', 'an unhandled rejection', 1],
  ['exit', 'process.exit()', 3],
] as const) {
  test(`a process running a Tuner that ends by ${what} leaves every knob as it found it`, async (t) => {
    await withKsm(
      t,
      async () => {
        const before = snapshotKnobs();
        const r = await runTunerChild(mode);
        assert.equal(r.during, 1, 'the Tuner had started ksmd');
        assert.deepEqual([r.status, r.signal], [status, null], r.stderr);
        assert.deepEqual(snapshotKnobs(), before);
        assert.deepEqual(r.records, [], 'its crash record is gone');
      },
      { settings: START, fast: false },
    );
  });
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`a Tuner's process killed by ${signal} puts the knobs back and still dies of ${signal}`, async (t) => {
    await withKsm(
      t,
      async () => {
        const before = snapshotKnobs();
        const r = await runTunerChild('wait', signal);
        assert.equal(r.during, 1, 'the Tuner had started ksmd');
        assert.deepEqual([r.status, r.signal], [null, signal], r.stderr);
        assert.deepEqual(snapshotKnobs(), before);
      },
      { settings: START, fast: false },
    );
  });
}

/** A control with no sysfs behind it: the lock is what is tested. */
const fake: KsmControl = {
  async read() {
    return { settings: { run: 0, pages_to_scan: 100, sleep_millisecs: 20 }, counters: { pages_shared: 0, pages_sharing: 0, pages_unshared: 0, pages_volatile: 0, full_scans: 0 } };
  },
  async configure() {
    return undefined;
  },
};

test('a second Tuner.start() in one process is refused with EBUSY while the first runs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-lock-'));
  const path = join(dir, 'tune.lock');
  const options = { policy: 'ksmtuned' as const, config: defaultConfig(), ksm: fake, lock: { path }, intervalMs: 3_600_000 };
  const first = new Tuner(options);
  const second = new Tuner(options);
  try {
    await first.start();
    await assert.rejects(second.start(), { code: 'EBUSY', message: `a Tuner in this process (pid ${process.pid}) holds ${path}: stop it first, or force it (--force; lock: { force: true } in the API)` });
    await first.stop();
    await second.start();
  } finally {
    await first.stop();
    await second.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
