// Soak of the tuner daemon: `pagefuse tune` (the built CLI, --dry-run so no knob changes, --interval 1)
// runs while a VM (scripts/sim-vms.ts: a python3 process seen as qemu-system-x86_64 -name guest=soak-N,
// 1 MiB) starts every second and the oldest stops while more than three run. Every VM must be seen coming
// (a vm_added line) and going (vm_removed); after a warm-up, the daemon's fds must not grow (the fewest of
// the last three samples against the first, as a /proc read may be open at a sample) and what it keeps must
// not grow: every 60 s the daemon collects its garbage (bench/live-memory.ts) and its RSS then may end at most
// 2 MiB, its live JS heap at most 1 MiB, above the first such reading after the warm-up. RSS as seen is
// printed beside it (a busy V8 heap swings by MiBs with when it last collected). Runs in a PID namespace of
// its own (as scripts/idle-cost.ts does) unless --host. Prints the RSS series, the fds and what the fds
// that came or went point at.
//   node --import tsx scripts/soak-tune.ts [SECONDS=600] [--warmup S=60] [--host]
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { inOwnPidNamespace, startSimVms, type SimVms } from './sim-vms.js';
import { liveMemory, liveMemoryArgs, liveMemoryStdio, type LiveMemory } from '../bench/live-memory.js';
import { parseKeyValues } from '../src/host/procfs.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { warmup: { type: 'string', default: '60' }, host: { type: 'boolean', default: false } },
});
const seconds = Number(positionals[0] ?? 600);
const warmup = Number(values.warmup);
if (!(seconds > warmup && warmup >= 0)) {
  process.stderr.write('usage: soak-tune.ts [SECONDS > warm-up] [--warmup S] [--host]\n');
  process.exit(2);
}
inOwnPidNamespace(values.host);

const BIN = fileURLToPath(new URL('../dist/cli/bin.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'pagefuse-soak-'));
const tune = spawn(process.execPath, [...liveMemoryArgs(), BIN, 'tune', '--dry-run', '--force', '--json', '--interval', '1'], {
  stdio: liveMemoryStdio(['ignore', 'pipe', 'inherit']),
  env: { ...process.env, PAGEFUSE_TUNER_STATE: join(dir, 'tuner.json'), PAGEFUSE_TUNE_LOCK: join(dir, 'tune.lock'), PAGEFUSE_STATE_DIR: dir },
});
let daemonUp = false;
const added = new Set<number>();
const removed = new Set<number>();
let buf = '';
// stdio comes from liveMemoryStdio, typed as any stdio array: the daemon's stdout is its pipe.
if (tune.stdout === null) throw new Error('soak-tune: the daemon was started without a stdout pipe');
tune.stdout.on('data', (d: Buffer) => {
  buf += d.toString();
  let nl;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = JSON.parse(buf.slice(0, nl)) as { event: string; pid?: number };
    buf = buf.slice(nl + 1);
    if (line.event === 'start') daemonUp = true;
    if (line.event === 'vm_added' && line.pid !== undefined) added.add(line.pid);
    if (line.event === 'vm_removed' && line.pid !== undefined) removed.add(line.pid);
  }
});

interface Sample {
  at: number;
  rss: number;
  fds: Map<string, string>;
  /**
   * Resident kB by mapping: glibc's main heap, its thread arenas, other anonymous mappings (V8's heap, JIT
   * code), files.
   */
  kinds: { heap: number; arenas: number; anon: number; file: number };
}
/**
 * glibc maps each thread arena as 64 MiB aligned to 64 MiB: readable and writable from its start up to the
 * arena's top, the rest reserved (---p) up to the 64 MiB.
 */
const ARENA = 64 * 1024 * 1024;
function kinds(pid: number): Sample['kinds'] {
  const out = { heap: 0, arenas: 0, anon: 0, file: 0 };
  const lines = readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n');
  const header = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/;
  const maps = lines
    .map((line) => header.exec(line))
    .filter((m) => m !== null)
    .map((m) => ({ start: Number.parseInt(m[1], 16), end: Number.parseInt(m[2], 16), perms: m[3], anon: m[4] === '' || m[4].startsWith('[anon'), heap: m[4] === '[heap]' }));
  const arena = (i: number) => {
    const m = maps[i];
    const next = maps[i + 1];
    if (!m.anon || m.perms !== 'rw-p' || m.start % ARENA !== 0) return false;
    return m.end === m.start + ARENA || (next?.anon === true && next.perms === '---p' && next.start === m.end && next.end === m.start + ARENA);
  };
  let i = -1;
  let kind: keyof Sample['kinds'] = 'anon';
  for (const line of lines) {
    if (header.test(line)) {
      const m = maps[++i];
      kind = m.heap ? 'heap' : !m.anon ? 'file' : arena(i) ? 'arenas' : 'anon';
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) out[kind] += Number(rss[1]);
  }
  return out;
}
function sample(pid: number, at: number): Sample {
  const rss = (parseKeyValues(readFileSync(`/proc/${pid}/status`, 'utf8')).VmRSS ?? 0) * 1024;
  const fds = new Map<string, string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      fds.set(fd, readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {
      // closed meanwhile
    }
  }
  return { at, rss, fds, kinds: kinds(pid) };
}

const started: number[] = [];
const stopped: number[] = [];
const alive: { pid: number; vm: SimVms }[] = [];
const samples: Sample[] = [];
/** Every 60 s, after the daemon's full collections. */
const collected: (LiveMemory & { at: number })[] = [];
const t0 = performance.now();
const elapsed = () => (performance.now() - t0) / 1000;
const load0 = loadavg();
try {
  while (!daemonUp) {
    if (tune.exitCode !== null) throw new Error(`pagefuse tune exited (${tune.exitCode}) before it started`);
    await sleep(100);
  }
  let n = 0;
  let nextSample = 0;
  while (elapsed() < seconds) {
    const tick = performance.now();
    const vm = await startSimVms([`soak-${++n}`], 1);
    started.push(vm.pids[0]);
    alive.push({ pid: vm.pids[0], vm });
    if (alive.length > 3) {
      const old = alive.shift()!;
      await old.vm.stop();
      stopped.push(old.pid);
    }
    if (elapsed() >= nextSample) {
      samples.push(sample(tune.pid!, elapsed()));
      if (samples.length % 6 === 1) collected.push({ at: elapsed(), ...(await liveMemory(tune)) });
      nextSample += 10;
    }
    await sleep(Math.max(0, 1000 - (performance.now() - tick)));
  }
  collected.push({ at: elapsed(), ...(await liveMemory(tune)) });
  for (const old of alive.splice(0)) {
    await old.vm.stop();
    stopped.push(old.pid);
  }
  await sleep(2500);
} finally {
  for (const a of alive) await a.vm.stop();
  tune.kill('SIGTERM');
  await new Promise((resolve) => tune.once('exit', resolve));
  rmSync(dir, { recursive: true, force: true });
}

const mib = (b: number) => (b / 1048576).toFixed(1);
const missedAdded = started.filter((pid) => !added.has(pid));
const missedRemoved = stopped.filter((pid) => !removed.has(pid));
const warm = samples.filter((s) => s.at >= warmup);
const half = Math.floor(warm.length / 2);
const peak = (ss: Sample[]) => Math.max(...ss.map((s) => s.rss));
const firstWarm = warm[0];
const last = warm[warm.length - 1];
const warmCollected = collected.filter((c) => c.at >= warmup);
const c0 = warmCollected[0];
const cN = warmCollected[warmCollected.length - 1];
const keptFlat =
  warmCollected.length >= 2 && cN.rssBytes <= c0.rssBytes + 2 * 1048576 && cN.heapUsedBytes <= c0.heapUsedBytes + 1048576;
// An fd of a /proc read in flight at the moment of a sample is no leak: the fewest fds of the last three
// samples are compared (a leaked fd stays in all of them).
const fdsAtEnd = Math.min(...warm.slice(-3).map((s) => s.fds.size));
const fdsFlat = firstWarm !== undefined && last !== undefined && fdsAtEnd <= firstWarm.fds.size;
const diff = (a: Sample, b: Sample) => {
  const gone = [...a.fds].filter(([fd, target]) => b.fds.get(fd) !== target).map(([fd, t]) => `-${fd}:${t}`);
  const came = [...b.fds].filter(([fd, target]) => a.fds.get(fd) !== target).map(([fd, t]) => `+${fd}:${t}`);
  return [...gone, ...came].join(' ') || 'none';
};
const first = samples[0];
process.stdout.write(
  `pagefuse tune soak: ${elapsed().toFixed(0)} s, ${started.length} VMs started (${(started.length / seconds).toFixed(2)} a second), ` +
    `${started.length - missedAdded.length} seen coming, ${stopped.length - missedRemoved.length} of ${stopped.length} seen going` +
    `${missedAdded.length + missedRemoved.length > 0 ? ` (missed: added ${missedAdded.join(',')} removed ${missedRemoved.join(',')})` : ''}\n` +
    `  RSS every 60 s (MiB): ${samples.filter((_, i) => i % 6 === 0).map((s) => `${s.at.toFixed(0)}s ${mib(s.rss)}`).join(', ')}\n` +
    (firstWarm && last && first
      ? `  after the ${warmup} s warm-up: RSS as seen ${mib(firstWarm.rss)} → ${mib(last.rss)} MiB, peak first half ${mib(peak(warm.slice(0, half)))}, last half ${mib(peak(warm.slice(half)))}; ` +
        `fds ${first.fds.size} at ${first.at.toFixed(0)} s, ${firstWarm.fds.size} → ${last.fds.size} (fewest of the last 3 samples ${fdsAtEnd}: ${fdsFlat ? 'flat' : 'GROWING'})\n` +
        `  after full collections, every 60 s: RSS ${warmCollected.map((c) => mib(c.rssBytes)).join(', ')} MiB; live JS heap ${warmCollected.map((c) => mib(c.heapUsedBytes)).join(', ')} MiB (${keptFlat ? 'flat' : 'GROWING'})\n` +
        `  resident MiB by mapping (glibc heap / glibc thread arenas / other anonymous / files): ${[firstWarm, last].map((x) => `${mib(x.kinds.heap * 1024)} / ${mib(x.kinds.arenas * 1024)} / ${mib(x.kinds.anon * 1024)} / ${mib(x.kinds.file * 1024)}`).join(' → ')}\n` +
        `  fds changed before the warm-up ended: ${diff(first, firstWarm)}; after: ${diff(firstWarm, last)}\n`
      : '') +
    `  load ${load0.map((l) => l.toFixed(2)).join(' ')} → ${loadavg().map((l) => l.toFixed(2)).join(' ')}\n`,
);
process.exitCode = missedAdded.length === 0 && missedRemoved.length === 0 && keptFlat && fdsFlat ? 0 : 1;
