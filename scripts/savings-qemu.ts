// The savings table with real QEMU guests (issue 12): N guests booting a Debian kernel under TCG, in one
// cgroup v1 memory cgroup, with huge pages as QEMU asks for them (it madvises guest RAM MADV_HUGEPAGE).
// Each guest's initramfs holds busybox and a common image (the same bytes in every guest); its /init writes
// pages of its own (urandom) and zero-filled files, prints "filled" and sleeps. Then:
//   1. a control period with ksmd stopped (the cgroup and the PSS should not move),
//   2. the scan's prediction, made before anything merges,
//   3. ksmd run to convergence through pagefuse (the machine-wide KSM lock; every knob put back),
// and the figures side by side: fall in cgroup usage, fall in summed PSS, pagefuse's saved and its parts,
// KSM metadata, general_profit, the prediction. Not part of npm test (TCG guests cost minutes of CPU).
//
//   apt-get install linux-image-amd64 busybox-static    # or pass --kernel / --busybox from extracted .debs
//   node --import tsx scripts/savings-qemu.ts [--vms 3] [--mem-mib 512] [--image-mib 96] [--own-mib 32]
//       [--zero-mib 32] [--control 30] [--timeout 900] [--use-zero-pages 0|1] [--kernel PATH] [--busybox PATH]
//       [--smart-scan 0|1] [--json]
// Every QEMU is killed when the script ends (and by pdeathsig if the script dies). no_timer_check: under
// load a TCG guest fails the kernel's IO-APIC timer check and panics (seen here at load 16).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { open } from 'node:fs/promises';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { Ksm } from '../src/ksm/ksm.js';
import { KnobGuard } from '../src/ksm/snapshot.js';
import { scan } from '../src/scan/scan.js';
import { figures, type Figures } from '../src/report/model.js';
import { hostSource } from '../src/report/source.js';
import { parseSmaps } from '../src/ksm/footprint.js';
import { readPageEntries } from '../src/host/page-entries.js';
import { KsmdClock } from '../src/host/ksmd.js';
import { lockKsm } from '../src/host/ksm-lock.js';
import { stopChildren } from '../test/helpers/children.js';
import { makeMemoryCgroup, type MemoryCgroup } from '../src/workload/cgroup.js';

const { values: a } = parseArgs({
  options: {
    vms: { type: 'string', default: '3' },
    'mem-mib': { type: 'string', default: '512' },
    'image-mib': { type: 'string', default: '96' },
    'own-mib': { type: 'string', default: '32' },
    'zero-mib': { type: 'string', default: '32' },
    control: { type: 'string', default: '30' },
    timeout: { type: 'string', default: '900' },
    'use-zero-pages': { type: 'string', default: '0' },
    'pages-to-scan': { type: 'string', default: '5000' },
    'sleep-ms': { type: 'string', default: '10' },
    'premerge-scans': { type: 'string', default: '0' },
    'smart-scan': { type: 'string' },
    kernel: { type: 'string' },
    busybox: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
function int(name: keyof typeof a): number {
  const v = Number(a[name]);
  if (!Number.isInteger(v) || v < 0) {
    process.stderr.write(`savings-qemu: --${name} must be a whole number, got ${String(a[name])}\n`);
    process.exit(2);
  }
  return v;
}
const VMS = int('vms');
const MEM = int('mem-mib');
const IMAGE = int('image-mib');
const OWN = int('own-mib');
const ZERO = int('zero-mib');
const CONTROL_S = int('control');
const TIMEOUT_S = int('timeout');
const USE_ZERO = int('use-zero-pages');
const PREMERGE = int('premerge-scans');
// smart_scan left as the kernel has it unless given: 0 has ksmd retry the huge pages it splits one a
// scan (docs/savings.md, "The prediction") every scan, so the run converges only once all are split.
const SMART = a['smart-scan'] === undefined ? undefined : int('smart-scan');
if (USE_ZERO > 1) {
  process.stderr.write(`savings-qemu: --use-zero-pages must be 0 or 1, got ${USE_ZERO}\n`);
  process.exit(2);
}
const MiB = 1 << 20;

function firstExisting(paths: string[]): string | undefined {
  return paths.find((p) => existsSync(p));
}
const kernel = a.kernel ?? firstExisting(readdirSync('/boot').filter((f) => f.startsWith('vmlinuz-')).sort().reverse().map((f) => join('/boot', f)));
const busybox = a.busybox ?? firstExisting(['/bin/busybox', '/usr/bin/busybox']);
if (kernel === undefined || busybox === undefined) {
  process.stderr.write(`savings-qemu: needs a Debian kernel and a static busybox: apt-get install linux-image-amd64 busybox-static, or --kernel/--busybox\n`);
  process.exit(2);
}

// ---- the initramfs (cpio "newc"), written here: busybox, /init, /dev/console and the common image ----
function cpioEntry(name: string, mode: number, data: Buffer, rdev: [number, number] = [0, 0], ino = 0): Buffer {
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  const nameBuf = Buffer.from(`${name}\0`);
  const head = `070701${[ino, mode, 0, 0, 1, 0, data.length, 0, 0, rdev[0], rdev[1], nameBuf.length, 0].map(hex).join('')}`;
  const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  return Buffer.concat([Buffer.from(head), nameBuf, pad(110 + nameBuf.length), data, pad(data.length)]);
}
/** The common image: deterministic pseudo-random pages (xorshift), identical in every guest. */
function image(bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  let x = 0x9e3779b9;
  for (let i = 0; i < bytes; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
}
const INIT = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
for a in $(cat /proc/cmdline); do case $a in own=*) OWN=\${a#own=};; zero=*) ZERO=\${a#zero=};; esac; done
head -c $((OWN * 1048576)) /dev/urandom > /own
head -c $((ZERO * 1048576)) /dev/zero > /zero
echo "filled $(grep MemFree /proc/meminfo | tr -s ' ')"
exec sleep 2147483647
`;
function buildInitramfs(dir: string): string {
  let ino = 1;
  const parts = [
    cpioEntry('bin', 0o40755, Buffer.alloc(0), [0, 0], ino++),
    cpioEntry('dev', 0o40755, Buffer.alloc(0), [0, 0], ino++),
    cpioEntry('dev/console', 0o20600, Buffer.alloc(0), [5, 1], ino++),
    cpioEntry('bin/busybox', 0o100755, readFileSync(busybox!), [0, 0], ino++),
    cpioEntry('init', 0o100755, Buffer.from(INIT), [0, 0], ino++),
    cpioEntry('image', 0o100644, image(IMAGE * MiB), [0, 0], ino++),
    cpioEntry('TRAILER!!!', 0, Buffer.alloc(0)),
  ];
  const out = join(dir, 'initramfs.cpio');
  writeFileSync(out, Buffer.concat(parts));
  return out;
}

// ---- guests ----
interface Guest {
  name: string;
  child: ChildProcess;
  filled: Promise<string>;
}
function startGuest(name: string, initrd: string, cgroup: string): Guest {
  const argv = ['--pdeathsig', 'SIGKILL', 'qemu-system-x86_64', '-name', `guest=${name}`, '-accel', 'tcg', '-smp', '1', '-m', String(MEM),
    '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio', '-no-reboot',
    '-kernel', kernel!, '-initrd', initrd, '-append', `console=ttyS0 quiet panic=-1 no_timer_check own=${OWN} zero=${ZERO}`];
  // The shell joins the cgroup, then becomes setpriv and QEMU (same pid): all of QEMU's memory is charged there.
  const child = spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec setpriv "$@"', cgroup, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  const filled = new Promise<string>((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^filled .*\r?\n/m.exec(out);
      if (m !== null) resolve(m[0].trim());
    });
    child.once('exit', (code, signal) => reject(new Error(`${name}: QEMU exited (${signal ?? code}): ${err.trim()} ${out.slice(-2000)}`)));
  });
  filled.catch(() => undefined);
  return { name, child, filled };
}

// ---- measurements ----
function vmstat(key: string): number {
  return Number(new RegExp(`^${key} (\\d+)$`, 'm').exec(readFileSync('/proc/vmstat', 'utf8'))?.[1] ?? NaN);
}
const SPLIT_KEYS = ['thp_split_page', 'thp_split_page_failed', 'thp_underused_split_page', 'thp_deferred_split_page', 'thp_migration_split', 'thp_fault_alloc', 'thp_collapse_alloc'] as const;
function splitCounters(): Record<string, number> {
  return Object.fromEntries(SPLIT_KEYS.map((k) => [k, vmstat(k)]));
}
function deltas(from: Record<string, number>, to: Record<string, number>): string {
  return SPLIT_KEYS.map((k) => `${k} +${to[k] - from[k]}`).join(', ');
}
/**
 * The guests' 4 KiB zero-page mappings in fully present 2 MiB chunks of their mergeable memory, by what
 * else the chunk holds: wholly zero, a KSM page, an exclusive page still at its huge-page slot (frame ≡
 * index mod 512: the chunk was one huge page), or none of these. Diagnostic for the THP-split part.
 */
async function zeroChunkClasses(pids: number[]): Promise<Record<string, number>> {
  const out: Record<string, number> = { whollyZero: 0, withKsm: 0, atSlot: 0, other: 0 };
  const kpf = await open('/proc/kpageflags', 'r');
  try {
    for (const pid of pids) {
      const { mergeable } = parseSmaps(readFileSync(`/proc/${pid}/smaps`, 'utf8'));
      const pm = await open(`/proc/${pid}/pagemap`, 'r');
      try {
        for (const [start, end] of mergeable) {
          for (let c = Math.ceil(start / (2 * MiB)) * 2 * MiB; c + 2 * MiB <= end; c += 2 * MiB) {
            const w = await readPageEntries(pm, c / 4096, 512);
            let present = 0, zero = 0, ksm = 0, slot = 0;
            for (let i = 0; i < 512; i++) {
              const high = w[2 * i + 1];
              if ((high & 0x80000000) === 0) continue;
              present++;
              const pfn = (high & 0x7fffff) * 2 ** 32 + w[2 * i];
              if ((high & 0x01000000) !== 0) {
                if (pfn % 512 === i) slot++;
                continue;
              }
              const f = await readPageEntries(kpf, pfn, 1);
              if ((f[0] & (1 << 24)) !== 0 && (f[0] & (1 << 22)) === 0) zero++;
              else if ((f[0] & (1 << 21)) !== 0) ksm++;
            }
            if (present < 512 || zero === 0) continue;
            out[zero === 512 ? 'whollyZero' : ksm > 0 ? 'withKsm' : slot > 0 ? 'atSlot' : 'other'] += zero;
          }
        }
      } finally {
        await pm.close();
      }
    }
  } finally {
    await kpf.close();
  }
  return out;
}
/**
 * A one-shot `pagefuse status --json` (from src/, through tsx) with its state dir in `stateDir`: saved
 * bytes, the THP-split part in pages, and whether status calls that part an upper bound.
 */
function statusOnce(stateDir: string): { savedBytes: number; thpSplitPages: number; upperBound: boolean } {
  const out = execFileSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../src/cli/bin.ts'), 'status', '--json'], {
    env: { ...process.env, PAGEFUSE_STATE_DIR: stateDir },
    encoding: 'utf8',
  });
  const s = (JSON.parse(out) as { savings: { saved_bytes: number; parts_pages: { thp_split_zero_pages: number }; thp_split_upper_bound: boolean } }).savings;
  return { savedBytes: s.saved_bytes, thpSplitPages: s.parts_pages.thp_split_zero_pages, upperBound: s.thp_split_upper_bound };
}
/**
 * Chunks the scan predicts ksmd will split (docs/savings.md): a THP holding a duplicate, or a zero page;
 * `slow` marks those ksmd splits one per full scan (zero subpages and no duplicate, use_zero_pages=0).
 */
interface PredictedChunk {
  pid: number;
  address: number;
  dup: number;
  zero: number;
  slow: boolean;
}
function predictedSplits(result: Awaited<ReturnType<typeof scan>>, pids: number[]): PredictedChunk[] {
  const out: PredictedChunk[] = [];
  result.targets.forEach((t, i) => {
    const d = t.density;
    for (let c = 0; c < d.address.length; c++) {
      if (d.thpPages[c] > 0 && (d.thpDuplicatePages[c] > 0 || d.thpZeroPages[c] > 0)) {
        out.push({ pid: pids[i], address: d.address[c], dup: d.thpDuplicatePages[c], zero: d.thpZeroPages[c], slow: !result.useZeroPages && d.thpDuplicatePages[c] === 0 });
      }
    }
  });
  return out;
}
/** Of the predicted splits, the chunks still one huge page (first page present, KPF_THP), with their predicted parts. */
async function stillWhole(chunks: PredictedChunk[]): Promise<{ whole: number; zero: number; dup: number; wholeZeroOnly: number; wholeWithDup: number; slow: number; slowWhole: number; slowWholeZero: number }> {
  const out = { whole: 0, zero: 0, dup: 0, wholeZeroOnly: 0, wholeWithDup: 0, slow: chunks.filter((c) => c.slow).length, slowWhole: 0, slowWholeZero: 0 };
  const kpf = await open('/proc/kpageflags', 'r');
  try {
    for (const c of chunks) {
      const pm = await open(`/proc/${c.pid}/pagemap`, 'r');
      try {
        const w = await readPageEntries(pm, Math.floor(c.address / 4096), 1);
        if ((w[1] & 0x80000000) === 0) continue;
        const pfn = (w[1] & 0x7fffff) * 2 ** 32 + w[0];
        const f = await readPageEntries(kpf, pfn, 1);
        if ((f[0] & (1 << 22)) === 0) continue;
        out.whole++;
        out.zero += c.zero;
        out.dup += c.dup;
        if (c.dup === 0) out.wholeZeroOnly++;
        else out.wholeWithDup++;
        if (c.slow) {
          out.slowWhole++;
          out.slowWholeZero += c.zero;
        }
      } finally {
        await pm.close();
      }
    }
  } finally {
    await kpf.close();
  }
  return out;
}
function anonHuge(pid: number): number {
  return Number(/^AnonHugePages:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024;
}
function pss(pid: number): number {
  return Number(/^Pss:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? NaN) * 1024;
}

const dir = mkdtempSync(join(tmpdir(), 'pagefuse-savings-qemu-'));
let cg: MemoryCgroup | undefined;
const guests: Guest[] = [];
let guard: KnobGuard | undefined;
let release: (() => void) | undefined;
const cleanup = (): void => {
  for (const g of guests) if (g.child.exitCode === null && g.child.signalCode === null) g.child.kill('SIGKILL');
  guard?.restore();
};
process.once('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));

const log = (s: string): void => void process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
const t0 = Date.now();
try {
  const cgroup = makeMemoryCgroup(`pagefuse-savings-${process.pid}`);
  cg = cgroup;
  const usage = (): number => cgroup.usage();
  // The KSM lock and the guard before the guests boot: no other test's ksmd may merge (and split) their
  // memory before the measurement. ksmd stays stopped through the boot, the control and the scan.
  release = await lockKsm();
  guard = KnobGuard.begin('savings-qemu');
  const ksm = new Ksm();
  await ksm.unmergeAll({ timeoutMs: 60_000 });
  await ksm.configure({
    run: 0, use_zero_pages: USE_ZERO === 1, pages_to_scan: int('pages-to-scan'), sleep_millisecs: int('sleep-ms'),
    ...('advisor_mode' in guard.found ? { advisor_mode: 'none' } : {}), ...(SMART === undefined ? {} : { smart_scan: SMART === 1 }),
  });
  const v0 = splitCounters();
  // A daemon's reader (serve, tune --history) running from before the guests start, that reads once
  // now and next only after merging: it first sees them merged, but knows they started after it.
  const daemonDir = join(dir, 'state-daemon');
  const daemon = hostSource({ footprintMaxAgeMs: 0, nodes: async () => undefined, tunerStatePath: '/nonexistent', zeroBaselines: join(daemonDir, 'zero-baselines.json') });
  await daemon.read();
  const initrd = buildInitramfs(dir);
  log(`initramfs ${(readFileSync(initrd).length / MiB).toFixed(1)} MiB; booting ${VMS} × ${MEM} MiB guests (TCG), kernel ${kernel}`);
  for (let i = 0; i < VMS; i++) guests.push(startGuest(`vm${i + 1}`, initrd, cgroup.dir));
  const pids = guests.map((g) => g.child.pid!);
  const filledLines = await Promise.race([
    Promise.all(guests.map((g) => g.filled)),
    // Unref'd: the timer must not keep the script alive for TIMEOUT_S after it is done.
    sleep(TIMEOUT_S * 1000, undefined, { ref: false }).then(() => {
      throw new Error(`the guests did not fill their memory within ${TIMEOUT_S} s`);
    }),
  ]);
  const bootS = (Date.now() - t0) / 1000;
  log(`all filled after ${bootS.toFixed(0)} s: ${filledLines.join(' | ')}`);
  await sleep(5000); // the guests settle into sleep

  const vBooted = splitCounters();
  const zeroBooted = await zeroChunkClasses(pids);
  log(`after boot: ${deltas(v0, vBooted)}; zero-page mappings in full chunks ${JSON.stringify(zeroBooted)}`);

  // 1. Control: ksmd stopped, the same guests, CONTROL_S seconds.
  const c0 = { usage: usage(), pss: pids.reduce((s, p) => s + pss(p), 0) };
  await sleep(CONTROL_S * 1000);
  const c1 = { usage: usage(), pss: pids.reduce((s, p) => s + pss(p), 0) };
  log(`control (${CONTROL_S} s, ksmd stopped): cgroup ${((c0.usage - c1.usage) / MiB).toFixed(2)} MiB, PSS ${((c0.pss - c1.pss) / MiB).toFixed(2)} MiB`);

  // 1b. Optionally, huge pages split before pagefuse first looks: ksmd merges for a few full scans and
  // unmerges (run=2). The splits' zero subpages stay mapped to the zero page, as after any earlier split.
  if (PREMERGE > 0) {
    await ksm.start();
    await ksm.waitForFullScans(PREMERGE, { timeoutMs: TIMEOUT_S * 1000 });
    await ksm.unmergeAll({ timeoutMs: 120_000 });
    log(`premerge: ${PREMERGE} full scans, then unmerged; zero-page mappings in full chunks ${JSON.stringify(await zeroChunkClasses(pids))}`);
  }

  // 2. The prediction, before merging.
  const predicted = await scan(pids.map((pid) => ({ pid })));
  log(`scan predicts ${(predicted.estimatedSavedBytes / MiB).toFixed(1)} MiB (${predicted.thpSplitPages} THPs split) in ${predicted.seconds.toFixed(1)} s`);
  const predictedChunks = predictedSplits(predicted, pids);

  // 3. ksmd to convergence.
  const source = hostSource({ footprintMaxAgeMs: 0, nodes: async () => undefined, tunerStatePath: '/nonexistent', zeroBaselines: false });
  const read = async (): Promise<Figures> => figures(await source.read());
  const before = { usage: usage(), pss: pids.reduce((s, p) => s + pss(p), 0), thpSplit: vmstat('thp_split_page'), anonHuge: pids.reduce((s, p) => s + anonHuge(p), 0) };
  const vBefore = splitCounters();
  const f0 = await read(); // with ksmd stopped and nothing merged, saved must read 0
  // `pagefuse status` run once before merging, with its own state dir: it records the guests' baselines.
  const watchedDir = join(dir, 'state-watched');
  statusOnce(watchedDir);
  const clock = new KsmdClock();
  const cpu0 = (await clock.cpuSeconds()) ?? NaN;
  const m0 = Date.now();
  await ksm.start();
  let last = -1;
  let after: Figures;
  let fullScans = 0;
  for (;;) {
    fullScans += 2;
    await ksm.waitForFullScans(2, { timeoutMs: TIMEOUT_S * 1000 });
    after = await read();
    const saved = after.host.savedPages;
    log(`full scans ${fullScans}: saved ${(after.host.savedBytes / MiB).toFixed(1)} MiB, cgroup fell ${((before.usage - usage()) / MiB).toFixed(1)} MiB`);
    if (fullScans >= 4 && Math.abs(saved - last) <= Math.max(16, saved * 0.001)) break;
    if (Date.now() - m0 > TIMEOUT_S * 1000) throw new Error(`ksmd did not converge within ${TIMEOUT_S} s`);
    last = saved;
  }
  await ksm.stop();
  const vAfter = splitCounters();
  const zeroAfter = await zeroChunkClasses(pids);
  log(`merging: ${deltas(vBefore, vAfter)}; zero-page mappings in full chunks ${JSON.stringify(zeroAfter)}`);
  const unsplit = await stillWhole(predictedChunks);
  log(`predicted splits still one huge page after merging: ${JSON.stringify(unsplit)} of ${predictedChunks.length}`);
  // One-shot `pagefuse status` after merging: with an empty state dir (nothing saw the guests unmerged:
  // as on main before the shared baselines), and with the one the status before merging wrote to.
  const cold = statusOnce(join(dir, 'state-cold'));
  const watchedStatus = statusOnce(watchedDir);
  await daemon.read();
  const daemonStatus = statusOnce(daemonDir);
  const mergeS = (Date.now() - m0) / 1000;
  const ksmdCpu = ((await clock.cpuSeconds()) ?? NaN) - cpu0;
  after = await read();
  const end = { usage: usage(), pss: pids.reduce((s, p) => s + pss(p), 0), thpSplit: vmstat('thp_split_page') };
  const ours = after.processes.filter((p) => pids.includes(p.pid));
  const share = (k: 'ksmPages' | 'ksmZeroPages' | 'thpSplitZeroPages') => ours.reduce((s, p) => s + p.saved[k], 0) * after.pageSize;
  const cgroupFall = before.usage - end.usage;
  // The third field: whether the row is a total to compare with the cgroup's fall.
  const rows: [string, number, boolean, string?][] = [
    ['fall in the cgroup\'s usage', cgroupFall, true],
    ['fall in the guests\' summed PSS', before.pss - end.pss, true],
    ['pagefuse saved (the guests\' shares)', ours.reduce((s, p) => s + p.savedBytes, 0), true],
    ['– KSM pages (pages_sharing)', share('ksmPages'), false],
    ['– KSM zero pages (ksm_zero_pages)', share('ksmZeroPages'), false],
    ['– zero subpages freed by THP splits', share('thpSplitZeroPages'), false],
    ['pagefuse saved, host', after.host.savedBytes, true],
    ['one-shot `status` after merging, nothing seen before (main before this change)', cold.savedBytes, true,
      `THP-split part ${cold.thpSplitPages} pages${cold.upperBound ? ', labelled an upper bound (≤)' : ''}`],
    ['one-shot `status` after merging, a `status` ran before merging', watchedStatus.savedBytes, true,
      `THP-split part ${watchedStatus.thpSplitPages} pages${watchedStatus.upperBound ? ', labelled an upper bound (≤)' : ''}`],
    ['one-shot `status` after merging, a daemon watching since before the guests started', daemonStatus.savedBytes, true,
      `THP-split part ${daemonStatus.thpSplitPages} pages${daemonStatus.upperBound ? ', labelled an upper bound (≤)' : ''}`],

    ['KSM metadata (host cost, not in the cgroup)', after.host.metadataBytes, false],
    [`kernel general_profit (${after.host.profitSource})`, after.host.kernelProfitBytes, true],
    ['scan prediction before merging', predicted.estimatedSavedBytes, true,
      `${predicted.estimate.ksmPages} + ${predicted.estimate.ksmZeroPages} + ${predicted.estimate.thpSplitZeroPages} pages, ${predicted.thpSplitPages} THPs split`],
    ['scan prediction with the THPs ksmd splits one a scan (all split)', predicted.estimatedSavedBytes + predicted.thpSlowSplitZeroPages * after.pageSize, true,
      `+ ${predicted.thpSlowSplitZeroPages} pages of ${predicted.thpSlowSplitPages} THPs; ${unsplit.slow - unsplit.slowWhole} of them split by the end (${unsplit.slowWholeZero} zero subpages still in whole ones)`],
    ['pagefuse saved before merging (should be 0)', f0.host.savedBytes, false,
      `${f0.host.saved.ksmPages} + ${f0.host.saved.ksmZeroPages} + ${f0.host.saved.thpSplitZeroPages} pages`],
    [`control: cgroup fall over ${CONTROL_S} s without ksmd`, c0.usage - c1.usage, false],
    [`control: PSS fall over ${CONTROL_S} s without ksmd`, c0.pss - c1.pss, false],
  ];
  const pct = (v: number) => (cgroupFall === 0 ? '' : `${(((v - cgroupFall) / cgroupFall) * 100).toFixed(2)} %`);
  const flags = ['sse2', 'avx2', 'avx512f', 'aes', 'vaes'].filter((f) => new RegExp(`\\b${f}\\b`).test(readFileSync('/proc/cpuinfo', 'utf8')));
  const out = {
    guests: VMS, memMiB: MEM, imageMiB: IMAGE, ownMiB: OWN, zeroMiB: ZERO, useZeroPages: USE_ZERO, kernel,
    smartScan: readFileSync('/sys/kernel/mm/ksm/smart_scan', 'utf8').trim(),
    cpu: `${cpus()[0]?.model ?? '?'} (${flags.join(' ')})`, cores: cpus().length, loadavg: loadavg().map((l) => l.toFixed(2)),
    bootSeconds: bootS, mergeSeconds: mergeS, ksmdCpuSeconds: ksmdCpu, fullScans,
    anonHugeBeforeMiB: before.anonHuge / MiB, thpSplitPage: end.thpSplit - before.thpSplit,
    sharesNote: after.sharesNote, premergeScans: PREMERGE,
    vmstatBoot: deltas(v0, vBooted), vmstatMerge: deltas(vBefore, vAfter), zeroBooted, zeroAfter, predictedSplitChunks: predictedChunks.length, unsplit,
    rows: rows.map(([figure, bytes, total, note]) => ({ figure, bytes, mib: bytes / MiB, vsCgroup: total ? pct(bytes) : '', ...(note ? { note } : {}) })),
  };
  if (a.json) process.stdout.write(`${JSON.stringify(out)}\n`);
  else {
    process.stdout.write(`${VMS} QEMU guests (TCG) × ${MEM} MiB, Debian kernel ${kernel}, image ${IMAGE} MiB + own ${OWN} MiB + zero ${ZERO} MiB each, use_zero_pages=${USE_ZERO}, smart_scan=${out.smartScan}\n`);
    process.stdout.write(`CPU ${out.cpu}, ${out.cores} cores, load ${out.loadavg.join(' ')}; boot ${bootS.toFixed(0)} s; ksmd to convergence ${mergeS.toFixed(0)} s, ${ksmdCpu.toFixed(1)} CPU-s, ${fullScans} full scans; AnonHugePages before ${out.anonHugeBeforeMiB.toFixed(0)} MiB, thp_split_page +${out.thpSplitPage}\n`);
    process.stdout.write(`premerge full scans ${PREMERGE}; /proc/vmstat during boot: ${out.vmstatBoot}; during merging: ${out.vmstatMerge}\n`);
    process.stdout.write(`zero-page mappings in full 2 MiB chunks, by chunk: after boot ${JSON.stringify(zeroBooted)}, after merging ${JSON.stringify(zeroAfter)}\n`);
    process.stdout.write(`huge pages predicted split ${predictedChunks.length}, still whole after merging ${JSON.stringify(unsplit)}\n\n`);
    process.stdout.write(`| figure | MiB | vs cgroup fall | |\n|---|---|---|---|\n`);
    for (const r of out.rows) process.stdout.write(`| ${r.figure} | ${r.mib.toFixed(1)} | ${r.vsCgroup} | ${r.note ?? ''} |\n`);
    if (out.sharesNote !== null) process.stdout.write(`\nshares: ${out.sharesNote}\n`);
  }
} catch (err) {
  process.stderr.write(`savings-qemu: ${(err as Error).message}\n`);
  process.exitCode = 1;
} finally {
  await stopChildren(guests.map((g) => g.child));
  guard?.restore();
  guard = undefined;
  release?.();
  await cg?.remove();
  rmSync(dir, { recursive: true, force: true });
  process.off('exit', cleanup);
  log(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s; every QEMU stopped, knobs restored`);
}
