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

const SPECS: Spec[] = [
  // node_exporter's ksmd collector (collector/ksmd_linux.go), same names, units and types.
  { name: 'node_ksmd_full_scans_total', help: 'ksmd number of full scans (/sys/kernel/mm/ksm/full_scans).', counter: true, value: (f) => f.counters.full_scans },
  { name: 'node_ksmd_merge_across_nodes', help: 'ksmd merge_across_nodes knob.', value: (f) => f.settings.merge_across_nodes },
  { name: 'node_ksmd_pages_shared', help: 'ksmd pages_shared: KSM pages in use.', value: (f) => f.counters.pages_shared },
  { name: 'node_ksmd_pages_sharing', help: 'ksmd pages_sharing: page mappings saved by sharing.', value: (f) => f.counters.pages_sharing },
  { name: 'node_ksmd_pages_to_scan', help: 'ksmd pages_to_scan knob.', value: (f) => f.settings.pages_to_scan },
  { name: 'node_ksmd_pages_unshared', help: 'ksmd pages_unshared: unique pages checked repeatedly.', value: (f) => f.counters.pages_unshared },
  { name: 'node_ksmd_pages_volatile', help: 'ksmd pages_volatile: pages changing too fast to merge.', value: (f) => f.counters.pages_volatile },
  { name: 'node_ksmd_run', help: 'ksmd run knob (0 stopped, 1 running, 2 unmerged).', value: (f) => f.settings.run },
  { name: 'node_ksmd_sleep_seconds', help: 'ksmd sleep_millisecs knob, in seconds.', value: sleepSeconds },
  // pagefuse's savings model.
  // What the merged processes got back (docs/savings.md); the parts sum to the total.
  {
    name: 'pagefuse_saved_bytes',
    help:
      'Memory KSM gave back to the merged processes, as their cgroup or summed PSS sees it, by part: ksm_pages = pages_sharing x page size; ' +
      'ksm_zero_pages = ksm_zero_pages x page size; thp_split_zero_pages = zero-filled subpages freed when ksmd split huge pages (root only; absent without). Sum the parts for the total.',
    labels: ['part'],
    value: (f) => [
      [{ part: 'ksm_pages' }, f.host.saved.ksmPages * f.pageSize],
      [{ part: 'ksm_zero_pages' }, f.host.saved.ksmZeroPages * f.pageSize],
      ...(f.host.thpSplitKnown ? [[{ part: 'thp_split_zero_pages' }, f.host.saved.thpSplitZeroPages * f.pageSize] as [Labels, number]] : []),
    ],
  },
  {
    name: 'pagefuse_would_save_bytes',
    help: "What merging would give back by the latest scan's estimate (same parts as pagefuse_saved_bytes; the tuner daemon's scans): absent until something has scanned.",
    value: (f) => f.wouldSave?.bytes,
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
    labels: ['pid', 'name', 'vm', 'part'],
    value: (f) =>
      f.processes.flatMap((p) => {
        const l = { pid: p.pid, name: p.name, vm: p.vm ? 'true' : 'false' };
        return [
          [{ ...l, part: 'ksm_pages' }, p.saved.ksmPages * f.pageSize],
          [{ ...l, part: 'ksm_zero_pages' }, p.saved.ksmZeroPages * f.pageSize],
          ...(f.host.thpSplitKnown ? [[{ ...l, part: 'thp_split_zero_pages' }, p.saved.thpSplitZeroPages * f.pageSize] as [Labels, number]] : []),
        ] as [Labels, number][];
      }),
  },
  {
    name: 'pagefuse_process_pss_bytes',
    help: 'Proportional set size of this process (smaps Pss): what it costs now, a page shared k ways counting 1/k.',
    labels: ['pid', 'name', 'vm'],
    value: (f) => f.processes.flatMap((p) => (p.pssBytes === null ? [] : [[{ pid: p.pid, name: p.name, vm: p.vm ? 'true' : 'false' }, p.pssBytes] as [Labels, number]])),
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
    labels: ['pid', 'name', 'vm'],
    value: (f) => f.processes.map((p) => [{ pid: p.pid, name: p.name, vm: p.vm ? 'true' : 'false' }, get(p)]),
  })),
  {
    name: 'pagefuse_node_ksm_pages',
    help: 'KSM pages resident on each NUMA node.',
    labels: ['node'],
    value: (f) => f.nodes.map((n) => [{ node: n.id }, n.ksmPages]),
  },
  {
    name: 'pagefuse_tuner_setting',
    help: 'Knob values the running tuner last chose (none from a dry run or a tuner that exited).',
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
  { name: 'pagefuse_unshare_available_bytes', help: 'MemAvailable + SwapFree: what the host can still hand out.', value: (f) => f.exposure?.availableBytes },
  { name: 'pagefuse_unshare_margin_bytes', help: 'Available minus un-share exposure; negative means the host would run out if every merged page were written.', value: (f) => f.exposure?.marginBytes },
  {
    name: 'pagefuse_tuner_overcommit_risk',
    help: "1 when the tuner's overcommit guard saw the un-share margin under its threshold at its last decision.",
    labels: ['policy'],
    value: (f) => (!tunerInForce(f.tuner) || f.tuner.atRisk === undefined ? [] : [[{ policy: f.tuner.policy }, f.tuner.atRisk ? 1 : 0]]),
  },
  {
    name: 'pagefuse_tuner_decision_timestamp_seconds',
    help: "When the tuner last decided, in seconds since the epoch.",
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

/** A registry whose every metric is read through `scrape` when Prometheus asks. */
export function metricsRegistry(scrape: Scrape): Registry {
  const registry = new Registry();
  for (const spec of SPECS) define(registry, spec, scrape);
  return registry;
}

export const METRIC_NAMES: readonly string[] = SPECS.map((s) => s.name);
