// How responsive pagefuse stays, as figures rather than pass marks in timed unit tests:
// - the event loop's longest stall while scan() hashes a large region on its worker, each round beside
//   the longest stall of the same loop left idle for as long (a shared machine stalls an idle loop too);
// - how long one live sample of the host takes (hostSource().read(), what `report --duration` and `top`
//   take each interval), so how many samples a second the sampler can keep up with.
// Targets: a stall under 20 ms in the best round, and at least 4 samples a second.
import { loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { PAGE_SIZE, Region } from '../region.js';
import { scan } from '../scan/scan.js';
import { hostSource } from '../report/source.js';

export const STALL_TARGET_MS = 20;
export const SAMPLES_PER_SECOND_TARGET = 4;

export interface ResponsivenessResult {
  scan_bytes: number;
  /** Per round: the scan's wall time, its longest loop stall, and the idle loop's over as long. */
  rounds: { scan_seconds: number; scan_max_stall_ms: number; idle_max_stall_ms: number }[];
  /** Each live sample's wall time, in order. */
  sample_ms: number[];
  /** 1000 / the median sample. */
  samples_per_second: number;
  /** The process's CPU time over the whole run, and the load average at its end. */
  cpu_seconds: number;
  load_average: number[];
  best_scan_max_stall_ms: number;
  met: { stall: boolean; sampling: boolean };
}

/** The longest stall of a loop kept turning by a 1 ms timer, while `during` runs. */
async function maxStallMs(during: () => Promise<unknown>): Promise<number> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  const tick = setInterval(() => {}, 1);
  h.enable();
  try {
    await during();
  } finally {
    h.disable();
    clearInterval(tick);
  }
  return h.max / 1e6;
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

export async function benchResponsiveness(options: { bytes?: number; rounds?: number; samples?: number; log?: (line: string) => void } = {}): Promise<ResponsivenessResult> {
  const bytes = options.bytes ?? 2 * 1024 ** 3;
  const log = options.log ?? (() => {});
  const cpu0 = process.cpuUsage();
  const pages = Math.floor(bytes / PAGE_SIZE);
  const region = Region.alloc(pages * PAGE_SIZE, { hugepages: 'never' });
  const rounds: ResponsivenessResult['rounds'] = [];
  try {
    const words = new Uint32Array(region.buffer);
    for (let p = 0; p < pages; p++) words[(p * PAGE_SIZE) / 4] = (p & 0xffff) + 1; // 64 Ki contents, each repeated
    for (let i = 0; i < (options.rounds ?? 3); i++) {
      let seconds = 0;
      const scanStall = await maxStallMs(async () => {
        const t0 = performance.now();
        await scan(region);
        seconds = (performance.now() - t0) / 1000;
      });
      const idleStall = await maxStallMs(() => sleep(seconds * 1000));
      rounds.push({ scan_seconds: round2(seconds), scan_max_stall_ms: round2(scanStall), idle_max_stall_ms: round2(idleStall) });
      log(`responsiveness: round ${i + 1}: scan ${seconds.toFixed(2)} s, longest stall ${scanStall.toFixed(1)} ms (idle ${idleStall.toFixed(1)} ms)`);
    }
  } finally {
    region.dispose();
  }
  const source = hostSource();
  const sampleMs: number[] = [];
  for (let i = 0; i < (options.samples ?? 20); i++) {
    const t0 = performance.now();
    await source.read();
    sampleMs.push(round2(performance.now() - t0));
  }
  const median = [...sampleMs].sort((a, b) => a - b)[Math.floor(sampleMs.length / 2)];
  const samplesPerSecond = round2(1000 / median);
  log(`responsiveness: one live sample takes ${median} ms (median of ${sampleMs.length})`);
  const cpu = process.cpuUsage(cpu0);
  const best = Math.min(...rounds.map((r) => r.scan_max_stall_ms));
  return {
    scan_bytes: pages * PAGE_SIZE,
    rounds,
    sample_ms: sampleMs,
    samples_per_second: samplesPerSecond,
    cpu_seconds: round2((cpu.user + cpu.system) / 1e6),
    load_average: loadavg().map(round2),
    best_scan_max_stall_ms: best,
    met: { stall: best < STALL_TARGET_MS, sampling: samplesPerSecond >= SAMPLES_PER_SECOND_TARGET },
  };
}

export function responsivenessText(r: ResponsivenessResult): string {
  const lines = [
    `Event loop while scan() hashes ${(r.scan_bytes / 1024 ** 3).toFixed(2)} GiB (target: longest stall < ${STALL_TARGET_MS} ms in the best round)`,
    ...r.rounds.map((x, i) => `  round ${i + 1}: scan ${x.scan_seconds} s, longest stall ${x.scan_max_stall_ms} ms; idle loop over as long ${x.idle_max_stall_ms} ms`),
    `  best ${r.best_scan_max_stall_ms} ms: ${r.met.stall ? 'met' : 'NOT met'}`,
    `Live sampling (target: ≥ ${SAMPLES_PER_SECOND_TARGET} samples/s)`,
    `  one sample: median ${[...r.sample_ms].sort((a, b) => a - b)[Math.floor(r.sample_ms.length / 2)]} ms, longest ${Math.max(...r.sample_ms)} ms → ${r.samples_per_second} samples/s: ${r.met.sampling ? 'met' : 'NOT met'}`,
    `CPU ${r.cpu_seconds} s; load average ${r.load_average.join(' ')}`,
  ];
  return `${lines.join('\n')}\n`;
}
