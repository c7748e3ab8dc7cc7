// The tuner policies side by side on the same generated workload: fresh guests (a common image, unique and
// zero pages, marked mergeable as QEMU marks guest RAM) for each driver, timed until 95 % of what the scan
// says can merge has merged, with ksmd's CPU over that time. Every knob is put back afterwards.
import { setTimeout as sleep } from 'node:timers/promises';
import { Ksm, ksmOptionsFromEnv } from '../ksm/ksm.js';
import { PAGE_SIZE, type Region } from '../region.js';
import { scan } from '../scan/scan.js';
import { Tuner } from '../tune/tuner.js';
import { defaultConfig } from '../tune/config.js';
import { benchBaseline, disposeGuests, holdKnobs, selfMergingPages } from './estimate.js';
import { guestRegions, type GuestSizes } from '../workload/layout.js';
import { savedPages } from '../ksm/counters.js';
import { KsmdClock } from '../host/ksmd.js';

export interface TunerRow {
  policy: string;
  seconds_to_95: number | null;
  ksmd_cpu_seconds: number;
  /** ksm_merging_pages of the guests when the policy reached 95 % (or its time ran out). */
  merging_pages: number;
  predicted_merging_pages: number;
  /** Growth of pages_sharing + ksm_zero_pages over the run, in bytes. */
  saved_bytes: number;
  /** What the scan says merging frees. */
  achievable_bytes: number;
}

export interface TunerResult {
  workload: string;
  rows: TunerRow[];
}

interface Driver {
  policy: string;
  /** Starts driving ksmd over the guests; returns how to stop. */
  start(ksm: Ksm, guests: Region[]): Promise<() => Promise<void>>;
}

function tunerDriver(label: string, make: () => Tuner): Driver {
  return {
    policy: label,
    async start(_ksm, guests) {
      const t = make();
      t.on('error', () => undefined); // a failed decision shows as a slower row, not a crash
      for (const g of guests) t.register(g);
      await t.start();
      return () => t.stop();
    },
  };
}

function drivers(quick: boolean): Driver[] {
  // ksmtuned only starts ksmd when free memory is under KSM_THRES_COEF % of RAM; 100 declares the host
  // loaded so it runs at all. Its 60 s monitor interval is divided by 10 under --quick (this favours it).
  const timeScale = quick ? 10 : 1;
  const ksmtuned = defaultConfig();
  ksmtuned.ksmtuned.KSM_THRES_COEF = 100;
  // pagefuse's policies leave ksmd stopped below minSavingsBytes (64 MiB): the quick workload offers 52 MiB.
  const scanFirst = { ...defaultConfig(), minSavingsBytes: (quick ? 16 : 64) * 1024 * 1024 };
  return [
    {
      policy: 'kernel defaults (100 pages / 20 ms)',
      async start(ksm) {
        await ksm.configure({ pages_to_scan: 100, sleep_millisecs: 20, run: 1 });
        return async () => undefined;
      },
    },
    tunerDriver(`ksmtuned (KSM_THRES_COEF=100, interval ${60 / timeScale} s)`, () =>
      new Tuner({ policy: 'ksmtuned', config: ksmtuned, intervalMs: 60_000 / timeScale }),
    ),
    tunerDriver(`kernel-advisor (scan-time, min ${quick ? 16 : 64} MiB)`, () => new Tuner({ policy: 'kernel-advisor', config: scanFirst })),
    tunerDriver(`adaptive (0.25 CPU, min ${quick ? 16 : 64} MiB)`, () => new Tuner({ policy: 'adaptive', config: scanFirst })),
  ];
}

async function runDriver(ksm: Ksm, driver: Driver, sizes: GuestSizes, capS: number): Promise<TunerRow> {
  await ksm.configure({ ...benchBaseline((await ksm.read()).settings), run: 0, pages_to_scan: 100, sleep_millisecs: 20 });
  const guests = guestRegions(sizes);
  try {
    const estimate = await scan(guests, { mode: 'exact' });
    const predicted = estimate.mergingPages;
    const base = savedPages((await ksm.read()).counters);
    for (const g of guests) g.advise('mergeable');
    const clock = new KsmdClock();
    const cpu0 = (await clock.cpuSeconds()) ?? 0;
    const t0 = performance.now();
    const stop = await driver.start(ksm, guests);
    let at95: number | null = null;
    let merging = 0;
    try {
      while ((performance.now() - t0) / 1000 < capS) {
        await sleep(100);
        merging = await selfMergingPages();
        if (merging >= 0.95 * predicted) {
          at95 = (performance.now() - t0) / 1000;
          break;
        }
      }
    } finally {
      await stop();
    }
    const cpu = ((await clock.cpuSeconds()) ?? 0) - cpu0;
    const saved = savedPages((await ksm.read()).counters) - base;
    return {
      policy: driver.policy,
      seconds_to_95: at95 === null ? null : Number(at95.toFixed(1)),
      ksmd_cpu_seconds: Number(cpu.toFixed(3)),
      merging_pages: merging,
      predicted_merging_pages: predicted,
      saved_bytes: saved * PAGE_SIZE,
      achievable_bytes: estimate.estimatedSavedBytes,
    };
  } finally {
    await disposeGuests(ksm, guests);
  }
}

export async function benchTuner(options: { quick: boolean; log: (line: string) => void }): Promise<TunerResult> {
  const sizes: GuestSizes = options.quick
    ? { guests: 4, commonMiB: 16, uniqueMiB: 4, zeroMiB: 1 }
    : { guests: 4, commonMiB: 256, uniqueMiB: 64, zeroMiB: 8 };
  const capS = options.quick ? 12 : 300;
  const ksm = new Ksm(ksmOptionsFromEnv());
  const restore = await holdKnobs(ksm);
  const rows: TunerRow[] = [];
  try {
    for (const d of drivers(options.quick)) {
      const row = await runDriver(ksm, d, sizes, capS);
      options.log(`bench:   ${row.policy}: ${row.seconds_to_95 === null ? `not at 95 % in ${capS} s` : `95 % in ${row.seconds_to_95} s`}, ksmd ${row.ksmd_cpu_seconds} CPU-s`);
      rows.push(row);
    }
  } finally {
    await restore();
  }
  const total = sizes.commonMiB + sizes.uniqueMiB + sizes.zeroMiB;
  return {
    workload: `${sizes.guests} guests × (${sizes.commonMiB} MiB common + ${sizes.uniqueMiB} MiB unique + ${sizes.zeroMiB} MiB zero) = ${sizes.guests * total} MiB, up to ${capS} s per policy`,
    rows,
  };
}
