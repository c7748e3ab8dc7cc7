// The tuner against ksmtuned's algorithm and the kernel defaults, on the same generated workload, in one
// run: several guest processes sharing a common image, plus unique, zero and changing pages; then a
// workload with nothing to merge. Holds the machine-wide KSM lock throughout and puts every knob back.
//   node --import tsx bench/tuner.ts [--quick] [--time-scale K] [--json]
// --time-scale K divides ksmtuned's 60 s monitor interval by K (ksmd itself is not scaled, so this
// favours ksmtuned); --quick uses a small workload and K=10 unless given.
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { Ksm } from '../src/ksm/ksm.js';
import { PAGE_SIZE } from '../src/region.js';
import { Tuner } from '../src/tune/tuner.js';
import { defaultConfig, type TuneConfig } from '../src/tune/config.js';
import { Observer } from '../src/tune/observe.js';
import type { KsmKnobs } from '../src/tune/types.js';
import { knobsFrom } from '../src/tune/observe.js';
import { knownCounters, savedPages } from '../src/ksm/counters.js';
import { lockKsm } from '../test/helpers/lock.js';
import { KnobGuard } from '../src/ksm/snapshot.js';
import { startGuests, type GuestSizes } from '../test/helpers/tune-guests.js';

const { values } = parseArgs({
  options: { quick: { type: 'boolean' }, 'time-scale': { type: 'string' }, json: { type: 'boolean' }, guests: { type: 'string' } },
});
const quick = values.quick === true;
const timeScale = Number(values['time-scale'] ?? (quick ? 10 : 1));
if (!(timeScale >= 1)) throw new Error(`--time-scale must be at least 1, got ${values['time-scale']}`);
const GUESTS = Number(values.guests ?? 4);
const SIZES: GuestSizes = quick
  ? { commonMiB: 64, uniqueMiB: 16, zeroMiB: 2, changingMiB: 1 }
  : { commonMiB: 256, uniqueMiB: 64, zeroMiB: 8, changingMiB: 4 };
const NOTHING: GuestSizes = quick
  ? { commonMiB: 0, uniqueMiB: 82, zeroMiB: 0, changingMiB: 1 }
  : { commonMiB: 0, uniqueMiB: 328, zeroMiB: 0, changingMiB: 4 };
const TIMEOUT_S = quick ? 150 : 400;
// Long enough for ksmtuned's first interval to pass and a few more after it.
const NOTHING_S = Math.max(quick ? 30 : 150, (3 * 60) / timeScale);
const GiB = 1024 ** 3;

const ksm = new Ksm();
const observer = new Observer({ procRoot: '/proc', ksm, pageSize: PAGE_SIZE });
const KERNEL_DEFAULTS = { run: 0, pages_to_scan: 100, sleep_millisecs: 20 } as const;

interface Row {
  workload: string;
  driver: string;
  seconds_to_95: number | null;
  ksmd_cpu_seconds: number;
  cpu_seconds_per_gib_saved: number | null;
  final_saved_mib: number;
  achievable_mib: number;
  tuner_process_cpu_seconds: number;
}

async function counters() {
  const s = await ksm.read();
  return knownCounters(s.counters);
}

/** Puts ksmd back to the kernel defaults, stopped, with nothing merged. */
async function reset(): Promise<void> {
  const knobs = knobsFrom((await ksm.read()).settings);
  const want: Partial<KsmKnobs> = { ...KERNEL_DEFAULTS };
  if (knobs.advisor_mode !== undefined) want.advisor_mode = 'none';
  await ksm.configure(want);
}

type Driver = { name: string; start(): Promise<() => Promise<void>> };

function tunerDriver(name: string, policy: 'ksmtuned' | 'adaptive', config: TuneConfig, intervalMs?: number): Driver {
  return {
    name,
    async start() {
      const t = new Tuner({ policy, config, ...(intervalMs === undefined ? {} : { intervalMs }), keepKnobs: true });
      t.on('error', (e) => process.stderr.write(`tuner error: ${e.message}\n`));
      if (!values.json) t.on('decision', (d) => Object.keys(d.changed).length > 0 && process.stderr.write(`  [${name}] ${JSON.stringify(d.changed)} ${d.reasons.at(-1)}\n`));
      await t.start();
      return () => t.stop();
    },
  };
}

const ksmtunedConfig = (): TuneConfig => {
  const c = defaultConfig();
  // The host declared loaded (docs/kernel.md's ksmtuned figures used 95; this roomy host needs 100 for free < thres), so
  // ksmtuned runs ksmd at all: idle one interval, then 300 pages / 10 ms, boosted by 300 each interval.
  c.ksmtuned.KSM_THRES_COEF = 100;
  return c;
};
const adaptiveConfig = (minSavingsMiB: number): TuneConfig => ({ ...defaultConfig(), minSavingsBytes: minSavingsMiB * 1024 * 1024 });

const drivers = (minSavingsMiB: number): Driver[] => [
  {
    name: 'kernel defaults (100 pages / 20 ms)',
    async start() {
      await ksm.configure({ ...KERNEL_DEFAULTS, run: 1 });
      return async () => undefined;
    },
  },
  tunerDriver(`ksmtuned policy (KSM_THRES_COEF=100${timeScale > 1 ? `, interval ${60 / timeScale} s` : ''})`, 'ksmtuned', ksmtunedConfig(), 60_000 / timeScale),
  tunerDriver('adaptive (0.25 CPU)', 'adaptive', adaptiveConfig(minSavingsMiB)),
];

async function runOne(workload: string, sizes: GuestSizes, driver: Driver, untilS: number, stopAt95: boolean): Promise<Row> {
  await reset();
  const guests = await startGuests(GUESTS, sizes, 'bench');
  try {
    await sleep(300);
    const base = savedPages(await counters());
    const cpu0 = (await observer.ksmdCpu()) ?? 0;
    const proc0 = process.cpuUsage();
    const t0 = performance.now();
    const stop = await driver.start();
    let at95: number | null = null;
    let cpuAt95 = 0;
    let savedAt95 = 0;
    const target = 0.95 * guests.achievablePages;
    try {
      while ((performance.now() - t0) / 1000 < untilS) {
        await sleep(100);
        const saved = savedPages(await counters()) - base;
        if (at95 === null && guests.achievablePages > 0 && saved >= target) {
          at95 = (performance.now() - t0) / 1000;
          cpuAt95 = ((await observer.ksmdCpu()) ?? 0) - cpu0;
          savedAt95 = saved;
          if (stopAt95) break;
        }
      }
    } finally {
      await stop();
    }
    const cpu = ((await observer.ksmdCpu()) ?? 0) - cpu0;
    const p = process.cpuUsage(proc0);
    const finalSaved = savedPages(await counters()) - base;
    const ksmdCpu = at95 === null ? cpu : cpuAt95;
    return {
      workload,
      driver: driver.name,
      seconds_to_95: at95 === null ? null : Number(at95.toFixed(1)),
      ksmd_cpu_seconds: Number(ksmdCpu.toFixed(3)),
      cpu_seconds_per_gib_saved: at95 === null || savedAt95 <= 0 ? null : Number((cpuAt95 / ((savedAt95 * PAGE_SIZE) / GiB)).toFixed(3)),
      final_saved_mib: Math.round((finalSaved * PAGE_SIZE) / 1024 ** 2),
      achievable_mib: Math.round((guests.achievablePages * PAGE_SIZE) / 1024 ** 2),
      tuner_process_cpu_seconds: Number(((p.user + p.system) / 1e6).toFixed(2)),
    };
  } finally {
    await guests.stop();
  }
}

const release = await lockKsm();
// Every writable knob, recorded: a bench that is killed is undone by the next start (or tune --restore).
const guard = KnobGuard.begin('bench');
const rows: Row[] = [];
try {
  const total = GUESTS * (SIZES.commonMiB + SIZES.uniqueMiB + SIZES.zeroMiB + SIZES.changingMiB);
  process.stderr.write(`tuner bench: ${GUESTS} guests × ${JSON.stringify(SIZES)} (${total} MiB)${timeScale > 1 ? `, ksmtuned interval scaled ÷${timeScale}` : ''}\n`);
  const minSavings = quick ? 16 : 64;
  for (const d of drivers(minSavings)) {
    const row = await runOne('shared image', SIZES, d, TIMEOUT_S, true);
    rows.push(row);
    process.stderr.write(`${JSON.stringify(row)}\n`);
  }
  for (const d of drivers(minSavings).slice(1)) {
    const row = await runOne('nothing to merge', NOTHING, d, NOTHING_S, false);
    rows.push(row);
    process.stderr.write(`${JSON.stringify(row)}\n`);
  }
} finally {
  guard.restore();
  release();
}

const get = (w: string, d: string) => rows.find((r) => r.workload === w && r.driver.startsWith(d));
const kt = get('shared image', 'ksmtuned');
const ad = get('shared image', 'adaptive');
const ktN = get('nothing to merge', 'ksmtuned');
const adN = get('nothing to merge', 'adaptive');
const targets = {
  sooner_x: kt?.seconds_to_95 && ad?.seconds_to_95 ? Number((kt.seconds_to_95 / ad.seconds_to_95).toFixed(1)) : null,
  cpu_per_gib_ratio: kt?.cpu_seconds_per_gib_saved && ad?.cpu_seconds_per_gib_saved ? Number((ad.cpu_seconds_per_gib_saved / kt.cpu_seconds_per_gib_saved).toFixed(2)) : null,
  nothing_cpu_share: ktN && adN && ktN.ksmd_cpu_seconds > 0 ? Number((adN.ksmd_cpu_seconds / ktN.ksmd_cpu_seconds).toFixed(3)) : null,
};
if (values.json) {
  process.stdout.write(`${JSON.stringify({ quick, time_scale: timeScale, guests: GUESTS, rows, targets }, null, 2)}\n`);
} else {
  const head = ['workload', 'driver', 's to 95%', 'ksmd CPU-s', 'CPU-s/GiB', 'final MiB', 'achievable MiB', 'tuner proc CPU-s'];
  const body = rows.map((r) => [r.workload, r.driver, r.seconds_to_95 ?? '—', r.ksmd_cpu_seconds, r.cpu_seconds_per_gib_saved ?? '—', r.final_saved_mib, r.achievable_mib, r.tuner_process_cpu_seconds]);
  process.stdout.write(`| ${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|\n${body.map((b) => `| ${b.join(' | ')} |`).join('\n')}\n`);
  process.stdout.write(
    `\ntargets: adaptive ${targets.sooner_x ?? '?'}× sooner to 95% than ksmtuned (≥5), ksmd CPU per GiB ${targets.cpu_per_gib_ratio ?? '?'}× ksmtuned's (≤1), nothing to merge ${targets.nothing_cpu_share ?? '?'} of ksmtuned's ksmd CPU (≤0.1)\n`,
  );
}
