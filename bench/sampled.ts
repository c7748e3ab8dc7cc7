// Sampled mode at fleet size (issue 14 item 6): how much index sampled mode needs and how far its
// estimate strays, measured on the largest memory this machine allows, then extrapolated to a 1 TiB host
// (method: docs/scan.md, "Sampled mode at fleet size").
//
// Each run lays out `vms` generated guests (src/workload/layout.ts) in this machine's memory: a common
// image in every guest, layers shared by groups of 4, zero pages and pages of their own. One exact scan
// gives the truth; sampled scans at each M give the estimate, the index size and the scan's own 3σ
// bound. They keep no bitmask of targets per content (`sharing: false`: a host total is what is
// wanted); the first child also scans with it, for its index size. The hash key is per process, so
// each repeat runs in a fresh child: its sample is independent.
//
//   node --import tsx bench/sampled.ts [--shapes 32x32,32x128,128x32] [--rates 16,32,64] [--repeats 5] [--json]
//   (a shape is VMS x MiB-per-VM; keep VMS × MiB to a few GiB on a shared machine)
import { execFileSync } from 'node:child_process';
import { loadavg, cpus } from 'node:os';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PAGE_SIZE, Region } from '../src/region.js';
import { scan } from '../src/scan/scan.js';
import { fillGuest, type GuestLayout } from '../src/workload/layout.js';

/** The fleet's shape: fractions of each guest's pages. */
const SHAPE = { image: 0.4, layer: 0.2, layerGroup: 4, zero: 0.1, own: 0.3 } as const;

interface Fleet {
  vms: number;
  pagesPerVm: number;
}

function layouts(f: Fleet): GuestLayout[] {
  const n = (frac: number): number => Math.floor(f.pagesPerVm * frac);
  return Array.from({ length: f.vms }, (_, i) => ({
    imagePages: n(SHAPE.image),
    layers: [{ seed: 100 + Math.floor(i / SHAPE.layerGroup), pages: n(SHAPE.layer) }],
    zeroPages: n(SHAPE.zero),
    uniquePages: f.pagesPerVm - n(SHAPE.image) - n(SHAPE.layer) - n(SHAPE.zero),
    volatilePages: 0,
    imageSeed: 1,
    seed: 1000 + i,
  }));
}

/**
 * The truth for a fleet of this shape, from the layout: D = duplicate non-zero pages (pages beyond the
 * first copy of each content), Σx² over contents (x = extra copies), zero pages.
 */
export function fleetTruth(f: Fleet): { duplicatePages: number; sumSquares: number; zeroPages: number; pages: number } {
  const ls = layouts(f);
  const image = ls[0].imagePages;
  let dup = image * (f.vms - 1);
  let sq = image * (f.vms - 1) ** 2;
  const groups = new Map<number, number>();
  for (const l of ls) for (const layer of l.layers ?? []) groups.set(layer.seed, (groups.get(layer.seed) ?? 0) + 1);
  const layerPages = ls[0].layers![0].pages;
  for (const k of groups.values()) {
    dup += layerPages * (k - 1);
    sq += layerPages * (k - 1) ** 2;
  }
  return { duplicatePages: dup, sumSquares: sq, zeroPages: ls.reduce((a, l) => a + l.zeroPages, 0), pages: f.vms * f.pagesPerVm };
}

interface ChildResult {
  fleet: Fleet;
  exact?: { duplicatePages: number; estimatedSavedPages: number; indexBytes: number; seconds: number };
  sampled: { rate: number; duplicatePages: number; estimatedSavedPages: number; errorBoundPages: number; indexBytes: number; seconds: number }[];
  /** First child only: the index of the same sampled scans with the per-target bitmask. */
  withBitmask?: { rate: number; indexBytes: number }[];
}

async function child(f: Fleet, rates: number[], exact: boolean): Promise<ChildResult> {
  const regions = layouts(f).map((l) => {
    const r = Region.alloc(f.pagesPerVm * PAGE_SIZE, { hugepages: 'never' });
    fillGuest(new Uint32Array(r.buffer), l);
    return r;
  });
  const out: ChildResult = { fleet: f, sampled: [] };
  if (exact) {
    const e = await scan(regions, { mode: 'exact', keepState: false, threads: 1, useZeroPages: false });
    out.exact = { duplicatePages: e.duplicatePages, estimatedSavedPages: e.estimatedSavedPages, indexBytes: e.indexBytes, seconds: e.seconds };
  }
  for (const M of rates) {
    const options = { mode: 'sampled', sampleRate: M, keepState: false, threads: 1, useZeroPages: false } as const;
    const s = await scan(regions, { ...options, sharing: false });
    out.sampled.push({ rate: M, duplicatePages: s.duplicatePages, estimatedSavedPages: s.estimatedSavedPages, errorBoundPages: s.sampling!.errorBoundPages, indexBytes: s.indexBytes, seconds: s.seconds });
    if (exact) (out.withBitmask ??= []).push({ rate: M, indexBytes: (await scan(regions, options)).indexBytes });
  }
  for (const r of regions) r.dispose();
  return out;
}

const { values: a } = parseArgs({
  options: {
    child: { type: 'string' },
    shapes: { type: 'string', default: '32x32,32x128,128x32' },
    rates: { type: 'string', default: '16,32,64' },
    repeats: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
  },
});
const rates = a.rates.split(',').map(Number);
if (rates.some((m) => !Number.isInteger(m) || m < 2 || (m & (m - 1)) !== 0)) {
  process.stderr.write(`bench/sampled: --rates must be powers of two ≥ 2, got ${a.rates}\n`);
  process.exit(2);
}

if (a.child !== undefined) {
  const [vms, pages, ex] = a.child.split(',').map(Number);
  process.stdout.write(`${JSON.stringify(await child({ vms, pagesPerVm: pages }, rates, ex === 1))}\n`);
  process.exit(0);
}

const repeats = Number(a.repeats);
const shapes = a.shapes.split(',').map((s) => {
  const m = /^(\d+)x(\d+)$/.exec(s);
  if (m === null) {
    process.stderr.write(`bench/sampled: --shapes takes VMSxMIB,…, got ${s}\n`);
    process.exit(2);
  }
  return { vms: Number(m[1]), pagesPerVm: (Number(m[2]) << 20) / PAGE_SIZE };
});
if (!Number.isInteger(repeats) || repeats < 2) {
  process.stderr.write(`bench/sampled: --repeats must be at least 2\n`);
  process.exit(2);
}

const SELF = fileURLToPath(import.meta.url);
const flags = ['avx2', 'avx512f', 'aes', 'vaes'].filter((f) => new RegExp(`\\b${f}\\b`).test(readFileSync('/proc/cpuinfo', 'utf8')));
const MiB = 1 << 20;
const report: unknown[] = [];
const load0 = loadavg()[0];
for (const f of shapes) {
  const runs: ChildResult[] = [];
  for (let r = 0; r < repeats; r++) {
    const out = execFileSync(process.execPath, ['--import', 'tsx', SELF, '--child', `${f.vms},${f.pagesPerVm},${r === 0 ? 1 : 0}`, '--rates', a.rates], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 1 << 24,
    });
    runs.push(JSON.parse(out) as ChildResult);
  }
  const truth = fleetTruth(f);
  const exact = runs[0].exact!;
  if (exact.duplicatePages !== truth.duplicatePages) throw new Error(`the exact scan found ${exact.duplicatePages} duplicate pages, the layout says ${truth.duplicatePages}`);
  const gib = (truth.pages * PAGE_SIZE) / 2 ** 30;
  const rows = rates.map((M) => {
    const est = runs.map((r) => r.sampled.find((s) => s.rate === M)!);
    const errs = est.map((s) => (s.duplicatePages - truth.duplicatePages) / truth.duplicatePages);
    const mean = errs.reduce((x, y) => x + y, 0) / errs.length;
    const sd = Math.sqrt(errs.reduce((x, e) => x + (e - mean) ** 2, 0) / (errs.length - 1));
    const predictedSd = Math.sqrt((M - 1) * truth.sumSquares) / truth.duplicatePages;
    const withBitmask = runs[0].withBitmask!.find((s) => s.rate === M)!.indexBytes;
    return {
      rate: M,
      indexBytesPerPage: est[0].indexBytes / truth.pages,
      indexMiB: est[0].indexBytes / MiB,
      bitmaskIndexBytesPerPage: withBitmask / truth.pages,
      errors: errs.map((e) => `${(e * 100).toFixed(2)} %`),
      maxAbsError: Math.max(...errs.map(Math.abs)),
      measuredSd: sd,
      predictedSd,
      boundRel: est.map((s) => s.errorBoundPages / truth.duplicatePages),
      within3Sigma: est.filter((s) => Math.abs(s.duplicatePages - truth.duplicatePages) <= s.errorBoundPages).length,
      seconds: est.map((s) => s.seconds),
    };
  });
  report.push({ vms: f.vms, mibPerVm: (f.pagesPerVm * PAGE_SIZE) / MiB, gib, truth, exactIndexBytesPerPage: exact.indexBytes / truth.pages, rows });
  if (!a.json) {
    process.stdout.write(`\n${f.vms} guests × ${(f.pagesPerVm * PAGE_SIZE) / MiB} MiB = ${gib} GiB: ${truth.duplicatePages} duplicate pages, n_eff = D²/Σx² = ${Math.round(truth.duplicatePages ** 2 / truth.sumSquares)}; exact index ${(exact.indexBytes / truth.pages).toFixed(2)} B/page\n`);
    process.stdout.write(`| M | index B/page (totals only) | index | B/page with the per-target bitmask | errors of ${repeats} runs (duplicate pages) | measured σ | predicted σ = √((M−1)Σx²)/D | scan's 3σ bound | within it |\n|---|---|---|---|---|---|---|---|---|\n`);
    for (const r of rows) {
      process.stdout.write(`| ${r.rate} | ${r.indexBytesPerPage.toFixed(3)} | ${r.indexMiB.toFixed(1)} MiB | ${r.bitmaskIndexBytesPerPage.toFixed(3)} | ${r.errors.join(', ')} | ${(r.measuredSd * 100).toFixed(2)} % | ${(r.predictedSd * 100).toFixed(2)} % | ${(Math.min(...r.boundRel) * 100).toFixed(2)}–${(Math.max(...r.boundRel) * 100).toFixed(2)} % | ${r.within3Sigma}/${repeats} |\n`);
    }
  }
}

// Extrapolation to 1 TiB: index bytes per page as measured on the largest run (a totals-only index does
// not depend on the number of targets; its fixed room shrinks per page as the host grows, so this
// overestimates), with the bitmask as measured at the same number of targets, and the error from the
// formula the runs check: 3σ/D = 3·√((M−1)/n_eff).
const TiBPages = 2 ** 40 / PAGE_SIZE;
const fleets1T = [
  { vms: 32, pagesPerVm: TiBPages / 32 },
  { vms: 128, pagesPerVm: TiBPages / 128 },
];
type Measured = { vms: number; gib: number; rows: { rate: number; indexBytesPerPage: number; bitmaskIndexBytesPerPage: number }[] };
const largest = (rs: Measured[]): Measured | undefined => [...rs].sort((x, y) => y.gib - x.gib)[0];
const extrapolation = fleets1T.map((f) => {
  const truth = fleetTruth(f);
  const measured = largest(report as Measured[]);
  const sameTargets = largest((report as Measured[]).filter((r) => r.vms === f.vms));
  return {
    vms: f.vms,
    gibPerVm: (f.pagesPerVm * PAGE_SIZE) / 2 ** 30,
    nEff: truth.duplicatePages ** 2 / truth.sumSquares,
    rows: rates.map((M) => ({
      rate: M,
      indexMiB: measured === undefined ? null : (measured.rows.find((r) => r.rate === M)!.indexBytesPerPage * TiBPages) / MiB,
      bitmaskIndexMiB: sameTargets === undefined ? null : (sameTargets.rows.find((r) => r.rate === M)!.bitmaskIndexBytesPerPage * TiBPages) / MiB,
      bound3Sigma: (3 * Math.sqrt((M - 1) * truth.sumSquares)) / truth.duplicatePages,
    })),
  };
});
const meta = { cpu: `${cpus()[0]?.model ?? '?'} (${flags.join(' ')})`, cores: cpus().length, loadavg: [load0, loadavg()[0]].map((l) => l.toFixed(2)) };
if (a.json) process.stdout.write(`${JSON.stringify({ meta, runs: report, extrapolation })}\n`);
else {
  process.stdout.write(`\n1 TiB host, same shape (image 40 % in every guest, layers 20 % per group of 4, zero 10 %, own 30 %):\n`);
  process.stdout.write(`| guests | M | index, totals only (≤ 256 MiB) | index with the per-target bitmask | 3σ error (≤ 1 %) | both met (totals only) |\n|---|---|---|---|---|---|\n`);
  const mib = (x: number | null): string => (x === null ? 'not measured' : `${x.toFixed(0)} MiB`);
  for (const e of extrapolation) {
    for (const r of e.rows) {
      const ok = r.indexMiB !== null && r.indexMiB <= 256 && r.bound3Sigma <= 0.01;
      process.stdout.write(`| ${e.vms} × ${e.gibPerVm} GiB (n_eff ${Math.round(e.nEff)}) | ${r.rate} | ${mib(r.indexMiB)} | ${mib(r.bitmaskIndexMiB)} | ${(r.bound3Sigma * 100).toFixed(2)} % | ${ok ? 'yes' : 'no'} |\n`);
    }
  }
  process.stdout.write(`\nCPU ${meta.cpu}, ${meta.cores} cores, load ${meta.loadavg.join(' → ')}\n`);
}
