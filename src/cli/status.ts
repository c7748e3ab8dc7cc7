// pagefuse status: ksmd's knobs and counters, what it saves, and the processes that have KSM pages.
import { Ksm, ksmOptionsFromEnv } from '../ksm/ksm.js';
import { listKsmProcesses, type KsmProcessEntry } from '../ksm/process.js';
import { ksmPagesByNode, type NodeKsmPages, type NodeMergingPages } from '../numa/ksm-nodes.js';
import { numaTopology, type NumaTopology } from '../numa/topology.js';
import { mergeAcrossNodesWarning } from '../numa/warnings.js';
import { registeredSavings, type RegisteredSavings } from '../report/registered.js';
import { figures, type Figures, type ProcessFigures } from '../report/model.js';
import { HostSource, vmNames } from '../report/source.js';
import { savedLines } from '../report/text.js';
import { Registry } from '../safety/registry.js';
import { hostOptionsFromEnv } from './audit.js';
import { EXIT_FAILURE, EXIT_OK, formatBytes, formatTable, intFlag, parse, printJson } from './common.js';

const HELP = `usage: pagefuse status [--json] [--top N] [--nodes]

Shows KSM's settings (sysfs knobs), its counters, what KSM saved (docs/savings.md: the memory given
back to the merged processes, in parts: KSM pages, KSM zero pages, zero subpages freed by huge-page
splits — the last needs root), KSM's own metadata as a host cost, the kernel's general_profit, the
sharing ratio (pages_sharing / pages_shared), and the processes with KSM state or mergeable memory
(VMs by name), most saved first: each one's share of the saved memory (the shares sum to the host's),
its PSS and the kernel's ksm_process_profit. Works without root; other users' processes then need
root to be listed.

Warnings: merge_across_nodes=1 on a host with more than one memory node (KSM may merge a page onto a
remote node, and processes on the other nodes then read it at NUMA distance).

Registered: the processes started through pagefuse (pagefuse exec, spawnMerged) while they run, with
their tenant, merging pages and where those pages sit, per NUMA node ('0:120 1:8'). The per-node
placement needs root (page frames are hidden from other users); without it the counts stay and the
nodes read '-' with the reason. The API gives the same as registeredSavings().

KSM pages per node (the host's total, from /proc/kpageflags, root only) are shown on a host with more
than one memory node, or with --nodes; reading every page's flags takes about half a second, so a
single-node host skips it unless asked.

  --json     machine-readable output (snake_case, the kernel's names); besides ksm and processes:
             warnings: [string]
             registered: [{ pid, name, tenant, merge_any (started with merging on), merging_pages
               (its ksm_stat), nodes: { "0": n, … } | null, nodes_unavailable?: why }]
             nodes: [{ id, ksm_pages }] when counted (null with nodes_unavailable without root)
  --top N    list at most N processes (default 20; 0 lists none)
  --nodes    count the host's KSM pages per node even on a single-node host
`;

const RUN_STATES: Record<number, string> = {
  0: 'stopped (run=0; merged pages stay merged)',
  1: 'running (run=1)',
  2: 'stopped and unmerged (run=2)',
};

function processJson(p: ProcessFigures, raw: KsmProcessEntry | undefined, pageSize: number) {
  return {
    pid: p.pid,
    name: p.name,
    vm: p.vm,
    saved_bytes: p.savedBytes,
    saved: { ksm_pages: p.saved.ksmPages, ksm_zero_pages: p.saved.ksmZeroPages, thp_split_zero_pages: p.saved.thpSplitZeroPages, page_size: pageSize },
    pss_bytes: p.pssBytes,
    merging_pages: p.mergingPages,
    zero_pages: p.zeroPages,
    rmap_items: p.rmapItems,
    kernel_profit_bytes: p.kernelProfitBytes,
    merge_any: raw?.mergeAny ?? null,
    mergeable: raw?.mergeable ?? null,
  };
}

function savingsJson(f: Figures) {
  const h = f.host;
  return {
    saved_bytes: h.savedBytes,
    parts_pages: { ksm_pages: h.saved.ksmPages, ksm_zero_pages: h.saved.ksmZeroPages, thp_split_zero_pages: h.thpSplitKnown ? h.saved.thpSplitZeroPages : null },
    thp_split_upper_bound: h.thpSplitKnown ? h.thpSplitUpperBound : null,
    exited_pages: h.exitedPages,
    metadata_bytes: h.metadataBytes,
    net_bytes: h.netBytes,
    kernel_profit_bytes: h.kernelProfitBytes,
    shares_note: f.sharesNote,
  };
}

function nodeCounts(nodes: NodeMergingPages[]): Record<string, number> {
  return Object.fromEntries(nodes.map((n) => [String(n.node), n.mergingPages]));
}

function registeredJson(r: RegisteredSavings) {
  return {
    pid: r.pid,
    name: r.name,
    tenant: r.tenant,
    merge_any: r.merge,
    merging_pages: r.ksm?.mergingPages ?? null,
    nodes: r.nodes === null ? null : nodeCounts(r.nodes),
    ...(r.ksmUnavailable === null ? {} : { ksm_unavailable: r.ksmUnavailable }),
    ...(r.nodesUnavailable === null ? {} : { nodes_unavailable: r.nodesUnavailable }),
  };
}

function memoryNodes(topology: NumaTopology | undefined): number {
  return topology?.nodes.filter((n) => n.memTotal > 0).length ?? 0;
}

/** The host's KSM pages per node, or why they are unknown; undefined when not wanted. */
async function hostNodes(wanted: boolean, options: { procRoot?: string; sysfsRoot?: string }): Promise<NodeKsmPages[] | string | undefined> {
  if (!wanted) return undefined;
  try {
    return await ksmPagesByNode(options);
  } catch (err) {
    return (err as Error).message;
  }
}

function keyValues(o: Record<string, unknown>): string {
  return Object.entries(o)
    .map(([k, v]) => `  ${k.padEnd(36)} ${String(v)}`)
    .join('\n');
}

export async function run(args: string[]): Promise<number> {
  const { values } = parse('status', args, {
    options: {
      json: { type: 'boolean' },
      top: { type: 'string' },
      nodes: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return EXIT_OK;
  }
  const top = intFlag('status', 'top', values.top, 0, 1_000_000) ?? 20;
  const host = hostOptionsFromEnv();
  const options = ksmOptionsFromEnv();
  const ksm = new Ksm(options);

  if (!(await ksm.available())) {
    const message = `pagefuse status: KSM is not available: ${ksm.sysfsRoot} does not exist (kernel built without CONFIG_KSM)\n`;
    if (values.json) {
      printJson({ ksm: { available: false, settings: {}, counters: {}, profit_bytes: 0 }, processes: [] });
    }
    process.stderr.write(message);
    return EXIT_FAILURE;
  }

  const sysfs = host.sysRoot === undefined ? {} : { sysfsRoot: host.sysRoot };
  const procRoot = options.procRoot ?? '/proc';
  // A host whose topology cannot be read is treated as one node: nothing to warn about.
  let topology: NumaTopology | undefined;
  try {
    topology = numaTopology(sysfs);
  } catch {
    topology = undefined;
  }
  const source = new HostSource({ ...options, vms: () => vmNames(options.procRoot), nodes: async () => undefined, tunerStatePath: '/nonexistent' });
  const [state, list, registered, nodes, snapshot] = await Promise.all([
    ksm.read(),
    listKsmProcesses(options),
    registeredSavings({ procRoot, ...sysfs, registry: new Registry({ procRoot }) }),
    hostNodes(values.nodes === true || memoryNodes(topology) > 1, { procRoot, ...sysfs }),
    source.read(),
  ]);
  const f = figures(snapshot);
  const shown = f.processes.slice(0, top);
  const rawOf = new Map(list.processes.map((p) => [p.pid, p]));
  const ratio = f.host.sharingRatio;
  const mergeAcross = state.settings.merge_across_nodes;
  const warning = topology && mergeAcross !== undefined ? mergeAcrossNodesWarning(topology, Number(mergeAcross) === 1) : undefined;
  const warnings = warning === undefined ? [] : [warning];

  if (values.json) {
    printJson({
      ksm: {
        available: true,
        settings: state.settings,
        counters: state.counters,
        profit_bytes: state.profitBytes,
        sharing_ratio: ratio,
      },
      savings: savingsJson(f),
      processes: shown.map((p) => processJson(p, rawOf.get(p.pid), f.pageSize)),
      processes_total: f.processes.length,
      processes_unreadable: list.unreadable,
      warnings,
      registered: registered.map(registeredJson),
      ...(nodes === undefined
        ? {}
        : typeof nodes === 'string'
          ? { nodes: null, nodes_unavailable: nodes }
          : { nodes: nodes.map((n) => ({ id: n.node, ksm_pages: n.ksmPages })) }),
    });
    return EXIT_OK;
  }

  const run = state.settings.run;
  const lines = [
    `KSM: ${RUN_STATES[run ?? -1] ?? `run=${run}`}`,
    ...savedLines(f),
    `KSM metadata ${formatBytes(f.host.metadataBytes)} (host cost); kernel general_profit ${formatBytes(f.host.kernelProfitBytes)}` +
      `${ratio === null ? '' : `; sharing ratio ${ratio.toFixed(2)} (pages_sharing / pages_shared)`}`,
    '',
    ...(warnings.length === 0 ? [] : ['warnings:', ...warnings.map((w) => `  ${w}`), '']),
    'settings:',
    keyValues(state.settings),
    '',
    'counters:',
    keyValues(state.counters),
    '',
  ];
  if (f.processes.length === 0) {
    lines.push('no process has KSM state or mergeable memory');
  } else {
    const more = f.processes.length > shown.length ? ` (top ${shown.length} of ${f.processes.length})` : '';
    lines.push(`processes with KSM state or mergeable memory, most saved first${more}:`);
    if (shown.length > 0) {
      lines.push(
        formatTable(
          ['PID', 'NAME', 'SAVED', 'PSS', 'MERGING', 'ZERO', 'KERNEL_PROFIT'],
          shown.map((p) => [p.pid, p.vm ? `${p.name} [vm]` : p.name, `${p.thpSplitUpperBound ? '≤' : ''}${formatBytes(p.savedBytes)}`, p.pssBytes === null ? '-' : formatBytes(p.pssBytes), p.mergingPages, p.zeroPages, formatBytes(p.kernelProfitBytes)]),
        ),
      );
      lines.push('(SAVED: each process\'s share, summing to the host\'s; KERNEL_PROFIT: ksm_process_profit, which counts a shared page in every sharer)');
    }
    if (f.sharesNote !== null) lines.push(`(the SAVED shares do not sum to the host's: ${f.sharesNote})`);
  }
  if (list.unreadable > 0) {
    lines.push(`(${list.unreadable} processes could not be read: run as root to see every process)`);
  }
  if (nodes !== undefined) {
    lines.push(
      '',
      typeof nodes === 'string'
        ? `KSM pages per node: unknown (${nodes})`
        : `KSM pages per node: ${nodes.map((n) => `${n.node}:${n.ksmPages}`).join(' ')}`,
    );
  }
  lines.push('');
  if (registered.length === 0) {
    lines.push('no process registered through pagefuse is running');
  } else {
    lines.push('registered through pagefuse:');
    lines.push(
      formatTable(
        ['PID', 'NAME', 'TENANT', 'MERGING', 'NODES'],
        registered.map((r) => [
          r.pid,
          r.name,
          r.tenant ?? '-',
          r.ksm?.mergingPages ?? '-',
          r.nodes === null ? '-' : r.nodes.map((n) => `${n.node}:${n.mergingPages}`).join(' '),
        ]),
      ),
    );
    const why = [...new Set(registered.flatMap((r) => [r.ksmUnavailable, r.nodesUnavailable]).filter((w) => w !== null))];
    for (const w of why) lines.push(`(${w})`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return EXIT_OK;
}
