// The daemon for real: KSM knobs on this machine, guest processes found as qemu, signals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Ksm } from '../src/ksm/ksm.js';
import { processKsm } from '../src/ksm/process.js';
import { PAGE_SIZE } from '../src/region.js';
import { knobsFrom } from '../src/tune/observe.js';
import { knownCounters } from '../src/ksm/counters.js';
import type { KsmKnobs } from '../src/tune/types.js';
import { Tuner, type TuneDecision } from '../src/tune/tuner.js';
import { defaultConfig } from '../src/tune/config.js';
import { withKsm } from './helpers/ksm.js';
import { startCli, type CliProcess } from './helpers/cli.js';
import { snapshotKnobs } from '../src/ksm/snapshot.js';
import { startGuests, type Guests } from './helpers/tune-guests.js';

/** Where the daemons under test publish their decisions (never the host's /run/pagefuse/tuner.json). */
const STATE = join(mkdtempSync(join(tmpdir(), 'pagefuse-tuner-state-')), 'tuner.json');
const ksm = new Ksm();

/** pagefuse tune --json, its decisions published to STATE. */
function daemon(args: string[]): CliProcess {
  return startCli(['tune', '--json', ...args], { json: true, env: { PAGEFUSE_TUNER_STATE: STATE } });
}

const event = (name: string) => (l: Record<string, unknown>) => l.event === name;
const changedRun = (run: number) => (l: Record<string, unknown>) => l.event === 'decision' && (l.changed as Partial<KsmKnobs>).run === run;

type Published = { at: number; policy: string; settings: Record<string, number>; atRisk: boolean };

/** The state file once it holds the decision made at `at` (within 2 s). */
async function publishedAt(at: number): Promise<Published> {
  const deadline = Date.now() + 2000;
  for (;;) {
    const p = JSON.parse(readFileSync(STATE, 'utf8')) as Published;
    if (p.at === at || Date.now() > deadline) return p;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function knobs(): Promise<KsmKnobs> {
  return knobsFrom((await ksm.read()).settings);
}

// Each scenario below runs one real daemon (or Tuner) through its phases; each phase is a subtest that
// names the one behaviour it checks, in the order the daemon goes through them.

test('the ksmtuned daemon through its signals', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-daemon-'));
  const conf = join(dir, 'ksmtuned.conf');
  // The ksmtuned policy on a roomy host runs ksmd only when the host is "declared loaded": COEF 100 makes free always below thres.
  writeFileSync(conf, 'KSM_THRES_COEF=100\nKSM_MONITOR_INTERVAL=3600\n');
  try {
    await withKsm(t, async () => {
      // Mergeable children only while the lock is held: they would move other suites' counters.
      const guests = await startGuests(1, { commonMiB: 4, uniqueMiB: 0, zeroMiB: 0, changingMiB: 0 }, 'sig');
      const found = snapshotKnobs();
      const d = daemon(['--policy', 'ksmtuned', '--config', conf]);
      try {
        await t.test('its start line lists every writable knob as found, and the configured interval', async () => {
          const start = await d.next(event('start'), 15_000, 'start line');
          assert.deepEqual(start.found_knobs, found, 'every writable knob, as found');
          assert.deepEqual([found.run, found.pages_to_scan, found.sleep_millisecs], [0, 123, 17]);
          assert.equal(start.interval_ms, 3_600_000);
        });
        await t.test('its first decision boosts ksmd from 0 to 300 pages, counting the guest as a VMM', async () => {
          // The daemon decides once at start: free < 100 % of RAM → boost from 0 to 300.
          const first = await d.next(changedRun(1), 5000, 'first decision');
          assert.equal((first.knobs as KsmKnobs).pages_to_scan, 300);
          assert.ok((first.vms as { name: string }[]).some((v) => v.name === 'sig1'), 'the guest is counted as a VMM');
          assert.deepEqual([(await knobs()).run, (await knobs()).pages_to_scan], [1, 300]);
        });
        await t.test('SIGUSR1 makes the next adjust long before the hour-long interval, and it is published', async () => {
          // No tick for an hour: only SIGUSR1 makes the next adjust (how soon on a loaded machine is not a pass mark here).
          d.kill('SIGUSR1');
          const dec = await d.next((l) => l.event === 'decision', 30_000, 'decision after SIGUSR1');
          assert.equal((dec.knobs as KsmKnobs).pages_to_scan, 600);
          assert.equal((await knobs()).pages_to_scan, 600);
          // The state file is written after the decision line (an fsync'd atomic write): wait for this decision's.
          const published = await publishedAt(dec.at as number);
          assert.deepEqual([published.policy, published.settings.pages_to_scan, published.atRisk], ['ksmtuned', 600, false]);
        });
        await t.test('SIGHUP reloads the config: a new boost applies from the next adjust', async () => {
          writeFileSync(conf, 'KSM_THRES_COEF=100\nKSM_MONITOR_INTERVAL=3600\nKSM_NPAGES_BOOST=500\n');
          d.kill('SIGHUP');
          await d.next(event('reload'), 3000, 'reload line');
          d.kill('SIGUSR1');
          const dec = await d.next((l) => l.event === 'decision', 30_000, 'decision after reload');
          assert.equal((dec.knobs as KsmKnobs).pages_to_scan, 1100);
        });
        await t.test('a bad config on SIGHUP is refused with file:line and key, and the old one is kept', async () => {
          writeFileSync(conf, 'KSM_THRES_COEF=100\nKSM_NPAGES_BOST=1\n');
          d.kill('SIGHUP');
          const err = await d.next(event('error'), 3000, 'reload error');
          assert.match(err.message as string, new RegExp(`reload failed, keeping the old config: ${conf}:2: unknown key KSM_NPAGES_BOST`));
          d.kill('SIGUSR1');
          const dec = await d.next((l) => l.event === 'decision', 30_000, 'decision after failed reload');
          assert.equal((dec.knobs as KsmKnobs).pages_to_scan, 1250, 'still boosting by 500, clamped at 1250');
        });
        await t.test('SIGTERM stops it with exit 0 and the knobs found at start put back', async () => {
          d.kill('SIGTERM');
          const stop = await d.next(event('stop'), 5000, 'stop line');
          assert.deepEqual([stop.signal, stop.restored], ['SIGTERM', true]);
          assert.equal((await d.exited).status, 0);
          const after = await knobs();
          assert.deepEqual([after.run, after.pages_to_scan, after.sleep_millisecs], [0, 123, 17], 'the knobs found at start are back');
        });
      } finally {
        d.kill('SIGKILL');
        await guests.stop();
      }
    }, { settings: { run: 0, pages_to_scan: 123, sleep_millisecs: 17 }, fast: false });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the adaptive daemon on guest processes, from scan to a stopped ksmd', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-daemon-'));
  const conf = join(dir, 'tune.conf');
  writeFileSync(conf, 'PAGEFUSE_MIN_SAVINGS_MIB=8\nPAGEFUSE_INTERVAL=0.5\n');
  try {
    await withKsm(t, async () => {
      // Started under the lock with ksmd stopped, so nobody else's ksmd merged them first.
      const guests = await startGuests(3, { commonMiB: 24, uniqueMiB: 4, zeroMiB: 1, changingMiB: 1 }, 'conv');
      try {
        await converge(guests);
      } finally {
        await guests.stop();
      }
    }, { settings: { run: 0, pages_to_scan: 100, sleep_millisecs: 20 }, fast: false });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  async function converge(guests: Guests): Promise<void> {
    const d = daemon(['--config', conf]);
    try {
      await d.next(event('start'), 15_000, 'start line');
      let started: Record<string, unknown> = {};
      await t.test('it starts ksmd once every VM is scanned, with an estimate within 1 % of what the guests can save', async () => {
        started = await d.next(changedRun(1), 10_000, 'ksmd started');
        const estimate = started.estimated_bytes as number;
        const achievable = guests.achievablePages * PAGE_SIZE;
        // Another suite's VMM-named process with the same image would add to the host's estimate.
        const others = (started.vms as { pid: number }[]).filter((v) => !guests.pids.includes(v.pid));
        if (others.length === 0) {
          assert.ok(Math.abs(estimate - achievable) <= 0.01 * achievable, `estimate ${estimate} within 1 % of the ${achievable} bytes the workload can save`);
        } else {
          assert.ok(estimate >= 0.99 * achievable, `estimate ${estimate} covers the ${achievable} bytes the workload can save`);
        }
        assert.equal((await knobs()).run, 1);
      });
      await t.test('its reasons say all VMs were scanned and at what pace ksmd runs for its budget', () => {
        assert.match((started.reasons as string[]).join('\n'), /all VMs scanned.*\n.*left to merge: ksmd started\npace \d+ pages \/ 48 ms for 0\.25 CPU/);
      });
      await t.test('it stops ksmd once merging flattened, saying merged pages stay merged', async () => {
        const stopped = await d.next(changedRun(0), 40_000, 'ksmd stopped once merging flattened');
        assert.match((stopped.reasons as string[]).at(-1)!, /^merging flattened: .* ksmd stopped \(merged pages stay merged\)$/);
      });
      await t.test("by then at least 95 % of the guests' common image and zero pages are merged", async () => {
        // Per-process counts (other KSM users on the host do not blur them).
        const merging = (await Promise.all(guests.pids.map((pid) => processKsm(pid)))).reduce((s, p) => s + p.mergingPages + p.zeroPages, 0);
        const predicted = (guests.pids.length * (24 + 1) * 1024 * 1024) / PAGE_SIZE;
        assert.ok(merging >= 0.95 * predicted, `${merging} of ${predicted} pages merged`);
      });
      await t.test('a stopped ksmd makes no further full scan', async () => {
        const c0 = knownCounters((await ksm.read()).counters).full_scans;
        await sleep(1500);
        assert.equal((await knobs()).run, 0);
        assert.equal(knownCounters((await ksm.read()).counters).full_scans, c0, 'ksmd does not scan any more');
      });
      await t.test('SIGTERM stops it with exit 0 and the knobs found at start put back', async () => {
        d.kill('SIGTERM');
        assert.equal((await d.exited).status, 0);
        const after = await knobs();
        assert.deepEqual([after.run, after.pages_to_scan, after.sleep_millisecs], [0, 100, 20], 'the knobs found at start are back');
      });
    } finally {
      d.kill('SIGKILL');
    }
  }
});

test('the kernel-advisor policy on this kernel, from start to stop', async (t) => {
  await withKsm(t, async () => {
    const guests = await startGuests(2, { commonMiB: 8, uniqueMiB: 0, zeroMiB: 0, changingMiB: 0 }, 'adv');
    const before = await knobs();
    const tuner = new Tuner({ policy: 'kernel-advisor', cpuBudget: 0.4, config: { ...defaultConfig(), minSavingsBytes: 4 * 1024 * 1024 } });
    try {
      await t.test('its first decision sets scan-time mode with advisor_max_cpu 40 from the 0.4 budget, and starts ksmd', async () => {
        const started = new Promise<TuneDecision>((resolve) => tuner.on('decision', (d) => d.changed.run === 1 && resolve(d)));
        await tuner.start();
        const d = await started;
        assert.deepEqual(d.changed, { advisor_mode: 'scan-time', advisor_max_cpu: 40, run: 1 });
        const during = await knobs();
        assert.deepEqual([during.advisor_mode, during.advisor_max_cpu, during.run], ['scan-time', 40, 1]);
      });
      await t.test('stop() puts back advisor_mode, advisor_max_cpu, pages_to_scan and run as found', async () => {
        await tuner.stop();
        assert.deepEqual(await knobs(), before);
      });
    } finally {
      await tuner.stop();
      await guests.stop();
    }
  }, { settings: { run: 0, pages_to_scan: 321, sleep_millisecs: 20 }, fast: false });
});
