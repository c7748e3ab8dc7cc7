// `pagefuse bench`: what KSM and pagefuse buy on this host, measured in one run. Sections run in turn;
// one that cannot run here (no root, no KSM) is skipped with its reason and the others still run.
import { cpus, release, totalmem } from 'node:os';
import { readCpuInfo } from '../host/procfs.js';
import { benchHashing, type HashingResult } from './hashing.js';
import { BENCH_KNOBS, benchEstimate, ksmUnavailable, type EstimateResult, type GuestSizes } from './estimate.js';
import { Ksm, ksmOptionsFromEnv } from '../ksm/ksm.js';
import { discoverVms } from '../vm/discover.js';
import { benchTuner, type TunerBenchOptions, type TunerResult } from './tuner.js';

export type { BudgetCheck, TunerResult, TunerRow } from './tuner.js';
import { chartSvg, htmlPage } from '../report/html.js';
import { escapeHtml } from '../report/escape.js';
import { series, type Snapshot } from '../report/model.js';
import { formatTable } from '../report/format.js';

export interface Skipped {
  skipped: string;
}

export interface BenchResult {
  quick: boolean;
  date: string;
  /** cpu_flags: the instruction-set flags that decide the kernels (avx2, avx512f, aes, vaes, …) this CPU has. */
  machine: { cpu: string; cpus: number; mem_total_bytes: number; kernel: string; node: string; cpu_flags: string[] };
  seconds: number;
  hashing: HashingResult | Skipped;
  estimate: EstimateResult | Skipped;
  tuner: TunerResult | Skipped;
}

export interface BenchOptions {
  quick: boolean;
  /** Drive ksmd even while VMs run on this host (default false: the KSM parts are skipped then). */
  force?: boolean;
  /** /proc to look for VMs in (tests). */
  procRoot?: string;
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
  /** The tuner section's own options (budgets, rows, ksmtuned's interval). */
  tuner?: Omit<TunerBenchOptions, 'quick' | 'log'>;
}

/** The CPU flags that decide which scan kernels run (hash.cc's KernelsFor). */
const KERNEL_FLAGS = ['sse2', 'avx2', 'avx512f', 'aes', 'vaes', 'pclmulqdq', 'vpclmulqdq'];

const QUICK = {
  hashing: { mib: 512, userMib: 32, runs: 3 },
  estimate: { guests: 4, commonMiB: 32, uniqueMiB: 8, zeroMiB: 2 } satisfies GuestSizes,
  estimateTimeoutS: 20,
};
const FULL = {
  hashing: { mib: 2048, userMib: 256, runs: 7 },
  estimate: { guests: 4, commonMiB: 256, uniqueMiB: 64, zeroMiB: 8 } satisfies GuestSizes,
  estimateTimeoutS: 120,
};

async function section<T>(name: string, log: (l: string) => void, run: () => Promise<T>): Promise<T | Skipped> {
  const t0 = performance.now();
  log(`bench: ${name}…`);
  try {
    const r = await run();
    log(`bench: ${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return r;
  } catch (err) {
    const why = (err as Error).message.split('\n')[0];
    log(`bench: ${name} failed: ${why}`);
    return { skipped: `failed: ${why}` };
  }
}

/** The machine a bench ran on: CPU model and count, the scan kernels' CPU flags, memory, kernel, Node. */
export async function machineFigures(): Promise<BenchResult['machine']> {
  const cpuList = cpus();
  const flags = new Set((await readCpuInfo())?.flags ?? []);
  return {
    cpu: cpuList[0]?.model ?? 'unknown',
    cpus: cpuList.length,
    mem_total_bytes: totalmem(),
    kernel: release(),
    node: process.version,
    cpu_flags: KERNEL_FLAGS.filter((f) => flags.has(f)),
  };
}

export async function runBench(options: BenchOptions): Promise<BenchResult> {
  const log = options.log ?? (() => undefined);
  const sizes = options.quick ? QUICK : FULL;
  const t0 = performance.now();
  log(
    options.quick
      ? 'bench: a quick run, about a minute'
      : 'bench: a full run, about 11 minutes on a 2-CPU host, most of it the tuner policies (each until 95 % has merged, at most 300 s; kernel-advisor does not reach 95 % on this workload, so its row alone takes 300 s); --quick takes about a minute',
  );
  const result: BenchResult = {
    quick: options.quick,
    date: new Date().toISOString(),
    machine: await machineFigures(),
    seconds: 0,
    hashing: await section('page hashing', log, () => benchHashing(sizes.hashing)),
    estimate: { skipped: '' },
    tuner: { skipped: '' },
  };
  const noKsm = (await ksmUnavailable()) ?? (options.force ? undefined : await vmsInTheWay(options.procRoot));
  if (noKsm === undefined) log(await knobsNotice());
  if (noKsm !== undefined) {
    log(`bench: skipping the KSM parts (scan estimate vs ksmd, tuner policies): ${noKsm}`);
    result.estimate = { skipped: noKsm };
    result.tuner = { skipped: noKsm };
  } else {
    result.estimate = await section('scan estimate vs ksmd', log, () => benchEstimate(sizes.estimate, sizes.estimateTimeoutS));
    result.tuner = await section('tuner policies', log, () => benchTuner({ ...options.tuner, quick: options.quick, log }));
  }
  result.seconds = Number(((performance.now() - t0) / 1000).toFixed(1));
  return result;
}

/**
 * Why the bench must not drive ksmd here: VMs are running, and the bench would change the pace at which
 * their memory merges (and unmerge nothing, but stop ksmd between its runs). Undefined with no VM.
 */
export async function vmsInTheWay(procRoot?: string): Promise<string | undefined> {
  const vms = (await discoverVms(procRoot === undefined ? {} : { procRoot })).filter((vm) => vm.vmm !== 'registered');
  if (vms.length === 0) return undefined;
  const names = vms.slice(0, 5).map((vm) => vm.name).join(', ');
  return `${vms.length} VM${vms.length === 1 ? ' is' : 's are'} running (${names}${vms.length > 5 ? ', …' : ''}): the bench would drive ksmd under them; pass --force to run it anyway`;
}

/** What the KSM parts change and how they put it back, with the values found. */
async function knobsNotice(): Promise<string> {
  const found = (await new Ksm(ksmOptionsFromEnv()).read()).settings as Record<string, unknown>;
  const now = BENCH_KNOBS.filter((k) => found[k] !== undefined).map((k) => `${k}=${String(found[k])}`).join(' ');
  return `bench: the KSM parts set ${BENCH_KNOBS.join(', ')} while they run, and put back the values found (${now}) when they end, on SIGINT, SIGTERM and SIGHUP too`;
}

export function isSkipped(v: object): v is Skipped {
  return 'skipped' in v;
}

const MiB = 1024 * 1024;

/**
 * keepState's cost, from two scans a few seconds apart: a negative figure is their difference, not a
 * gain (its checksums are the page hash's low bits), so it reads as noise.
 */
function keepStateCost(percent: number): string {
  return percent < 0 ? `keepState: within noise (${percent} %)` : `keepState costs ${percent} %`;
}

/** The tables for stdout. */
export function benchText(r: BenchResult): string {
  const out: string[] = [
    `pagefuse bench${r.quick ? ' --quick' : ''} — ${r.date}, ${r.machine.cpus} × ${r.machine.cpu}, ${(r.machine.mem_total_bytes / 1024 ** 3).toFixed(1)} GiB, Linux ${r.machine.kernel}, Node ${r.machine.node}`,
    '',
  ];
  const h = r.hashing;
  out.push(`Page hashing, 4 KiB pages — CPU flags: ${r.machine.cpu_flags.join(' ')}`);
  if (isSkipped(h)) out.push(`  skipped: ${h.skipped}`);
  else {
    out.push(
      formatTable(
        ['what', 'GB/s', 'vs', 'per CPU-s'],
        [
          [`native read, best of 1/2/4/8 streams (${h.read_streams}), 1 thread — the baseline`, h.read_gb_per_s, '', h.read_gb_per_cpu_s],
          ['native read, 1 stream', h.read_one_stream_gb_per_s, `${(h.read_one_stream_gb_per_s / h.read_gb_per_s).toFixed(2)} × read`, ''],
          [`pagefuse exact (${h.hash_kernel}), 1 thread`, h.exact_gb_per_s, `${h.exact_vs_read} × read`, `${h.exact_gb_per_cpu_s} (${h.exact_vs_read_cpu} × read)`],
          ['pagefuse exact, keepState off', h.exact_no_state_gb_per_s, keepStateCost(h.keep_state_cost_percent), ''],
          ['pagefuse fast, 1 thread', h.fast_gb_per_s, `${h.fast_vs_exact} × exact`, ''],
          [`native read, ${h.default_threads} threads (${h.read_threads_split === 'items' ? '2 MiB items' : 'a share each'})`, h.read_threads_gb_per_s, '', h.read_threads_gb_per_cpu_s],
          [
            `native read, ${h.default_threads} threads, 1 stream each`,
            h.read_threads_one_stream_gb_per_s,
            `${(h.read_threads_one_stream_gb_per_s / h.read_threads_gb_per_s).toFixed(2)} × read (${h.default_threads} threads)`,
            '',
          ],
          [
            `pagefuse exact, ${h.default_threads} threads`,
            h.exact_threads_gb_per_s,
            `${h.exact_threads_vs_read} × read (${h.default_threads} threads)`,
            `${h.exact_threads_gb_per_cpu_s} (${h.exact_threads_vs_read_cpu} × read)`,
          ],
          ['node:crypto sha1 per page', h.node_crypto_sha1_gb_per_s, `exact is ${h.exact_vs_sha1} × faster`, ''],
          [
            '@node-rs/xxhash per page',
            h.node_rs_xxhash_gb_per_s ?? '-',
            h.exact_vs_node_rs_xxhash === null ? 'not measured' : `exact is ${h.exact_vs_node_rs_xxhash} × faster`,
            '',
          ],
        ],
      ),
      `  ${(h.bytes / MiB).toFixed(0)} MiB of pages that all differ, best of ${h.rounds} interleaved rounds; fast and exact agree: ${h.fast_matches_exact ? 'yes' : 'NO'}`,
    );
    if (h.node_rs_xxhash_note !== undefined) out.push(`  ${h.node_rs_xxhash_note}`);
  }
  out.push('', 'Scan estimate vs what ksmd merged');
  const e = r.estimate;
  if (isSkipped(e)) out.push(`  skipped: ${e.skipped}`);
  else {
    out.push(
      formatTable(
        ['figure', 'scan predicted', 'ksmd reached', 'error'],
        [
          ['merging pages', e.predicted_merging_pages, e.ksmd_merging_pages, `${e.merging_error_percent} %`],
          ['saved pages', e.predicted_saved_pages, e.ksmd_saved_pages, `${e.saved_error_percent} %`],
        ],
      ),
      `  ${e.guests} guests, ${(e.bytes / MiB).toFixed(0)} MiB; scan ${e.scan_seconds} s; ksmd ${e.ksmd_seconds} s at 20000 pages / 0 ms, use_zero_pages 0` +
        `${e.ksmd_cpu_seconds === null ? '' : `, ${e.ksmd_cpu_seconds} CPU-s`}${e.converged ? '' : ' (did not converge in time)'}`,
    );
  }
  out.push('', 'Tuner policies on a generated workload');
  const t = r.tuner;
  if (isSkipped(t)) out.push(`  skipped: ${t.skipped}`);
  else {
    out.push(`  ${t.workload}; load average ${t.load_average[0]} before, ${t.load_average[1]} after`, ...tunerTables(t, '  '));
  }
  out.push('', `total ${r.seconds} s`);
  return `${out.join('\n')}\n`;
}

/** The tuner section's tables as lines: the policies, the reference runs under them (after `indent`), the budget checks. */
export function tunerTables(t: TunerResult, indent: string): string[] {
  const out = [tunerTable(t)];
  const ref = referenceLine(t);
  if (ref !== '') out.push(`${indent}${ref}`);
  if (t.budgets.length > 0) out.push('', budgetTable(t));
  return out;
}

/** The runs of the unthrottled reference, where each ran, and what the rows are held to: '' for one run or none. */
export function referenceLine(t: TunerResult): string {
  const runs = t.unthrottled_runs;
  if (runs.length < 2) return '';
  // rows[0] is the reference's median run; the others follow in the order they ran.
  const others = t.rows.slice(1);
  const where = (slot: number): string => {
    if (slot === 0) return 'first';
    if (slot >= others.length) return 'last';
    const row = others[slot]!;
    return `before ${row.policy.replace(/ \(.*$/, '')}${row.budget === null ? '' : ` ${row.budget}`}`;
  };
  const list = runs.map((r) => `${where(r.slot)}: ${r.ksmd_cpu_seconds} CPU-s (${r.seconds_to_95 === null ? 'not at 95 %' : `95 % in ${r.seconds_to_95} s`})`).join(', ');
  return `Unthrottled reference, ${runs.length} runs: ${list}. The row above is the run of median CPU; each adaptive row is held to the mean of the runs just before and after it`;
}

/** The tuner rows: time to 95 %, ksmd's CPU and its average share of a CPU beside the budget given. */
export function tunerRows(t: TunerResult): [string[], (string | number)[][]] {
  return [
    ['policy', 'budget', 's to 95 %', 'ksmd started, s', 'ksmd CPU-s', 'ksmd avg CPU while run', 'ksmd waiting for a CPU, s', 'saved', 'achievable'],
    t.rows.map((row) => [
      row.policy,
      row.budget ?? '—',
      row.seconds_to_95 ?? 'not reached',
      row.ksmd_started_seconds ?? 'never',
      row.ksmd_cpu_seconds,
      row.ksmd_run_cpu_average ?? '—',
      row.ksmd_wait_seconds ?? '—',
      `${(row.saved_bytes / MiB).toFixed(1)} MiB`,
      `${(row.achievable_bytes / MiB).toFixed(1)} MiB`,
    ]),
  ];
}

const signedPercent = (p: number): string => `${p > 0 ? '+' : ''}${p} %`;

/** Each budgeted row against its targets: average within ±10 % of the budget, time within 1.2 × unthrottled CPU-s ÷ budget. */
export function budgetRows(t: TunerResult): [string[], (string | number)[][]] {
  return [
    [
      'policy',
      'avg CPU vs budget while run',
      'within ±10 %',
      'from the start (scan first)',
      'unthrottled beside it: CPU-s, s',
      's to 95 % bound',
      'within bound',
      'time ÷ unthrottled (≤ 1.3 at 1 CPU)',
      'CPU-s ÷ unthrottled',
    ],
    t.budgets.map((b) => [
      b.policy,
      signedPercent(b.budget_error_percent),
      b.within_budget ? 'yes' : 'NO',
      signedPercent(b.budget_error_percent_from_start),
      `${b.reference.ksmd_cpu_seconds}, ${b.reference.seconds_to_95 ?? 'not reached'}`,
      b.bound_seconds,
      b.within_bound ? 'yes' : 'NO',
      b.vs_unthrottled ?? '—',
      b.cpu_vs_unthrottled,
    ]),
  ];
}

export const tunerTable = (t: TunerResult): string => formatTable(...tunerRows(t));
export const budgetTable = (t: TunerResult): string => formatTable(...budgetRows(t));

/** Horizontal bars of page-hashing speed, GB/s. */
function hashingBars(h: HashingResult): string {
  const bars: [string, number | null][] = [
    ['native read (baseline)', h.read_gb_per_s],
    ['pagefuse exact', h.exact_gb_per_s],
    ['pagefuse fast', h.fast_gb_per_s],
    ['node:crypto sha1 per page', h.node_crypto_sha1_gb_per_s],
    ['@node-rs/xxhash per page', h.node_rs_xxhash_gb_per_s],
  ];
  const max = Math.max(...bars.map(([, v]) => v ?? 0), 0.001);
  const rowH = 30;
  const labelW = 200;
  const barW = 560;
  const rows = bars.map(([label, v], i) => {
    const y = 10 + i * rowH;
    const w = v === null ? 0 : Math.max(1, (v / max) * barW);
    return `<text class="tick" x="${labelW - 8}" y="${y + 12}" text-anchor="end" dominant-baseline="middle">${escapeHtml(label)}</text>` +
      `<rect class="bar" x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${rowH - 8}" fill="${i === 0 ? '#9ca3af' : i < 3 ? '#2563eb' : '#ea580c'}"/>` +
      `<text class="tick" x="${labelW + w + 6}" y="${y + 12}" dominant-baseline="middle">${v === null ? 'not installed' : `${v} GB/s`}</text>`;
  });
  const height = 20 + bars.length * rowH;
  return `<svg id="hashing-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 880 ${height}" width="880" height="${height}" role="img" aria-label="page hashing speed">\n${rows.join('\n')}\n</svg>`;
}

/** The bench as a self-contained page: hashing bars, the tables, and the host's savings during the run. */
export function benchPage(r: BenchResult, snapshots: readonly Snapshot[]): string {
  const parts: string[] = [];
  if (!isSkipped(r.hashing)) parts.push('<h2>Page hashing, one thread</h2>', hashingBars(r.hashing));
  if (snapshots.length > 1) {
    parts.push('<h2>KSM savings and ksmd CPU during the run</h2>', chartSvg(series(snapshots), []));
  }
  parts.push('<h2>Figures</h2>', `<pre id="bench-tables">${escapeHtml(benchText(r))}</pre>`);
  const sub = `${r.date}; ${r.machine.cpus} × ${r.machine.cpu}; Linux ${r.machine.kernel}; Node ${r.machine.node}${r.quick ? '; --quick' : ''}`;
  return htmlPage('pagefuse bench', sub, parts.join('\n'));
}
