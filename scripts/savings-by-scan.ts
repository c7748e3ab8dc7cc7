// What the scan's prediction is a prediction of (issue 12, docs/savings.md "The prediction"): generated
// processes using transparent huge pages in a memory cgroup of their own (the layout of
// test/savings-cgroup.test.ts: a shared image, zero-filled pages and pages of their own each), the scan
// made before merging, then ksmd started and, after each of its full scans, pagefuse's saved figure (the
// processes' own, docs/savings.md) against the estimate and the estimate with every slow huge page split,
// with the fall in the PSS of their mergeable areas and in the cgroup's usage beside it (the cgroup also
// charges the node runtime of each process, which moves by itself). Not part of npm test.
//
//   node --import tsx scripts/savings-by-scan.ts [--scans 16] [--processes 3] [--image 3000] [--zero 1500]
//       [--own 1500] [--smart-scan 0|1] [--use-zero-pages 0|1] [--pages-to-scan 100] [--sleep-ms 20]
// Root, a memory cgroup (v1 or v2). Holds the machine-wide KSM lock; every knob is put back and the
// processes stopped when it ends.
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { Ksm } from '../src/ksm/ksm.js';
import { KnobGuard } from '../src/ksm/snapshot.js';
import { scan } from '../src/scan/scan.js';
import { figures } from '../src/report/model.js';
import { hostSource } from '../src/report/source.js';
import { KsmdClock } from '../src/host/ksmd.js';
import { lockKsm } from '../src/host/ksm-lock.js';
import { Workload } from '../src/workload/workload.js';
import { parseSmaps } from '../src/ksm/footprint.js';
import { makeMemoryCgroup, type MemoryCgroup } from '../src/workload/cgroup.js';

const { values: a } = parseArgs({
  options: {
    scans: { type: 'string', default: '16' },
    processes: { type: 'string', default: '3' },
    image: { type: 'string', default: '3000' },
    zero: { type: 'string', default: '1500' },
    own: { type: 'string', default: '1500' },
    'smart-scan': { type: 'string', default: '1' },
    'use-zero-pages': { type: 'string', default: '0' },
    'pages-to-scan': { type: 'string', default: '100' },
    'sleep-ms': { type: 'string', default: '20' },
  },
});
function int(name: keyof typeof a): number {
  const v = Number(a[name]);
  if (!Number.isInteger(v) || v < 0) {
    process.stderr.write(`savings-by-scan: --${name} must be a whole number, got ${String(a[name])}\n`);
    process.exit(2);
  }
  return v;
}
const SCANS = int('scans');
const SMART = int('smart-scan');
const USE_ZERO = int('use-zero-pages');
const MiB = 2 ** 20;
const mib = (b: number): string => (b / MiB).toFixed(1);
const pct = (x: number, of: number): string => `${x >= of ? '+' : ''}${((100 * (x - of)) / of).toFixed(2)} %`;
const vmstat = (key: string): number => Number(new RegExp(`^${key} (\\d+)$`, 'm').exec(readFileSync('/proc/vmstat', 'utf8'))?.[1] ?? NaN);

/** Σ Pss of a process's mergeable areas (smaps VmFlags "mg"): the workload's memory, not its runtime's. */
const mergeablePss = (pid: number): number => parseSmaps(readFileSync(`/proc/${pid}/smaps`, 'utf8')).mergeablePssBytes;

let guard: KnobGuard | undefined;
let w: Workload | undefined;
let cg: MemoryCgroup | undefined;
process.once('exit', () => guard?.restore());
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));

const release = await lockKsm();
try {
  guard = KnobGuard.begin('savings-by-scan');
  const ksm = new Ksm();
  await ksm.unmergeAll({ timeoutMs: 60_000 });
  await ksm.configure({
    run: 0,
    use_zero_pages: USE_ZERO === 1,
    pages_to_scan: int('pages-to-scan'),
    sleep_millisecs: int('sleep-ms'),
    ...('advisor_mode' in guard.found ? { advisor_mode: 'none' } : {}),
    ...('smart_scan' in guard.found ? { smart_scan: SMART === 1 } : {}),
  });
  cg = makeMemoryCgroup(`pagefuse-by-scan-${process.pid}`);
  w = await Workload.start({
    processes: int('processes'),
    imagePages: int('image'),
    zeroPages: int('zero'),
    uniquePages: int('own'),
    hugepages: 'always',
    cgroup: cg.dir,
    seed: 31,
  });
  await sleep(500); // the children's start-up allocations settle
  const p = await scan(w.pids.map((pid) => ({ pid })));
  const ps = 4096;
  const estimate = p.estimatedSavedBytes;
  const eventual = estimate + p.thpSlowSplitZeroPages * ps;
  const source = hostSource({ footprintMaxAgeMs: 0, nodes: async () => undefined, tunerStatePath: '/nonexistent', zeroBaselines: false });
  await source.read(); // the baseline of the zero-page mappings, before any merge
  const before = cg.usage();
  const areas = (): number => w!.pids.reduce((sum, pid) => sum + mergeablePss(pid), 0);
  const areasBefore = areas();
  const split0 = vmstat('thp_split_page');
  const clock = new KsmdClock();
  const cpu0 = (await clock.cpuSeconds()) ?? NaN;
  const [l1] = loadavg();
  process.stdout.write(
    `${w.pids.length} processes × (${int('image')} image + ${int('zero')} zero + ${int('own')} own pages), MADV_HUGEPAGE; ` +
      `use_zero_pages=${USE_ZERO} smart_scan=${SMART} pages_to_scan=${int('pages-to-scan')} sleep_millisecs=${int('sleep-ms')}; ` +
      `${cpus()[0].model}, ${cpus().length} cores, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n` +
      `scan before merging: estimate ${mib(estimate)} MiB (${p.thpSplitPages} huge pages split in the first scans); ` +
      `slow: ${p.thpSlowSplitPages} huge pages, ${p.thpSlowSplitZeroPages} zero subpages (${mib(p.thpSlowSplitZeroPages * ps)} MiB); with all split ${mib(eventual)} MiB\n\n` +
      '| full scans | s since start | ksmd CPU-s | saved MiB | vs estimate | vs all split | fall in the mergeable areas\' PSS | cgroup fall MiB | thp_split_page |\n|---|---|---|---|---|---|---|---|---|\n',
  );
  const t0 = Date.now();
  await ksm.start();
  for (let k = 1; k <= SCANS; k++) {
    await ksm.waitForFullScans(1, { timeoutMs: 600_000 });
    const fall = before - cg.usage();
    const saved = figures(await source.read()).processes.filter((x) => w!.pids.includes(x.pid)).reduce((sum, x) => sum + x.savedBytes, 0);
    const cpu = ((await clock.cpuSeconds()) ?? NaN) - cpu0;
    process.stdout.write(
      `| ${k} | ${((Date.now() - t0) / 1000).toFixed(1)} | ${cpu.toFixed(2)} | ${mib(saved)} | ${pct(saved, estimate)} | ${pct(saved, eventual)} | ${mib(areasBefore - areas())} | ${mib(fall)} | +${vmstat('thp_split_page') - split0} |\n`,
    );
  }
  await ksm.stop();
  process.stdout.write(`\nload average ${l1.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end\n`);
} finally {
  await w?.stop();
  await cg?.remove();
  guard?.restore();
  release();
}
