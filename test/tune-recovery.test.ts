// pagefuse tune after a crash, and the one lock: a SIGKILL at any moment is undone by the next start
// (or by tune --restore, the unit's ExecStopPost); SIGTERM at any moment ends with the knobs back; of
// two starters against a stale lock exactly one runs, from an install's path or a checkout's.
// Tuners here run the built CLI (node dist/cli/bin.js, as installed): each test starts it many times.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { snapshotKnobs } from '../src/ksm/snapshot.js';
import { withKsm } from './helpers/ksm.js';
import { REPO, builtBin, runCli, startCli, type CliProcess, type Line } from './helpers/cli.js';

/** Knobs no one else would set: a leak of the tuner's own would show. */
const START = { run: 0, pages_to_scan: 123, sleep_millisecs: 17 };
const event = (name: string) => (l: Line) => l.event === name;
const startsKsmd = (l: Line) => l.event === 'decision' && (l.changed as Record<string, unknown>).run === 1;

/** A small seeded generator, so a failing round can be replayed (the seed is in every message). */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const SEED = Number(process.env.PAGEFUSE_TEST_SEED ?? Date.now() % 100_000);

/** The tuner's own files (lock, crash records, published state) in a fresh directory. */
function tunerEnv(): { dir: string; env: NodeJS.ProcessEnv } {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-recovery-'));
  // ksmtuned's rule on a host it counts as loaded (COEF 100): its first decision starts ksmd.
  writeFileSync(join(dir, 'tune.conf'), 'KSM_THRES_COEF=100\nKSM_MONITOR_INTERVAL=3600\n');
  return { dir, env: { PAGEFUSE_STATE_DIR: dir, PAGEFUSE_TUNE_LOCK: join(dir, 'tune.lock'), PAGEFUSE_TUNER_STATE: join(dir, 'tuner.json') } };
}

function tune(bin: string, dir: string, env: NodeJS.ProcessEnv): CliProcess {
  return startCli(['tune', '--json', '--policy', 'ksmtuned', '--config', join(dir, 'tune.conf')], { bin, env, json: true });
}

test('20 SIGKILLs of pagefuse tune at random moments: each next start puts back the knobs found before the first', async (t) => {
  const bin = builtBin();
  await withKsm(
    t,
    async () => {
      const original = snapshotKnobs();
      const { dir, env } = tunerEnv();
      const rand = random(SEED);
      try {
        let wrote = false;
        for (let round = 0; round < 20; round++) {
          const at = `seed ${SEED}, round ${round}`;
          const d = tune(bin, dir, env);
          try {
            const moment = round % 3;
            const start = d.next(event('start'), 20_000, 'start line');
            if (moment === 0) {
              // Anywhere from before the lock to just after the first write.
              const seen = await Promise.race([start, sleep(rand() * 1200).then(() => undefined)]);
              if (seen !== undefined) assert.deepEqual(seen.found_knobs, original, at);
            } else {
              const s = await start;
              assert.deepEqual(s.found_knobs, original, `${at}: the start after a SIGKILL found the original knobs`);
              if (wrote) {
                const recovered = d.lines.find(event('recovered'));
                assert.ok(recovered !== undefined, `${at}: says it put back what the killed tuner found: ${JSON.stringify(d.lines)}`);
              }
              await d.next(startsKsmd, 10_000, 'ksmd started');
              if (moment === 1) {
                await sleep(rand() * 300); // while ksmd runs at the tuner's pace
              } else {
                d.kill('SIGTERM'); // while stopping
                await sleep(rand() * 40);
              }
            }
          } finally {
            d.kill('SIGKILL');
            await d.exited;
          }
          // Did this one get as far as writing? Then the next start has something to put back.
          wrote = snapshotKnobs().run === 1;
        }
        const r = runCli(['tune', '--restore'], { env, bin });
        assert.equal(r.status, 0, r.stderr);
        // (the last one may have died after it wrote, or while it put the knobs back)
        assert.match(r.stdout, /^(put back the knobs a tune that died \(pid \d+\) had found: |nothing to put back)/);
        assert.deepEqual(snapshotKnobs(), original, `seed ${SEED}`);
        assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('knobs-')), []);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    { settings: START, fast: false },
  );
});

test('SIGTERM or SIGINT at a random moment of pagefuse tune (starting, running, stopping) ends with the knobs found', async (t) => {
  const bin = builtBin();
  await withKsm(
    t,
    async () => {
      const original = snapshotKnobs();
      const { dir, env } = tunerEnv();
      const rand = random(SEED + 1);
      try {
        for (let round = 0; round < 8; round++) {
          const at = `seed ${SEED + 1}, round ${round}`;
          const signal = round % 2 === 0 ? 'SIGTERM' : 'SIGINT';
          const d = tune(bin, dir, env);
          try {
            if (round < 4) {
              await sleep(rand() * 1200); // starting, or just started
            } else {
              await d.next(startsKsmd, 20_000, 'ksmd started');
              await sleep(rand() * 200);
            }
            d.kill(signal);
            if (round % 4 === 3) {
              await sleep(rand() * 30);
              d.kill(signal); // again, while stopping
            }
            const end = await d.exited;
            // Before the command's handlers exist the default disposition ends it (it has written nothing yet).
            assert.ok(end.status === 0 || end.signal === signal, `${at}: ${JSON.stringify(end)} ${d.stderr}`);
            assert.deepEqual(snapshotKnobs(), original, at);
            assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('knobs-')), [], `${at}: no record left`);
          } finally {
            d.kill('SIGKILL');
          }
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    { settings: START, fast: false },
  );
});

test('50 rounds of two concurrent tune starts against a stale lock, one from an install path and one from a checkout: exactly one runs', async (t) => {
  const bin = builtBin();
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-lockrace-'));
  // Real tuners (a dry run takes no lock), under the KSM test lock: ksmtuned's rule on this roomy host
  // keeps ksmd stopped, so with run=0 they write nothing, and they would put back what they wrote.
  await withKsm(t, async () => {
    try {
      // An install's layout (…/node_modules/pagefuse/dist/cli/bin.js) beside the checkout's own dist/.
      mkdirSync(join(dir, 'lib', 'node_modules'), { recursive: true });
      symlinkSync(REPO, join(dir, 'lib', 'node_modules', 'pagefuse'));
      const bins = [bin, join(dir, 'lib', 'node_modules', 'pagefuse', 'dist', 'cli', 'bin.js')];
      // A stale lock: it names a process that has exited.
      const gone = spawn(process.execPath, ['-e', '0']);
      await once(gone, 'exit');
      const round = async (n: number) => {
        const sub = join(dir, `round-${n}`);
        mkdirSync(sub);
        const lock = join(sub, 'tune.lock');
        writeFileSync(lock, `${gone.pid}\n`);
        const env = { PAGEFUSE_STATE_DIR: sub, PAGEFUSE_TUNE_LOCK: lock, PAGEFUSE_TUNER_STATE: join(sub, 'tuner.json') };
        const both = bins.map((b) => startCli(['tune', '--json', '--policy', 'ksmtuned', '--interval', '3600'], { bin: b, env, json: true }));
        try {
          const first = await Promise.race(both.map((p, i) => p.exited.then(() => i)));
          const loser = both[first];
          const winner = both[1 - first];
          assert.deepEqual(await loser.exited, { status: 1, signal: null }, `round ${n}`);
          // (the pid when the winner has written it already: it locks first, then writes)
          assert.match(loser.stderr, new RegExp(`^pagefuse tune: another pagefuse tuner (\\(pid ${winner.pid}\\) )?holds ${lock}: stop it first, or force it \\(--force; lock: \\{ force: true \\} in the API\\)\\n$`), `round ${n}`);
          await winner.next(event('start'), 20_000, `round ${n}: the winner's start line`);
          winner.kill('SIGTERM');
          assert.deepEqual(await winner.exited, { status: 0, signal: null }, `round ${n}: ${winner.stderr}`);
        } finally {
          for (const p of both) p.kill('SIGKILL');
        }
      };
      // Five locks at a time, 50 rounds in all.
      for (let n = 0; n < 50; n += 5) await Promise.all([0, 1, 2, 3, 4].map((i) => round(n + i)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, { settings: START, fast: false });
});

test('tune --restore with no record says there is nothing to put back and exits 0', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-restore-'));
  try {
    const r = runCli(['tune', '--restore'], { env: { PAGEFUSE_STATE_DIR: dir } });
    assert.deepEqual([r.status, r.stdout, r.stderr], [0, `nothing to put back (no usable record of /sys/kernel/mm/ksm in ${dir})\n`, '']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A state directory with one dead writer's record (`knobs` found under `sysfsRoot`), and two fake KSM directories a and b (run=1, pages_to_scan=2667). */
function withRestoreRecord(knobs: Record<string, unknown>, recordRoot: (a: string, b: string) => string, fn: (dir: string, a: string, b: string, file: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-restore-'));
  try {
    const [a, b] = ['a', 'b'].map((n) => join(dir, n, 'ksm'));
    for (const root of [a, b]) {
      mkdirSync(root, { recursive: true });
      writeFileSync(join(root, 'run'), '1\n');
      writeFileSync(join(root, 'pages_to_scan'), '2667\n');
    }
    const state = join(dir, 'state');
    mkdirSync(state, { mode: 0o700 });
    const pid = spawnSync('true').pid!; // exited: its record is a dead writer's
    const file = join(state, `knobs-${pid}-1.json`);
    writeFileSync(file, JSON.stringify({ version: 1, owner: 'tune', pid, startTime: 0, at: 1, sysfsRoot: recordRoot(a, b), knobs }));
    fn(state, a, b, file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('tune --restore leaves alone a record for another KSM directory than the one it restores (PAGEFUSE_KSM_SYSFS)', () => {
  withRestoreRecord({ run: 0, pages_to_scan: 100 }, (_a, b) => b, (state, a, b, file) => {
    const r = runCli(['tune', '--restore'], { env: { PAGEFUSE_STATE_DIR: state, PAGEFUSE_KSM_SYSFS: a } });
    assert.deepEqual(
      [r.status, r.stdout, r.stderr, readFileSync(join(b, 'run'), 'utf8'), readFileSync(join(b, 'pages_to_scan'), 'utf8'), readdirSync(state)],
      [0, `nothing to put back (no usable record of ${a} in ${state})\n`, '', '1\n', '2667\n', [file.slice(state.length + 1)]],
    );
  });
});

test('tune --restore skips a record whose knob name is a path, says so, and writes nothing', () => {
  const knobs = { run: 0, '../victim': 'root:x:0:0::/root:/bin/bash\nmallory::0:0::/root:/bin/bash' };
  withRestoreRecord(knobs, (a) => a, (state, a, _b, file) => {
    writeFileSync(join(a, '..', 'victim'), 'root:x:0:0::/root:/bin/bash\n');
    const r = runCli(['tune', '--restore'], { env: { PAGEFUSE_STATE_DIR: state, PAGEFUSE_KSM_SYSFS: a } });
    assert.deepEqual(
      [r.status, r.stderr, readFileSync(join(a, '..', 'victim'), 'utf8'), readFileSync(join(a, 'run'), 'utf8')],
      [0, `pagefuse: skipped the knob record ${file}: knob "../victim" is not the name of a KSM knob\n`, 'root:x:0:0::/root:/bin/bash\n', '1\n'],
    );
  });
});

test('tune --restore still puts back a good record for its KSM directory', () => {
  withRestoreRecord({ run: 0, pages_to_scan: 100 }, (a) => a, (state, a) => {
    const r = runCli(['tune', '--restore', '--json'], { env: { PAGEFUSE_STATE_DIR: state, PAGEFUSE_KSM_SYSFS: a } });
    assert.deepEqual(
      [r.status, r.stderr, readFileSync(join(a, 'run'), 'utf8'), readFileSync(join(a, 'pages_to_scan'), 'utf8'), readdirSync(state)],
      [0, '', '0\n', '100\n', []],
    );
  });
});
