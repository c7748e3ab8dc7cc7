// Prometheus metrics. Host counters keep node_exporter's ksmd collector names (node_ksmd_*) so its
// dashboards carry over; pagefuse's own figures are pagefuse_*. Every value is read at scrape time: each
// metric's collect() awaits one shared sample per scrape. Only counts leave the host: no page contents,
// no page hashes, nothing from inside a process's memory.
import { Counter, Gauge, Registry } from 'prom-client';
import type { Figures } from './model.js';
import { tunerInForce } from './tuner-state.js';

/** One sample per scrape: concurrent callers share the read in flight. */
export type Scrape = () => Promise<Figures>;

type Labels = Record<string, string | number>;
type Values = (f: Figures) => [Labels, number][] | number | undefined;

interface Spec {
  name: string;
  help: string;
  labels?: string[];
  counter?: boolean;
  value: Values;
}

const sleepSeconds = (f: Figures): number | undefined =>
  f.settings.sleep_millisecs === undefined ? undefined : f.settings.sleep_millisecs / 1000;

/** A tuner state older than this counts as a tuner that is down (its decisions come every few seconds to a minute). */
export const TUNER_STALE_SECONDS = 600;

/** Per-process values summed over the processes that share a name (a VM keeps its name across restarts; pids do not). */
function perName(f: Figures, get: (p: Figures['processes'][number]) => number, extra: Labels = {}): [Labels, number][] {
  const sums = new Map<string, [Labels, number]>();
  for (const p of f.processes) {
    const vm = p.vm ? 'true' : 'false';
    const key = `${vm}\0${p.name}`;
    const entry = sums.get(key) ?? [{ name: p.name, vm, ...extra }, 0];
    entry[1] += get(p);
    sums.set(key, entry);
  }
  return [...sums.values()];
}

const SPECS: Spec[] = [
  // node_exporter's ksmd collector (collector/ksmd_linux.go, and general_profit from its PR #3778): same
  // names, units and types, so its dashboards carry over; --no-node-ksmd leaves these out where
  // node_exporter's collector already exports them.
  { name: 'node_ksmd_full_scans_total', help: 'Full scans ksmd has completed: /sys/kernel/mm/ksm/full_scans.', counter: true, value: (f) => f.counters.full_scans },
  { name: 'node_ksmd_general_profit_bytes', help: 'Bytes KSM saves net of its metadata, as the kernel computes it: /sys/kernel/mm/ksm/general_profit = (pages_sharing + ksm_zero_pages) x page size - all rmap_items x sizeof(rmap_item).', value: (f) => f.counters.general_profit },
  { name: 'node_ksmd_merge_across_nodes', help: 'Knob /sys/kernel/mm/ksm/merge_across_nodes (1: pages of different NUMA nodes may merge).', value: (f) => f.settings.merge_across_nodes },
  { name: 'node_ksmd_pages_shared', help: 'KSM pages in use (each holds one content): /sys/kernel/mm/ksm/pages_shared.', value: (f) => f.counters.pages_shared },
  { name: 'node_ksmd_pages_sharing', help: 'Page mappings pointing at a KSM page beyond the first, i.e. pages saved: /sys/kernel/mm/ksm/pages_sharing.', value: (f) => f.counters.pages_sharing },
  { name: 'node_ksmd_pages_to_scan', help: 'Knob /sys/kernel/mm/ksm/pages_to_scan: pages ksmd scans per wake-up.', value: (f) => f.settings.pages_to_scan },
  { name: 'node_ksmd_pages_unshared', help: 'Unique pages ksmd checks again on each pass: /sys/kernel/mm/ksm/pages_unshared.', value: (f) => f.counters.pages_unshared },
  { name: 'node_ksmd_pages_volatile', help: 'Pages changing too fast to merge: /sys/kernel/mm/ksm/pages_volatile.', value: (f) => f.counters.pages_volatile },
  { name: 'node_ksmd_run', help: 'Knob /sys/kernel/mm/ksm/run (0 stopped, 1 running, 2 stopped and every KSM page split).', value: (f) => f.settings.run },
  { name: 'node_ksmd_sleep_seconds', help: 'Knob /sys/kernel/mm/ksm/sleep_millisecs / 1000: seconds ksmd sleeps between wake-ups.', value: sleepSeconds },
  // pagefuse's savings model.
  // What the merged processes got back (docs/savings.md); the parts sum to the total.
  {
    name: 'pagefuse_saved_bytes',
    help:
      'Memory KSM gave back to the merged processes, as their cgroup or summed PSS sees it, by part: ksm_pages = pages_sharing x page size ' +
      '(less pagefuse_exited_bytes: pages it still counts for processes that have exited); ' +
      'ksm_zero_pages = ksm_zero_pages x page size; thp_split_zero_pages = zero-filled subpages freed when ksmd split huge pages (root only; absent without). Sum the parts for the total.',
    labels: ['part'],
    value: (f) => [
      [{ part: 'ksm_pages' }, f.host.saved.ksmPages * f.pageSize],
      [{ part: 'ksm_zero_pages' }, f.host.saved.ksmZeroPages * f.pageSize],
      ...(f.host.thpSplitKnown ? [[{ part: 'thp_split_zero_pages' }, f.host.saved.thpSplitZeroPages * f.pageSize] as [Labels, number]] : []),
    ],
  },
  {
    name: 'pagefuse_saved_upper_bound',
    help:
      '1 when pagefuse_saved_bytes{part="thp_split_zero_pages"} is an upper bound: some merged processes were first seen already merged ' +
      '(no baseline from before), so zero subpages of huge pages split before (by the kernel or an earlier ksmd run) count too; 0 when it is exact. Absent without root.',
    value: (f) => (f.host.thpSplitKnown ? (f.host.thpSplitUpperBound ? 1 : 0) : undefined),
  },
  {
    name: 'pagefuse_exited_bytes',
    help:
      'Memory pages_sharing still counts for processes that have exited, not in pagefuse_saved_bytes: freed already, and dropped from the ' +
      "kernel's counters at ksmd's next pass (while ksmd is stopped, not before). 0 unless the reader sees every process (root, in the host's PID namespace).",
    value: (f) => f.host.exitedPages * f.pageSize,
  },
  {
    name: 'pagefuse_would_save_bytes',
    help:
      "What merging would give back by the latest scan's estimate (same parts as pagefuse_saved_bytes; the tuner daemon's scans): what saved reaches by ksmd's second full scan over them. " +
      'Leaves out pagefuse_would_save_slow_split_bytes. Absent until something has scanned.',
    value: (f) => f.wouldSave?.bytes,
  },
  {
    name: 'pagefuse_would_save_slow_split_bytes',
    help:
      'Zero-filled subpages of the huge pages ksmd splits at most one per full scan (use_zero_pages=0; huge pages holding zero subpages and otherwise unique data), ' +
      'by the latest scan: not in pagefuse_would_save_bytes; the two summed are what merging gives back once ksmd has split them all, which can take hours. ' +
      '0 with use_zero_pages=1. Absent until something has scanned, or when the scan could not read page flags (not root).',
    value: (f) => f.wouldSave?.slowSplit?.bytes,
  },
  { name: 'pagefuse_ksm_profit_bytes', help: "The kernel's general_profit: (pages_sharing + ksm_zero_pages) x page size - rmap_items x 64 B. Misses THP-split zero pages; see pagefuse_saved_bytes.", value: (f) => f.host.kernelProfitBytes },
  { name: 'pagefuse_ksm_metadata_bytes', help: "KSM's own kernel memory, a host cost not charged to the processes: rmap_items x 64 B + (pages_shared + stable_node_chains) x 64 B (stable nodes).", value: (f) => f.host.metadataBytes },
  { name: 'pagefuse_ksm_sharing_ratio', help: 'pages_sharing / pages_shared (0 with no KSM pages).', value: (f) => f.host.sharingRatio ?? undefined },
  { name: 'pagefuse_ksm_zero_pages', help: 'Pages merged with the kernel zero page (ksm_zero_pages).', value: (f) => f.counters.ksm_zero_pages },
  { name: 'pagefuse_ksm_stable_node_chains', help: 'KSM pages that hit max_page_sharing (stable_node_chains).', value: (f) => f.counters.stable_node_chains },
  { name: 'pagefuse_ksm_stable_node_dups', help: 'Duplicate KSM pages under chains (stable_node_dups).', value: (f) => f.counters.stable_node_dups },
  { name: 'pagefuse_ksm_pages_scanned_total', help: 'Pages ksmd has scanned (pages_scanned).', counter: true, value: (f) => f.counters.pages_scanned },
  { name: 'pagefuse_ksmd_cpu_seconds_total', help: 'CPU time ksmd has used, in seconds.', counter: true, value: (f) => f.ksmdCpuSeconds ?? undefined },
  // Per process (VMs by their guest name).
  {
    name: 'pagefuse_process_saved_bytes',
    help: "This process's share of pagefuse_saved_bytes, by part: a KSM page mapped k times credits (k-1)/k page to each mapping, so the processes sum to the host.",
    labels: ['name', 'vm', 'part'],
    value: (f) => [
      ...perName(f, (p) => p.saved.ksmPages * f.pageSize, { part: 'ksm_pages' }),
      ...perName(f, (p) => p.saved.ksmZeroPages * f.pageSize, { part: 'ksm_zero_pages' }),
      ...(f.host.thpSplitKnown ? perName(f, (p) => p.saved.thpSplitZeroPages * f.pageSize, { part: 'thp_split_zero_pages' }) : []),
    ],
  },
  {
    name: 'pagefuse_process_pss_bytes',
    help: 'Proportional set size of this process (smaps Pss): what it costs now, a page shared k ways counting 1/k.',
    labels: ['name', 'vm'],
    value: (f) => perName({ ...f, processes: f.processes.filter((p) => p.pssBytes !== null) }, (p) => p.pssBytes!),
  },
  ...(
    [
      ['kernel_profit_bytes', "The kernel's ksm_process_profit: counts every merged page as saved in every process mapping it, so it does not sum to the host; see pagefuse_process_saved_bytes.", (p) => p.kernelProfitBytes],
      ['merging_pages', "Pages of this process mapped to KSM pages (ksm_merging_pages).", (p) => p.mergingPages],
      ['zero_pages', 'Pages of this process merged with the zero page (ksm_zero_pages).', (p) => p.zeroPages],
      ['rmap_items', 'rmap_items KSM holds for this process (ksm_rmap_items).', (p) => p.rmapItems],
    ] as [string, string, (p: Figures['processes'][number]) => number][]
  ).map(([suffix, help, get]): Spec => ({
    name: `pagefuse_process_${suffix}`,
    help,
    labels: ['name', 'vm'],
    value: (f) => perName(f, get),
  })),
  {
    name: 'pagefuse_process_info',
    help: 'Always 1: which pid carries each name now (join on name and vm).',
    labels: ['name', 'vm', 'pid'],
    value: (f) => f.processes.map((p) => [{ name: p.name, vm: p.vm ? 'true' : 'false', pid: p.pid }, 1]),
  },
  {
    name: 'pagefuse_node_ksm_pages',
    help: 'KSM pages resident on each NUMA node: pages_shared on a one-node host; with several nodes, KPF_KSM frames in /proc/kpageflags by node (root only, cached 10 s).',
    labels: ['node'],
    value: (f) => f.nodes.map((n) => [{ node: n.id }, n.ksmPages]),
  },
  {
    name: 'pagefuse_tuner_up',
    help: `1 when a pagefuse tune (not a dry run) still runs and published a decision in the last ${TUNER_STALE_SECONDS} s (its state file, PAGEFUSE_TUNER_STATE), else 0; always present, for alerting.`,
    value: (f) => (tunerInForce(f.tuner) && (f.at - f.tuner.at) / 1000 <= TUNER_STALE_SECONDS ? 1 : 0),
  },
  {
    name: 'pagefuse_tuner_setting',
    help: 'Knob values the running tuner last chose, by knob (what it wrote to /sys/kernel/mm/ksm/KNOB; none from a dry run or a tuner that exited).',
    labels: ['policy', 'knob'],
    value: (f) =>
      !tunerInForce(f.tuner)
        ? []
        : Object.entries(f.tuner.settings)
            .filter((e): e is [string, number] => typeof e[1] === 'number')
            .map(([knob, v]) => [{ policy: f.tuner!.policy, knob }, v]),
  },
  // The overcommit guard (pagefuse audit's unshare-exposure, canAdmit): alert on the margin.
  { name: 'pagefuse_unshare_exposure_bytes', help: 'Bytes that would be allocated again if every merged page were written: (pages_sharing + ksm_zero_pages) x page size.', value: (f) => f.exposure?.exposureBytes },
  { name: 'pagefuse_unshare_available_bytes', help: 'What the host can still hand out: MemAvailable + SwapFree from /proc/meminfo.', value: (f) => f.exposure?.availableBytes },
  { name: 'pagefuse_unshare_margin_bytes', help: 'unshare_available_bytes - unshare_exposure_bytes; negative means the host would run out if every merged page were written.', value: (f) => f.exposure?.marginBytes },
  {
    name: 'pagefuse_tuner_overcommit_risk',
    help: "1 when the tuner's overcommit guard saw the un-share margin under its threshold (10 % of MemTotal) at its last decision.",
    labels: ['policy'],
    value: (f) => (!tunerInForce(f.tuner) || f.tuner.atRisk === undefined ? [] : [[{ policy: f.tuner.policy }, f.tuner.atRisk ? 1 : 0]]),
  },
  {
    name: 'pagefuse_tuner_decision_timestamp_seconds',
    help: 'When the tuner last decided, in seconds since the epoch.',
    labels: ['policy'],
    value: (f) => (!tunerInForce(f.tuner) ? [] : [[{ policy: f.tuner.policy }, f.tuner.at / 1000]]),
  },
  {
    name: 'pagefuse_tuner_running',
    help: 'Whether the tuner that published the last decision still runs (1) or exited (0); dry_run="true" for a dry run, which applies nothing.',
    labels: ['policy', 'dry_run'],
    value: (f) => (f.tuner === null ? [] : [[{ policy: f.tuner.policy, dry_run: f.tuner.dryRun ? 'true' : 'false' }, f.tuner.running ? 1 : 0]]),
  },
];

function define(registry: Registry, spec: Spec, scrape: Scrape): void {
  const config = {
    name: spec.name,
    help: spec.help,
    labelNames: spec.labels ?? [],
    registers: [registry],
  };
  const fill = async (metric: Gauge | Counter): Promise<void> => {
    const v = spec.value(await scrape());
    metric.reset();
    const points: [Labels, number][] = typeof v === 'number' ? [[{}, v]] : (v ?? []);
    for (const [labels, value] of points) {
      if (metric instanceof Counter) metric.inc(labels, Math.max(0, value));
      else metric.set(labels, value);
    }
  };
  if (spec.counter) {
    new Counter({ ...config, async collect() { await fill(this); } });
  } else {
    new Gauge({ ...config, async collect() { await fill(this); } });
  }
}

export interface RegistryOptions {
  /** Export node_exporter's node_ksmd_* series too (default true); false where its ksmd collector runs. */
  nodeKsmd?: boolean;
}

const isNodeKsmd = (name: string): boolean => name.startsWith('node_ksmd_');

/** A registry whose every metric is read through `scrape` when Prometheus asks. */
export function metricsRegistry(scrape: Scrape, options: RegistryOptions = {}): Registry {
  const registry = new Registry();
  for (const spec of SPECS) if (options.nodeKsmd !== false || !isNodeKsmd(spec.name)) define(registry, spec, scrape);
  return registry;
}

export const METRIC_NAMES: readonly string[] = SPECS.map((s) => s.name);
/** The node_ksmd_* names, which node_exporter's ksmd collector also exports. */
export const NODE_KSMD_NAMES: readonly string[] = METRIC_NAMES.filter(isNodeKsmd);
