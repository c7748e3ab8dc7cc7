// `pagefuse serve` under load: SCRAPES scrapes of /metrics, CONCURRENCY at a time, against the built CLI.
//   node --import tsx bench/serve-load.ts [SCRAPES=2000] [CONCURRENCY=20]
// Prints scrape latency (p50, p99, max), and serve's RSS and open fds before, after a warm-up and at the end:
// RSS as seen, and after two full garbage collections with the live JS heap (bench/live-memory.ts), since
// one reading of a busy process swings by several MiB with the moment V8 last collected.
// test/serve-load.test.ts holds fds flat and the collected RSS and live heap small with a shorter run.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { readStatus } from '../src/host/procfs.js';
import { liveMemory, liveMemoryArgs, liveMemoryStdio, type LiveMemory } from './live-memory.js';

const BIN = fileURLToPath(new URL('../dist/cli/bin.js', import.meta.url));

export interface ProcessUse {
  rssBytes: number;
  fds: number;
}

export interface ServeLoad {
  scrapes: number;
  concurrency: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  failures: number;
  start: ProcessUse;
  warm: ProcessUse;
  end: ProcessUse;
  /** After the warm-up and at the end, each after two full collections. */
  warmLive: LiveMemory;
  endLive: LiveMemory;
}

export async function processUse(pid: number): Promise<ProcessUse> {
  const status = await readStatus('/proc', pid);
  return { rssBytes: (status?.VmRSS ?? 0) * 1024, fds: readdirSync(`/proc/${pid}/fd`).length };
}

async function startServe(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [...liveMemoryArgs(), BIN, 'serve', '--listen', '127.0.0.1:0'], {
    stdio: liveMemoryStdio(['ignore', 'pipe', 'inherit']),
    env,
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 1200 && !/http:\/\/\S+\/metrics/.test(out); i++) await sleep(25);
  const url = /http:\/\/\S+\/metrics/.exec(out)?.[0];
  if (url === undefined) {
    child.kill('SIGKILL');
    throw new Error(`serve did not start: ${out}`);
  }
  return { child, url };
}

async function scrapeMany(url: string, count: number, concurrency: number, times: number[]): Promise<number> {
  let next = 0;
  let failures = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      const t0 = performance.now();
      try {
        const res = await fetch(url);
        await res.text();
        if (res.status !== 200) failures++;
      } catch {
        failures++;
      }
      times.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return failures;
}

/**
 * Starts serve, warms it up with `warmup` scrapes (V8's heap grows to its working size over the first
 * several hundred), then runs `scrapes` more and stops it. Memory is read as seen and after collecting.
 */
export async function serveLoad(scrapes: number, concurrency: number, warmup = 1000, env: NodeJS.ProcessEnv = process.env): Promise<ServeLoad> {
  const { child, url } = await startServe(env);
  try {
    const start = await processUse(child.pid!);
    await scrapeMany(url, warmup, concurrency, []);
    await sleep(200); // let idle keep-alive sockets close
    const warm = await processUse(child.pid!);
    const warmLive = await liveMemory(child);
    const times: number[] = [];
    const failures = await scrapeMany(url, scrapes, concurrency, times);
    await sleep(200);
    const end = await processUse(child.pid!);
    const endLive = await liveMemory(child);
    times.sort((a, b) => a - b);
    const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
    return { scrapes, concurrency, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: times[times.length - 1], failures, start, warm, end, warmLive, endLive };
  } finally {
    child.kill('SIGTERM');
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const scrapes = Number(process.argv[2] ?? 2000);
  const concurrency = Number(process.argv[3] ?? 20);
  const r = await serveLoad(scrapes, concurrency);
  const mib = (b: number) => (b / 1048576).toFixed(1);
  process.stdout.write(
    `pagefuse serve: ${r.scrapes} scrapes, ${r.concurrency} at a time, ${r.failures} failed\n` +
      `  latency p50 ${r.p50Ms.toFixed(1)} ms, p99 ${r.p99Ms.toFixed(1)} ms, max ${r.maxMs.toFixed(1)} ms\n` +
      `  RSS ${mib(r.start.rssBytes)} MiB at start, ${mib(r.warm.rssBytes)} MiB warm, ${mib(r.end.rssBytes)} MiB after\n` +
      `  after two full collections: RSS ${mib(r.warmLive.rssBytes)} → ${mib(r.endLive.rssBytes)} MiB, ` +
      `live JS heap ${mib(r.warmLive.heapUsedBytes)} → ${mib(r.endLive.heapUsedBytes)} MiB, external ${mib(r.warmLive.externalBytes)} → ${mib(r.endLive.externalBytes)} MiB\n` +
      `  open fds ${r.start.fds} at start, ${r.warm.fds} warm, ${r.end.fds} after\n`,
  );
}
