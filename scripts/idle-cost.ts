// The tuner daemon's own idle cost: `pagefuse tune` (the built CLI, --dry-run so no knob changes and no
// lock) runs beside N idle VMs (scripts/sim-vms.ts: python3 processes seen as QEMU, M MiB of random
// bytes each, so there is nothing to merge, then asleep). After a warm-up, the daemon's CPU
// time (utime + stime of all its threads, children included, from /proc/<pid>/stat) and its RSS (VmRSS from
// /proc/<pid>/status, sampled every second) are measured over SECONDS.
//   node --import tsx scripts/idle-cost.ts [SECONDS=600] [--vms N=4] [--warmup S=30] [--mib M=64]
//        [--profile DIR] [--bin dist/cli/bin.js of another build] [--log FILE] [--node-args='FLAGS'] [--host]
//        [--mergeable] [--json] [-- extra tune flags]
// --mergeable: the VMs are src/workload guests instead (Node processes seen as QEMU), M MiB each of pages
// of their own, MADV_MERGEABLE: the tuner scans them all (and keeps 4 bytes per page for its next scan,
// keepState) but finds nothing to merge. They fault as their heap is collected, so the tuner rescans them.
// By default the run happens in a PID namespace of its own with its own /proc (unshare(1), root), so the
// daemon sees only these VMs and not the other processes and VMs of a shared machine; --host measures
// it against the host's /proc instead.
// --profile DIR passes --cpu-prof to the daemon (the profile is written when it stops) and prints the
// functions and files where its CPU time went. The daemon runs with the NODE_OPTIONS of the tuner's systemd unit
// (systemd/pagefuse-tune.service: --jitless), as the unit runs it; --node-args='FLAGS' runs it with those
// flags instead (--node-args='' with none, as a shell would). Exits 1 when the target (≤ 0.3 % of a CPU, ≤ 60 MiB RSS)
// is missed. The dry-run daemon reads the host's real KSM: while anyone else runs ksmd (a test, a bench on
// a shared machine) its saved figure is read afresh at each decision, as a real daemon's would, so the host is not idle; the script
// counts the seconds ksmd's run knob was 1 and the full scans it made, and says so.
import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { USER_HZ, parseKeyValues } from '../src/host/procfs.js';
import { inOwnPidNamespace, startSimVms, type SimVms } from './sim-vms.js';
import { Workload } from '../src/workload/workload.js';
import { PAGE_SIZE } from '../src/region.js';

const TARGET_CPU = 0.003;
const TARGET_RSS = 60 * 1024 * 1024;

const USAGE = "usage: idle-cost.ts [SECONDS] [--vms N] [--warmup S] [--mib M] [--mergeable] [--profile DIR] [--json] [--node-args='FLAGS'] [-- tune flags]\n";
const { values, positionals } = parseCli({
  allowPositionals: true,
  options: {
    vms: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '30' },
    mib: { type: 'string', default: '64' },
    profile: { type: 'string' },
    bin: { type: 'string' },
    log: { type: 'string' },
    host: { type: 'boolean', default: false },
    mergeable: { type: 'boolean', default: false },
    'node-args': { type: 'string' },
    json: { type: 'boolean', default: false },
  },
} as const);

/** parseArgs, with its errors (an unknown flag, a value that looks like a flag) as one line and exit 2. */
function parseCli<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    process.stderr.write(`idle-cost: ${(err as Error).message.split('\n')[0]}\n${USAGE}`);
    process.exit(2);
  }
}
const seconds = Number(positionals[0] ?? 600);
const vmCount = Number(values.vms);
const warmup = Number(values.warmup);
const mib = Number(values.mib);
const extra = positionals.slice(1);
if (!(seconds > 0) || !(Number.isInteger(vmCount) && vmCount >= 0) || !(warmup >= 0) || !(mib > 0)) {
  process.stderr.write(USAGE);
  process.exit(2);
}

inOwnPidNamespace(values.host);

const BIN = values.bin ?? fileURLToPath(new URL('../dist/cli/bin.js', import.meta.url));
const UNIT = fileURLToPath(new URL('../systemd/pagefuse-tune.service', import.meta.url));
/** The daemon's Node flags: --node-args, else the unit's NODE_OPTIONS, so that what is measured is what systemd runs. */
const nodeFlags: { flags: string; from: string } =
  values['node-args'] !== undefined
    ? { flags: values['node-args'], from: '--node-args' }
    : { flags: /^Environment=NODE_OPTIONS=(.*)$/m.exec(readFileSync(UNIT, 'utf8'))?.[1] ?? '', from: "the unit's NODE_OPTIONS" };
const dir = mkdtempSync(join(tmpdir(), 'pagefuse-idle-'));

/** CPU ticks of the process (all threads) and its waited-for children. */
function cpuTicks(pid: number): number {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the comm: state is field 3; utime 14, stime 15, cutime 16, cstime 17.
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
}
function status(pid: number): { rss: number; hwm: number; threads: number } {
  const v = parseKeyValues(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { rss: (v.VmRSS ?? 0) * 1024, hwm: (v.VmHWM ?? 0) * 1024, threads: v.Threads ?? 0 };
}
/** CPU ticks per thread name (the main thread is the process's comm; libuv's pool, V8's workers, the scan pool). */
function threadTicks(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = tid === String(pid) ? 'main' : s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'));
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      out.set(name, (out.get(name) ?? 0) + Number(f[11]) + Number(f[12]));
    } catch {
      // the thread ended
    }
  }
  return out;
}
const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
/** KSM's run knob and full_scans counter (sysfs is the host's, also inside the PID namespace); undefined without KSM. */
function ksmd(): { run: number; fullScans: number } | undefined {
  try {
    const read = (name: string) => Number(readFileSync(`/sys/kernel/mm/ksm/${name}`, 'utf8'));
    return { run: read('run'), fullScans: read('full_scans') };
  } catch {
    return undefined;
  }
}

let guests: SimVms | undefined;
const events = new Map<string, number>();
let tune: ReturnType<typeof spawn> | undefined;
try {
  const tStart = performance.now();
  guests =
    vmCount === 0
      ? undefined
      : values.mergeable
        ? await Workload.start({ processes: vmCount, imagePages: 0, uniquePages: (mib * 2 ** 20) / PAGE_SIZE, asQemu: { namePrefix: 'idle-' }, timeoutMs: 300_000 })
        : await startSimVms(Array.from({ length: vmCount }, (_, i) => `idle-${i + 1}`), mib);
  const startS = (performance.now() - tStart) / 1000;
  const nodeArgs = [...nodeFlags.flags.split(' ').filter(Boolean), ...(values.profile === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', values.profile])];
  tune = spawn(process.execPath, [...nodeArgs, BIN, 'tune', '--dry-run', '--force', '--json', ...extra], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, PAGEFUSE_TUNER_STATE: join(dir, 'tuner.json'), PAGEFUSE_TUNE_LOCK: join(dir, 'tune.lock'), PAGEFUSE_STATE_DIR: dir },
  });
  let buf = '';
  let counting = false;
  tune.stdout!.on('data', (d: Buffer) => {
    if (values.log !== undefined) appendFileSync(values.log, d);
    buf += d.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, nl)) as { event: string };
      buf = buf.slice(nl + 1);
      if (counting) events.set(line.event, (events.get(line.event) ?? 0) + 1);
    }
  });
  const pid = tune.pid!;
  await sleep(warmup * 1000);
  if (tune.exitCode !== null) throw new Error(`pagefuse tune exited (${tune.exitCode}) during the warm-up`);
  counting = true;
  const load0 = loadavg();
  const t0 = performance.now();
  const c0 = cpuTicks(pid);
  const th0 = threadTicks(pid);
  const s0 = status(pid);
  const fd0 = fds(pid);
  const k0 = ksmd();
  let rssMax = s0.rss;
  let rssSum = 0;
  let n = 0;
  let ksmdRunS = 0;
  while (performance.now() - t0 < seconds * 1000) {
    await sleep(1000);
    const s = status(pid);
    rssMax = Math.max(rssMax, s.rss);
    rssSum += s.rss;
    n++;
    if (ksmd()?.run === 1) ksmdRunS++;
  }
  const k1 = ksmd();
  const wall = (performance.now() - t0) / 1000;
  const cpu = (cpuTicks(pid) - c0) / USER_HZ;
  const th1 = threadTicks(pid);
  const threadCpu = Object.fromEntries([...th1].map(([k, v]) => [k, (v - (th0.get(k) ?? 0)) / USER_HZ]).filter(([, v]) => (v as number) > 0));
  const s1 = status(pid);
  const load1 = loadavg();
  const result = {
    vms: vmCount,
    guestMiB: mib,
    guests: values.mergeable ? 'mergeable workload' : 'stand-in',
    guestStartS: Number(startS.toFixed(1)),
    warmupS: warmup,
    seconds: Number(wall.toFixed(1)),
    cpuSeconds: cpu,
    cpuPercent: Number(((100 * cpu) / wall).toFixed(3)),
    threadCpuSeconds: threadCpu,
    rssStartMiB: Number((s0.rss / 1048576).toFixed(1)),
    rssEndMiB: Number((s1.rss / 1048576).toFixed(1)),
    rssMeanMiB: Number((rssSum / Math.max(1, n) / 1048576).toFixed(1)),
    rssMaxMiB: Number((rssMax / 1048576).toFixed(1)),
    hwmMiB: Number((s1.hwm / 1048576).toFixed(1)),
    threads: s1.threads,
    fds: [fd0, fds(pid)],
    events: Object.fromEntries(events),
    ksmdRunSeconds: k0 === undefined ? null : ksmdRunS,
    ksmdFullScans: k0 === undefined || k1 === undefined ? null : k1.fullScans - k0.fullScans,
    load: [load0.map((l) => l.toFixed(2)).join(' '), load1.map((l) => l.toFixed(2)).join(' ')],
    namespace: values.host ? 'host' : 'own PID namespace',
    nodeFlags: nodeFlags.flags,
    processes: readdirSync('/proc').filter((e) => /^\d+$/.test(e)).length,
  };
  const met = cpu / wall <= TARGET_CPU && rssMax <= TARGET_RSS;
  if (values.json) process.stdout.write(`${JSON.stringify({ ...result, met })}\n`);
  else {
    process.stdout.write(
      `pagefuse tune idle cost: ${vmCount} ${values.mergeable ? 'mergeable workload' : 'stand-in'} VMs of ${mib} MiB, ${result.seconds} s after ${warmup} s warm-up\n` +
        `  node ${nodeFlags.flags === '' ? 'without flags' : nodeFlags.flags} (${nodeFlags.from})\n` +
        `  CPU ${cpu.toFixed(2)} s = ${result.cpuPercent} % of a CPU (target ≤ ${TARGET_CPU * 100} %); by thread ${JSON.stringify(threadCpu)}\n` +
        `  RSS ${result.rssStartMiB} → ${result.rssEndMiB} MiB, mean ${result.rssMeanMiB}, max ${result.rssMaxMiB} (target ≤ 60), HWM ${result.hwmMiB}; fds ${result.fds.join(' → ')}; ${result.threads} threads\n` +
        `  log lines: ${JSON.stringify(result.events)}; load ${result.load[0]} → ${result.load[1]}; ${result.processes} processes in /proc (${result.namespace})\n` +
        (result.ksmdRunSeconds === null
          ? ''
          : `  ksmd: run=1 for ${result.ksmdRunSeconds} of ${n} s, ${result.ksmdFullScans} full scans${result.ksmdRunSeconds > 0 ? ' — someone else ran ksmd: KSM moved under the daemon (its saved figure is read afresh at each decision while ksmd runs), so this was not an idle host' : ''}\n`) +
        `  ${met ? 'target met' : 'target NOT met'}\n`,
    );
  }
  process.exitCode = met ? 0 : 1;
} finally {
  if (tune !== undefined && tune.exitCode === null) {
    tune.kill('SIGTERM');
    await new Promise((r) => tune!.once('exit', r));
  }
  await guests?.stop();
  rmSync(dir, { recursive: true, force: true });
}

if (values.profile !== undefined) summarizeProfile(values.profile);

/** Self time per function and per file from the newest .cpuprofile in dir. */
function summarizeProfile(profileDir: string): void {
  const files = readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile')).sort();
  const file = files[files.length - 1];
  if (file === undefined) return;
  const p = JSON.parse(readFileSync(join(profileDir, file), 'utf8')) as {
    nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const fn = new Map<string, number>();
  const byFile = new Map<string, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i])!;
    const us = p.timeDeltas[i + 1] ?? 0;
    const url = node.callFrame.url.replace(/^.*\/(dist|node_modules)\//, '$1/');
    const key = `${node.callFrame.functionName || '(anon)'} ${url}:${node.callFrame.lineNumber + 1}`;
    if (node.callFrame.functionName === '(idle)') continue;
    fn.set(key, (fn.get(key) ?? 0) + us);
    byFile.set(url || node.callFrame.functionName, (byFile.get(url || node.callFrame.functionName) ?? 0) + us);
  }
  const top = (m: Map<string, number>, k: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, k)
      .map(([name, us]) => `  ${(us / 1000).toFixed(0).padStart(7)} ms  ${name}`)
      .join('\n');
  process.stdout.write(`profile ${file} (main thread, self time, whole run incl. warm-up):\nby file:\n${top(byFile, 15)}\nby function:\n${top(fn, 20)}\n`);
}
