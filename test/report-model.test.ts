import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  History,
  figures,
  hostSavings,
  rates,
  series,
  type Snapshot,
} from '../src/report/model.js';
import { HostSource } from '../src/report/source.js';
import { readZeroBaselines, writeZeroBaselines } from '../src/report/zero-baselines.js';
import { processTable, savedLines, wouldSaveLines } from '../src/report/text.js';
import { metricsRegistry } from '../src/report/prometheus.js';
import { RMAP_ITEM_BYTES, type KnownKsmCounters } from '../src/ksm/counters.js';
import { Sampler } from '../src/report/sampler.js';
import { readTunerState, writeTunerState } from '../src/report/tuner-state.js';
import { decisionRecord, publishTuner } from '../src/report/publish.js';
import type { TuneDecision } from '../src/tune/tuner.js';
import { readHistoryFile } from '../src/report/history-file.js';
import { EventEmitter } from 'node:events';
import { Region } from '../src/region.js';
import { Registry } from '../src/safety/registry.js';

const PAGE = 4096;

function counters(over: Partial<KnownKsmCounters> = {}): KnownKsmCounters {
  return { pages_shared: 0, pages_sharing: 0, pages_unshared: 0, pages_volatile: 0, full_scans: 0, ...over };
}

function snap(at: number, c: Partial<KnownKsmCounters>, cpu?: number): Snapshot {
  const s: Snapshot = {
    at,
    pageSize: PAGE,
    settings: { run: 1, pages_to_scan: 100, sleep_millisecs: 20 },
    counters: counters(c),
    processes: [],
  };
  if (cpu !== undefined) s.ksmdCpuSeconds = cpu;
  return s;
}

test('host savings use general_profit when the kernel has it', () => {
  // 1000 sharing + 24 zero pages = 1024 pages = 4 MiB gross; the kernel says 4 MiB − 3000 rmap items × 64.
  const h = hostSavings(
    counters({ pages_shared: 250, pages_sharing: 1000, ksm_zero_pages: 24, general_profit: 4194304 - 192000 }),
    PAGE,
  );
  assert.deepEqual(h, {
    saved: { ksmPages: 1000, ksmZeroPages: 24, thpSplitZeroPages: 0 },
    savedPages: 1024,
    exitedPages: 0,
    savedBytes: 4194304,
    thpSplitKnown: false,
    thpSplitUpperBound: false,
    // 3000 rmap items × 64 B, plus 250 stable nodes × 64 B.
    metadataBytes: 192000 + 16000,
    netBytes: 4194304 - 208000,
    kernelProfitBytes: 4002304,
    sharingRatio: 4,
    profitSource: 'general_profit',
  });
});

test('host savings follow the kernel formula when general_profit is absent', () => {
  // rmap items ≈ shared + sharing + unshared + volatile = 10 + 90 + 400 + 20 = 520 → 33280 B metadata.
  const h = hostSavings(counters({ pages_shared: 10, pages_sharing: 90, pages_unshared: 400, pages_volatile: 20 }), PAGE);
  assert.equal(RMAP_ITEM_BYTES, 64);
  assert.deepEqual(h, {
    saved: { ksmPages: 90, ksmZeroPages: 0, thpSplitZeroPages: 0 },
    savedPages: 90,
    exitedPages: 0,
    savedBytes: 368640,
    thpSplitKnown: false,
    thpSplitUpperBound: false,
    // rmap items, plus 10 stable nodes × 64 B.
    metadataBytes: 33280 + 640,
    netBytes: 368640 - 33920,
    kernelProfitBytes: 90 * 4096 - 520 * 64,
    sharingRatio: 9,
    profitSource: 'computed',
  });
});

test('the kernel profit can be negative, by the formula or from general_profit', () => {
  assert.equal(hostSavings(counters({ pages_unshared: 1000 }), PAGE).kernelProfitBytes, -64000);
  assert.equal(hostSavings(counters({ general_profit: -12800 }), PAGE).kernelProfitBytes, -12800);
});

test('the sharing ratio is null with no KSM pages', () => {
  assert.equal(hostSavings(counters({ pages_unshared: 1000 }), PAGE).sharingRatio, null);
});

test('rates: merge rate, ksmd CPU fraction, scan rate and full scans between two snapshots', () => {
  const a = snap(10_000, { pages_sharing: 100, ksm_zero_pages: 0, full_scans: 7, pages_scanned: 1000 }, 3.0);
  const b = snap(12_000, { pages_sharing: 500, ksm_zero_pages: 100, full_scans: 9, pages_scanned: 41000 }, 3.5);
  assert.deepEqual(rates(a, b), {
    seconds: 2,
    mergePagesPerSecond: 250,
    ksmdCpu: 0.25,
    scannedPagesPerSecond: 20000,
    fullScans: 2,
  });
  assert.equal(rates(b, a), null, 'snapshots out of order give no rate');
  // run=2 resets full_scans: count the scans since the reset.
  assert.equal(rates(b, snap(13_000, { full_scans: 1 }, 3.6))?.fullScans, 1);
  assert.equal(rates(snap(0, {}), snap(1000, {}))?.ksmdCpu, null, 'unknown ksmd CPU stays unknown');
});

/** Four processes (one idle, one a VM, one with negative profit) over two nodes. */
function fourProcesses(): Snapshot {
  const s = snap(1, { pages_shared: 1, pages_sharing: 3 });
  s.processes = [
    { pid: 10, name: 'small', rmapItems: 10, zeroPages: 0, mergingPages: 1, profitBytes: 4096 - 640 },
    { pid: 11, name: 'idle', rmapItems: 0, zeroPages: 0, mergingPages: 0, profitBytes: 0 },
    { pid: 12, name: 'guest-a', vm: true, rmapItems: 100, zeroPages: 0, mergingPages: 90, profitBytes: 90 * 4096 - 6400 },
    { pid: 13, name: 'loser', rmapItems: 1000, zeroPages: 0, mergingPages: 0, profitBytes: -64000 },
  ];
  s.nodes = [{ id: 0, ksmPages: 3 }, { id: 1, ksmPages: 0 }];
  return s;
}

test('figures list processes most saved first and leave out those without KSM state', () => {
  const f = figures(fourProcesses());
  assert.deepEqual(
    f.processes.map((p) => [p.pid, p.name, p.vm, p.saved.ksmPages, p.kernelProfitBytes]),
    [
      [12, 'guest-a', true, 3, 362240],
      [10, 'small', false, 0, 3456],
      [13, 'loser', false, 0, -64000],
    ],
  );
});

test('figures give each node\'s KSM pages in bytes too', () => {
  assert.deepEqual(figures(fourProcesses()).nodes, [{ id: 0, ksmPages: 3, bytes: 12288 }, { id: 1, ksmPages: 0, bytes: 0 }]);
});

test('figures of a single snapshot have no rates and, without a state file, no tuner', () => {
  const f = figures(fourProcesses());
  assert.equal(f.rates, null);
  assert.equal(f.tuner, null);
});

test('per-process shares of pages_sharing follow (k-1)/k weights and sum to the host exactly', () => {
  // One KSM page mapped by a, b and c (k=3: 2/3 each), one by a and b (k=2: 1/2 each): pages_sharing 3.
  const s = snap(1, { pages_shared: 2, pages_sharing: 3, ksm_zero_pages: 5 });
  s.processes = [
    { pid: 1, name: 'a', vm: true, rmapItems: 2, zeroPages: 2, mergingPages: 2, profitBytes: 0, sharingWeight: 2 / 3 + 1 / 2, zeroMappedPages: 2 + 7 },
    { pid: 2, name: 'b', vm: true, rmapItems: 2, zeroPages: 3, mergingPages: 2, profitBytes: 0, sharingWeight: 2 / 3 + 1 / 2, zeroMappedPages: 3 },
    { pid: 3, name: 'c', vm: true, rmapItems: 1, zeroPages: 0, mergingPages: 1, profitBytes: 0, sharingWeight: 2 / 3, zeroMappedPages: 1 },
  ];
  const f = figures(s);
  assert.deepEqual(f.host.saved, { ksmPages: 3, ksmZeroPages: 5, thpSplitZeroPages: 8 });
  assert.deepEqual(
    f.processes.map((p) => [p.name, p.saved]),
    [
      ['a', { ksmPages: 1, ksmZeroPages: 2, thpSplitZeroPages: 7 }],
      ['b', { ksmPages: 1, ksmZeroPages: 3, thpSplitZeroPages: 0 }],
      ['c', { ksmPages: 1, ksmZeroPages: 0, thpSplitZeroPages: 1 }],
    ],
  );
  assert.equal(f.processes.reduce((a, p) => a + p.savedBytes, 0), f.host.savedBytes);
  assert.equal(f.sharesNote, null);
});

// Three VMs shared 32 KSM pages three ways (pages_shared 32, pages_sharing 64); one exited with ksmd stopped.
// The kernel keeps its merged pages in the counters until ksmd next passes; the two left map each page twice.
function afterExit(wholeHost: boolean): Snapshot {
  const s = snap(1, { pages_shared: 32, pages_sharing: 64 });
  s.settings = { run: 0, pages_to_scan: 100, sleep_millisecs: 20 };
  s.processes = [
    { pid: 1, name: 'a', vm: true, rmapItems: 32, zeroPages: 0, mergingPages: 32, profitBytes: 0, sharingWeight: 16, zeroMappedPages: 0 },
    { pid: 2, name: 'b', vm: true, rmapItems: 32, zeroPages: 0, mergingPages: 32, profitBytes: 0, sharingWeight: 16, zeroMappedPages: 0 },
  ];
  s.wholeHost = wholeHost;
  return s;
}

test("a process that exited while ksmd was stopped: its pages in pages_sharing are left out of saved and of the shares", () => {
  const f = figures(afterExit(true));
  assert.deepEqual(f.host.saved, { ksmPages: 32, ksmZeroPages: 0, thpSplitZeroPages: 0 });
  assert.equal(f.host.exitedPages, 32);
  assert.deepEqual(f.processes.map((p) => [p.name, p.saved.ksmPages]), [['a', 16], ['b', 16]]);
  assert.equal(f.sharesNote, null);
});

test("the saved lines say how many pages pages_sharing counts for processes that have exited", () => {
  assert.deepEqual(savedLines(figures(afterExit(true))), [
    'saved 128 KiB = KSM pages 128 KiB + KSM zero pages 0 B + THP-split zero pages 0 B',
    "  (not counted: 32 pages (128 KiB) that pages_sharing still counts for processes that have exited; their memory is free already, and ksmd drops them from its counters on its next pass)",
  ]);
});

test('a reader that does not see every process of the host takes pages_sharing as it is', () => {
  const f = figures(afterExit(false));
  assert.equal(f.host.saved.ksmPages, 64);
  assert.equal(f.host.exitedPages, 0);
});

test('VMs registered with KSM are listed while ksmd has merged nothing', () => {
  const s = snap(1, {});
  s.processes = [{ pid: 7, name: 'web1', vm: true, rmapItems: 0, zeroPages: 0, mergingPages: 0, profitBytes: 0, registered: true }];
  assert.deepEqual(figures(s).processes.map((p) => p.name), ['web1']);
});

test('series: one point per snapshot with ksmd CPU over the interval before it', () => {
  const pts = series([snap(0, { pages_sharing: 10, general_profit: 40000 }, 1), snap(1000, { pages_sharing: 20, general_profit: 80000 }, 1.5)]);
  assert.deepEqual(pts, [
    { t: 0, saved_bytes: 40960, profit_bytes: 40000, saved_pages: 10, ksmd_cpu: null },
    { t: 1000, saved_bytes: 81920, profit_bytes: 80000, saved_pages: 20, ksmd_cpu: 0.5 },
  ]);
});

test('History is a ring buffer: keeps the newest, oldest first, last(n) counts back', () => {
  const h = new History<number>(3);
  assert.equal(h.last(), undefined);
  for (let i = 1; i <= 5; i++) h.push(i);
  assert.equal(h.size, 3);
  assert.deepEqual(h.toArray(), [3, 4, 5]);
  assert.equal(h.last(), 5);
  assert.equal(h.last(2), 3);
  assert.equal(h.last(3), undefined);
  assert.throws(() => new History(0), RangeError);
});

/** A fake sysfs + procfs: a pre-6.4 kernel (no general_profit), one VM, one idle process and ksmd. */
function fakeHost(): { dir: string; sysfs: string; proc: string } {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-report-'));
  const sysfs = join(dir, 'ksm');
  const proc = join(dir, 'proc');
  mkdirSync(sysfs);
  const files: Record<string, string> = {
    run: '1',
    pages_to_scan: '100',
    sleep_millisecs: '20',
    merge_across_nodes: '1',
    advisor_mode: '[none] scan-time',
    pages_shared: '5',
    pages_sharing: '45',
    pages_unshared: '50',
    pages_volatile: '0',
    full_scans: '3',
  };
  for (const [k, v] of Object.entries(files)) writeFileSync(join(sysfs, k), `${v}\n`);
  const procs: [string, string, string | undefined][] = [
    ['37', 'ksmd', ''],
    ['100', 'qemu-system-x86', 'ksm_rmap_items 100\nksm_merging_pages 45\n'],
    ['200', 'bash', 'ksm_rmap_items 0\nksm_zero_pages 0\nksm_merging_pages 0\nksm_process_profit 0\n'],
  ];
  for (const [pid, comm, stat] of procs) {
    mkdirSync(join(proc, pid), { recursive: true });
    writeFileSync(join(proc, pid, 'comm'), `${comm}\n`);
    if (stat !== undefined) writeFileSync(join(proc, pid, 'ksm_stat'), stat);
  }
  writeFileSync(join(proc, '37', 'stat'), '37 (ksmd) S 2 0 0 0 -1 69238880 0 0 0 0 12 238 0 0 25 5 1 0 31 0 0\n');
  writeFileSync(join(proc, '37', 'schedstat'), '2500000000 100 7\n');
  writeFileSync(join(proc, 'meminfo'), 'MemTotal:  4194304 kB\nMemFree:  1048576 kB\nMemAvailable:  2097152 kB\nSwapTotal:  1048576 kB\nSwapFree:  524288 kB\n');
  return { dir, sysfs, proc };
}

test('HostSource reads a fake host: knobs vs counters, VM names, ksmd CPU, no tuner state', async () => {
  const { dir, sysfs, proc } = fakeHost();
  try {
    const src = new HostSource({
      sysfsRoot: sysfs,
      procRoot: proc,
      pageSize: PAGE,
      tunerStatePath: join(dir, 'none.json'),
      vms: async () => new Map([[100, 'guest-a']]),
      nodes: async () => [{ id: 0, ksmPages: 5 }],
    });
    const s = await src.read();
    assert.equal(s.ksmdCpuSeconds, 2.5);
    assert.equal(s.settings.advisor_mode, 'none');
    assert.equal(s.counters.general_profit, undefined);
    assert.deepEqual(s.processes, [
      { pid: 100, name: 'guest-a', vm: true, rmapItems: 100, zeroPages: 0, mergingPages: 45, profitBytes: 45 * 4096 - 100 * 64, registered: true, zeroMappedPages: null, sharingWeight: null },
    ]);
    assert.deepEqual(s.nodes, [{ id: 0, ksmPages: 5 }]);
    const f = figures(s);
    assert.equal(f.host.kernelProfitBytes, 45 * 4096 - 100 * 64);
    assert.equal(f.processes[0].kernelProfitBytes, 45 * 4096 - 100 * 64);
    assert.equal(f.tuner, null);
    // The un-share exposure: 45 merged pages against MemAvailable 2 GiB + SwapFree 512 MiB.
    assert.deepEqual(f.exposure, { exposureBytes: 45 * 4096, availableBytes: 2560 * 1024 * 1024, marginBytes: 2560 * 1024 * 1024 - 45 * 4096 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Adds pid 300 (started at tick 4242) to a fake host: one mergeable area of two 2 MiB chunks at 1 GiB.
 * Chunk 0 is a huge page of zeros split before ksmd ran (512 zero-page mappings); `state(merging, true)`
 * also has chunk 1 split by ksmd to merge one page (511 zero subpages, one KSM page).
 */
function splitGuest(proc: string): (merging: number, chunk1: boolean) => void {
  const base = 0x40000000;
  mkdirSync(join(proc, '300'));
  writeFileSync(join(proc, '300', 'comm'), 'qemu-system-x86\n');
  writeFileSync(join(proc, '300', 'stat'), '300 (qemu-system-x86) S 1 300 300 0 -1 4194560 0 0 0 0 5 7 0 0 20 0 1 0 4242 0 0\n');
  writeFileSync(join(proc, '300', 'smaps'), `${base.toString(16)}-${(base + 4 * 1024 * 1024).toString(16)} rw-p 00000000 00:00 0\nPss:  4096 kB\nVmFlags: rd wr mg\n`);
  const flags = Buffer.alloc(101 * 8);
  flags.writeBigUInt64LE(1n << 24n, 50 * 8); // pfn 50: the zero page
  flags.writeBigUInt64LE(1n << 21n, 100 * 8); // pfn 100: a KSM page
  writeFileSync(join(proc, 'kpageflags'), flags);
  const counts = Buffer.alloc(101 * 8);
  counts.writeBigUInt64LE(2n, 100 * 8);
  writeFileSync(join(proc, 'kpagecount'), counts);
  return (merging, chunk1) => {
    writeFileSync(join(proc, '300', 'ksm_stat'), `ksm_rmap_items ${merging}\nksm_zero_pages 0\nksm_merging_pages ${merging}\nksm_process_profit 0\nksm_mergeable yes\n`);
    const map = Buffer.alloc((base / 4096 + 1024) * 8);
    const present = 1n << 63n;
    for (let i = 0; i < 512; i++) map.writeBigUInt64LE(present | 50n, (base / 4096 + i) * 8);
    if (chunk1) for (let i = 0; i < 512; i++) map.writeBigUInt64LE(present | (i === 0 ? 100n : 50n), (base / 4096 + 512 + i) * 8);
    writeFileSync(join(proc, '300', 'pagemap'), map);
  };
}

/** A reader of the fake host; footprints are walked at every reading unless `footprintMaxAgeMs` caches them. */
function splitGuestSource(dir: string, sysfs: string, proc: string, zeroBaselines: string | false = false, footprintMaxAgeMs = 0): HostSource {
  return new HostSource({ sysfsRoot: sysfs, procRoot: proc, pageSize: PAGE, tunerStatePath: join(dir, 'none.json'), nodes: async () => undefined, footprintMaxAgeMs, zeroBaselines });
}

async function guest300(src: HostSource) {
  return (await src.read()).processes.find((p) => p.pid === 300);
}

test('HostSource counts a process\'s zero-page mappings from its first merge on, not those it had before', async () => {
  const { dir, sysfs, proc } = fakeHost();
  try {
    const state = splitGuest(proc);
    const src = splitGuestSource(dir, sysfs, proc);
    state(0, false);
    const before = (await guest300(src))?.zeroMappedPages;
    state(1, true);
    assert.deepEqual([before, (await guest300(src))?.zeroMappedPages], [0, 511]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a cached footprint of a process whose merging pages moved since it was read carries no sharing weight", async () => {
  const { dir, sysfs, proc } = fakeHost();
  try {
    const state = splitGuest(proc);
    const src = splitGuestSource(dir, sysfs, proc, false, 60_000);
    state(0, false);
    const before = (await guest300(src))?.sharingWeight;
    state(1, true);
    assert.deepEqual([before, (await guest300(src))?.sharingWeight], [0, null]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cached footprints are walked again once a process walked with them is gone: the others\' sharing weights counted its mappings', async () => {
  const { dir, sysfs, proc } = fakeHost();
  try {
    const state = splitGuest(proc);
    const src = splitGuestSource(dir, sysfs, proc, false, 60_000);
    state(1, true);
    const before = (await guest300(src))?.sharingWeight;
    // Guest 100 exits; the KSM page guest 300 maps is now mapped once.
    rmSync(join(proc, '100'), { recursive: true });
    const counts = Buffer.alloc(101 * 8);
    counts.writeBigUInt64LE(1n, 100 * 8);
    writeFileSync(join(proc, 'kpagecount'), counts);
    assert.deepEqual([before, (await guest300(src))?.sharingWeight], [0.5, 0]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a reader that first sees a process merged counts from the baseline another reader shared before its first merge', async () => {
  const { dir, sysfs, proc } = fakeHost();
  try {
    const state = splitGuest(proc);
    const file = join(dir, 'state', 'zero-baselines.json');
    state(0, false);
    await guest300(splitGuestSource(dir, sysfs, proc, file)); // e.g. serve, or a status run before merging
    state(1, true);
    const p = await guest300(splitGuestSource(dir, sysfs, proc, file)); // a one-shot status after merging
    assert.deepEqual([p?.zeroMappedPages, p?.thpSplitUpperBound], [511, undefined]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("zeroBaselinesOf gives the baseline another reader shared for that process, and none for another process with its pid", async () => {
  const { dir, sysfs, proc } = fakeHost();
  try {
    const state = splitGuest(proc);
    const file = join(dir, 'zero-baselines.json');
    state(0, false);
    await guest300(splitGuestSource(dir, sysfs, proc, file)); // a reader before the first merge (pid 300 started at tick 4242)
    const later = splitGuestSource(dir, sysfs, proc, file); // e.g. a restarted tuner, before its first reading
    const of = async (start: number) => (await later.zeroBaselinesOf([{ pid: 300, start }])).get(300);
    assert.deepEqual([await of(4242), await of(4243)], [512, undefined]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a shared baseline of an exited process is not applied to a new process with its pid: its THP-split part is an upper bound', async () => {
  const { dir, sysfs, proc } = fakeHost();
  try {
    const state = splitGuest(proc);
    const file = join(dir, 'zero-baselines.json');
    writeFileSync(file, JSON.stringify({ processes: { 300: { start: 1111, zeroMappedPages: 512 } } }));
    state(1, true);
    const p = await guest300(splitGuestSource(dir, sysfs, proc, file));
    assert.deepEqual([p?.zeroMappedPages, p?.thpSplitUpperBound], [1023, true]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A reader that read the host at uptime 40 s (tick 4000), then pid 300 (started at tick 4242) merged before its next read. */
async function firstSeenMergedAfterStart(hugeZeroPageAllocs: number) {
  const { dir, sysfs, proc } = fakeHost();
  try {
    writeFileSync(join(proc, 'uptime'), '40.00 70.00\n');
    writeFileSync(join(proc, 'vmstat'), `thp_split_page 9\nthp_zero_page_alloc ${hugeZeroPageAllocs}\nthp_swpout 0\n`);
    const src = splitGuestSource(dir, sysfs, proc);
    await src.read();
    splitGuest(proc)(1, true);
    return await guest300(src);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a reader watching since before a process started counts its zero-page mappings from its start when it first sees it merged', async () => {
  const p = await firstSeenMergedAfterStart(0);
  assert.deepEqual([p?.zeroMappedPages, p?.thpSplitUpperBound], [1023, undefined]);
});

test('a process started while a reader watched is still an upper bound once the huge zero page has been allocated', async () => {
  const p = await firstSeenMergedAfterStart(1);
  assert.deepEqual([p?.zeroMappedPages, p?.thpSplitUpperBound], [1023, true]);
});

test('a malformed zero-baselines file keeps only its well-formed entries', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-baselines-'));
  try {
    const file = join(dir, 'zero-baselines.json');
    const entries = { 1: { start: 5, zeroMappedPages: 7 }, 2: { start: -1, zeroMappedPages: 7 }, 3: { start: 5, zeroMappedPages: '7' }, '04': { start: 5, zeroMappedPages: 7 }, x: {}, 5: null };
    writeFileSync(file, JSON.stringify({ processes: entries }));
    const read = await readZeroBaselines(file);
    writeFileSync(file, '{"processes": [1, 2]}');
    const asArray = await readZeroBaselines(file);
    writeFileSync(file, 'not json');
    assert.deepEqual([[...read], asArray.size, (await readZeroBaselines(file)).size], [[[1, { start: 5, zeroMappedPages: 7 }]], 0, 0]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('writing zero baselines keeps the other readers\' entries and drops those of processes that no longer run', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-baselines-'));
  try {
    const file = join(dir, 'zero-baselines.json');
    writeFileSync(file, JSON.stringify({ processes: { 10: { start: 1, zeroMappedPages: 3 }, 11: { start: 2, zeroMappedPages: 4 }, 12: { start: 3, zeroMappedPages: 5 } } }));
    const running = new Map([[10, 1], [11, 99], [20, 8]]); // 11: its pid reused; 12: exited
    const failed = await writeZeroBaselines(file, new Map([[20, { start: 8, zeroMappedPages: 6 }]]), async (pid) => running.get(pid));
    assert.deepEqual([failed, [...(await readZeroBaselines(file))]], [undefined, [[10, { start: 1, zeroMappedPages: 3 }], [20, { start: 8, zeroMappedPages: 6 }]]]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('figures mark the saved figure an upper bound when a process with THP-split zero pages has no baseline', () => {
  const s = snap(1, { pages_shared: 1, pages_sharing: 1 });
  s.processes = [
    { pid: 1, name: 'a', rmapItems: 2, zeroPages: 0, mergingPages: 1, profitBytes: 0, zeroMappedPages: 100, sharingWeight: 0.5, thpSplitUpperBound: true },
    { pid: 2, name: 'b', rmapItems: 2, zeroPages: 0, mergingPages: 1, profitBytes: 0, zeroMappedPages: 0, sharingWeight: 0.5, thpSplitUpperBound: true },
    { pid: 3, name: 'c', rmapItems: 2, zeroPages: 0, mergingPages: 1, profitBytes: 0, zeroMappedPages: 7, sharingWeight: 0 },
  ];
  const f = figures(s);
  const bound = Object.fromEntries(f.processes.map((p) => [p.name, p.thpSplitUpperBound]));
  assert.deepEqual([f.host.thpSplitUpperBound, f.host.saved.thpSplitZeroPages, bound], [true, 107, { a: true, b: false, c: false }]);
});

test('the process table marks the SAVED and THP_ZERO of a process without a baseline with "≤"', () => {
  const s = snap(1, { pages_shared: 1, pages_sharing: 2 });
  s.processes = [
    { pid: 1, name: 'a', rmapItems: 2, zeroPages: 0, mergingPages: 1, profitBytes: 0, zeroMappedPages: 300, sharingWeight: 1, thpSplitUpperBound: true },
    { pid: 2, name: 'b', rmapItems: 2, zeroPages: 0, mergingPages: 1, profitBytes: 0, zeroMappedPages: 200, sharingWeight: 1 },
  ];
  const [head, ...rows] = processTable(figures(s)).split('\n');
  // Right-aligned columns: a cell runs from the end of the header before it to the end of its own.
  const end = (col: string): number => head.indexOf(col) + col.length;
  const cell = (r: string, before: string, col: string): string => r.slice(end(before), end(col)).trim();
  assert.deepEqual(rows.map((r) => [cell(r, 'NAME', 'SAVED'), cell(r, 'KSM_ZERO', 'THP_ZERO')]), [['≤1.2 MiB', '≤300'], ['804 KiB', '200']]);
});

test('pagefuse_exited_bytes gives what pages_sharing still counts for processes that have exited, and pagefuse_saved_bytes leaves it out', async () => {
  const text = await metricsRegistry(async () => figures(afterExit(true))).metrics();
  assert.deepEqual(
    text.split('\n').filter((l) => l.startsWith('pagefuse_exited_bytes') || l.startsWith('pagefuse_saved_bytes{part="ksm_pages"}')),
    ['pagefuse_saved_bytes{part="ksm_pages"} 131072', 'pagefuse_exited_bytes 131072'],
  );
});

test('pagefuse_saved_upper_bound is 1 when the THP-split part is an upper bound', async () => {
  const s = snap(1, { pages_shared: 1, pages_sharing: 1 });
  s.processes = [{ pid: 1, name: 'a', rmapItems: 2, zeroPages: 0, mergingPages: 1, profitBytes: 0, zeroMappedPages: 256, sharingWeight: 0.5, thpSplitUpperBound: true }];
  const text = await metricsRegistry(async () => figures(s)).metrics();
  assert.deepEqual(text.split('\n').filter((l) => l.startsWith('pagefuse_saved_upper_bound')), ['pagefuse_saved_upper_bound 1']);
});

test('the saved line says "≤" and why when the THP-split part is an upper bound', () => {
  const s = snap(1, { pages_shared: 1, pages_sharing: 1 });
  s.processes = [{ pid: 1, name: 'a', rmapItems: 2, zeroPages: 0, mergingPages: 1, profitBytes: 0, zeroMappedPages: 256, sharingWeight: 0.5, thpSplitUpperBound: true }];
  assert.deepEqual(savedLines(figures(s)), [
    'saved ≤ 1.0 MiB = KSM pages 4.0 KiB + KSM zero pages 0 B + THP-split zero pages ≤ 1.0 MiB',
    '  (upper bound: 1 process was first seen already merged, so huge pages split before (by the kernel or an earlier ksmd run) count too; a pagefuse reader that sees them before they merge (status, top, serve, tune) or runs from before they start records their baseline)',
  ]);
});

const MiB = 1024 * 1024;

/** A snapshot at 10 s with the tuner's decision of 5 s before it: its estimate, and what it left to slow huge page splits (omitted when `slow` is null). */
function withTunerEstimate(slow: { pages: number; bytes: number } | null): Snapshot {
  const s = snap(10_000, { pages_shared: 1, pages_sharing: 2 });
  s.tuner = { at: 5_000, policy: 'adaptive', settings: {}, reason: '', pid: process.pid, running: true, estimatedBytes: 600 * MiB };
  if (slow !== null) Object.assign(s.tuner, { thpSlowSplitPages: slow.pages, thpSlowSplitZeroBytes: slow.bytes });
  return s;
}

test("the tuner's state file record carries the huge pages ksmd splits one per full scan beside the estimate", () => {
  const decision: TuneDecision = {
    policy: 'adaptive',
    at: 1500,
    knobs: { run: 1 },
    changed: {},
    previous: {},
    dryRun: false,
    reasons: ['estimate'],
    rescan: [],
    savedBytes: 0,
    saved: { ksmPages: 0, ksmZeroPages: 0, thpSplitZeroPages: 0 },
    savedThpSplitKnown: true,
    savedUpperBound: false,
    hostSavedBytes: 0,
    estimatedBytes: 600 * MiB,
    thpSlowSplitPages: 31,
    thpSlowSplitZeroBytes: 60 * MiB,
    vms: [],
    risk: { at: 1500, exposureBytes: 0, availableBytes: 1, marginBytes: 1, thresholdBytes: 0, atRisk: false },
  };
  const rec = decisionRecord(decision);
  assert.deepEqual([rec.estimatedBytes, rec.thpSlowSplitPages, rec.thpSlowSplitZeroBytes], [600 * MiB, 31, 60 * MiB]);
});

test("figures read the would-save figure and the slow huge page splits apart from the tuner's state", () => {
  assert.deepEqual(figures(withTunerEstimate({ pages: 31, bytes: 60 * MiB })).wouldSave, {
    at: 5_000,
    bytes: 600 * MiB,
    slowSplit: { hugePages: 31, bytes: 60 * MiB },
    source: 'tuner',
  });
});

test('pagefuse_would_save_slow_split_bytes is what the estimate in pagefuse_would_save_bytes leaves to slow huge page splits', async () => {
  const text = await metricsRegistry(async () => figures(withTunerEstimate({ pages: 31, bytes: 60 * MiB }))).metrics();
  assert.deepEqual(text.split('\n').filter((l) => l.startsWith('pagefuse_would_save')), [
    `pagefuse_would_save_bytes ${600 * MiB}`,
    `pagefuse_would_save_slow_split_bytes ${60 * MiB}`,
  ]);
});

test("the would-save line gives what ksmd's second full scan reaches and, under it, the figure once the slow huge pages are split", () => {
  assert.deepEqual(wouldSaveLines(figures(withTunerEstimate({ pages: 31, bytes: 60 * MiB }))), [
    "would save 600 MiB by ksmd's second full scan  (tuner's scan 5s ago; saved now 8.0 KiB)",
    '  660 MiB once ksmd has split 31 more huge pages, at most one a full scan (+60.0 MiB of zero subpages; use_zero_pages=1 frees them in one)',
  ]);
});

test('the would-save line says when the slow huge page splits are unknown', () => {
  assert.deepEqual(wouldSaveLines(figures(withTunerEstimate(null))), [
    "would save 600 MiB by ksmd's second full scan, more later from huge pages it splits one a full scan: unknown (needs root)  (tuner's scan 5s ago; saved now 8.0 KiB)",
  ]);
});

test('tuner state round-trips through its file, a running tuner marked running', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-tuner-'));
  try {
    const path = join(dir, 'run', 'tuner.json');
    const d = { at: 5, policy: 'adaptive', settings: { pages_to_scan: 2000 }, reason: 'new VM 1234', pid: process.pid };
    await writeTunerState(d, path);
    assert.deepEqual(await readTunerState(path), { ...d, running: true });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a malformed tuner state file reads as no tuner', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-tuner-'));
  try {
    const path = join(dir, 'tuner.json');
    writeFileSync(path, '{"at": "soon"}');
    assert.equal(await readTunerState(path), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * A Sampler every 5 ms over a source whose reads take 15 ms, run until `samples` samples (however long a
 * loaded machine takes: no fixed sleep), then stopped; what it did, 60 ms after the stop.
 */
async function runSampler(samples: number) {
  let reads = 0;
  let concurrent = 0;
  let maxConcurrent = 0;
  const src = {
    async read(): Promise<Snapshot> {
      concurrent++;
      maxConcurrent = Math.max(maxConcurrent, concurrent);
      await new Promise((r) => setTimeout(r, 15));
      concurrent--;
      reads++;
      return snap(reads * 1000, { pages_sharing: reads * 10 }, reads * 0.1);
    },
  };
  const sampler = new Sampler(src, { intervalMs: 5, capacity: 4 });
  const seen: number[] = [];
  const keepAlive = setInterval(() => {}, 1000); // the Sampler's own timer is unref'd
  await new Promise<void>((resolve) => {
    sampler.on('sample', (f) => {
      seen.push(f.counters.pages_sharing);
      if (seen.length === samples) resolve();
    });
    sampler.start();
  });
  clearInterval(keepAlive);
  sampler.stop();
  const readsAtStop = reads;
  await new Promise((r) => setTimeout(r, 60));
  return { sampler, seen, reads, readsAtStop, maxConcurrent };
}

test('Sampler never starts a read while the last is in flight', async () => {
  const { maxConcurrent, seen } = await runSampler(6);
  assert.equal(maxConcurrent, 1);
  assert.deepEqual(seen.slice(0, 6), [10, 20, 30, 40, 50, 60]);
});

test('Sampler keeps the newest snapshots up to its capacity, with rates between the last two', async () => {
  const { sampler } = await runSampler(6);
  assert.equal(sampler.history.size, 4);
  const latest = sampler.latest();
  assert.equal(latest?.rates?.mergePagesPerSecond, 10);
  assert.ok(Math.abs((latest?.rates?.ksmdCpu ?? 0) - 0.1) < 1e-9);
});

test('Sampler.stop() ends the polling: no read after it but the one in flight', async () => {
  const { reads, readsAtStop } = await runSampler(6);
  assert.ok(reads <= readsAtStop + 1, `${reads} reads, ${readsAtStop} at the stop`);
});

test('publishTuner writes each decision to the state file and keeps the history file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-publish-'));
  try {
    const tuner = new EventEmitter();
    let n = 0;
    const source = { read: async (): Promise<Snapshot> => snap(++n * 1000, { pages_sharing: n * 100, general_profit: n * 409600 }, n) };
    const statePath = join(dir, 'tuner.json');
    const historyPath = join(dir, 'history.json');
    const before = Date.now();
    const stop = publishTuner(tuner, { statePath, historyPath, sampleMs: 20, source }, (err) => assert.fail(err));
    tuner.emit('decision', {
      policy: 'adaptive',
      at: 1500,
      knobs: { run: 1, pages_to_scan: 20000, advisor_mode: 'none' },
      changed: { pages_to_scan: 20000 },
      dryRun: false,
      reasons: ['estimate 800 MiB saveable', 'new VM 4242: scan first, merge second'],
      rescan: [],
      vms: [],
      risk: { at: 1500, exposureBytes: 0, availableBytes: 1, marginBytes: 1, thresholdBytes: 0, atRisk: false },
    });
    await new Promise((r) => setTimeout(r, 150));
    stop();
    await new Promise((r) => setTimeout(r, 50));
    const state = await readTunerState(statePath);
    assert.ok(state?.writtenAt !== undefined && state.writtenAt >= before && state.writtenAt <= Date.now());
    assert.deepEqual(state, {
      at: 1500,
      policy: 'adaptive',
      settings: { run: 1, pages_to_scan: 20000 },
      reason: 'new VM 4242: scan first, merge second',
      atRisk: false,
      pid: process.pid,
      dryRun: false,
      writtenAt: state.writtenAt,
      running: true,
    });
    const h = await readHistoryFile(historyPath);
    assert.ok(h.snapshots.length >= 3, `${h.snapshots.length} samples`);
    assert.deepEqual(h.snapshots.map((s) => s.counters.pages_sharing).slice(0, 3), [100, 200, 300]);
    assert.deepEqual(h.decisions.map((d) => d.reason), ['new VM 4242: scan first, merge second']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('publishTuner\'s history names a registered process by its registered name, as top and status do', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-publish-names-'));
  const stateBefore = process.env.PAGEFUSE_STATE_DIR;
  process.env.PAGEFUSE_STATE_DIR = dir; // the registry the default source reads
  const region = Region.alloc(16 * PAGE, { hugepages: 'never' });
  try {
    new Uint8Array(region.buffer).fill(7);
    region.advise('mergeable'); // so this process is listed with KSM state
    new Registry({ stateDir: dir }).add({ pid: process.pid, name: 'web1', merge: true, via: 'register' });
    const historyPath = join(dir, 'history.json');
    const stop = publishTuner(new EventEmitter(), { statePath: join(dir, 'tuner.json'), historyPath, sampleMs: 20 }, (err) => assert.fail(err));
    let names: string[] = [];
    for (let i = 0; i < 200 && names.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 25));
      const h = await readHistoryFile(historyPath).catch(() => undefined);
      names = (h?.snapshots ?? []).flatMap((s) => s.processes.filter((p) => p.pid === process.pid).map((p) => p.name));
    }
    stop();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(names[0], 'web1');
  } finally {
    if (stateBefore === undefined) delete process.env.PAGEFUSE_STATE_DIR;
    else process.env.PAGEFUSE_STATE_DIR = stateBefore;
    region.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});
