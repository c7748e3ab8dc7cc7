// The command table: one entry per command, each module loaded only when it runs.
import type { CliContext } from './common.js';

export interface Command {
  run(args: string[], context?: CliContext): Promise<number>;
}

export const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  top: { summary: 'live view of KSM savings per host, VM and NUMA node', load: () => import('./top.js') },
  serve: { summary: 'Prometheus metrics (node_ksmd_* and pagefuse_*) over HTTP', load: () => import('./serve.js') },
  report: { summary: 'self-contained HTML page of savings, ksmd CPU, VMs and sharing', load: () => import('./report.js') },
  bench: { summary: 'measure hashing, the scan estimate vs ksmd, and the tuner policies on this host', load: () => import('./bench.js') },
  status: { summary: 'knobs, counters, savings and the processes that merge', load: () => import('./status.js') },
  set: { summary: 'write KSM knobs (KEY=VALUE…), all or nothing', load: () => import('./set.js') },
  start: { summary: 'start ksmd (run=1)', load: () => import('./start.js') },
  stop: { summary: 'stop ksmd, keeping merged pages (run=0)', load: () => import('./stop.js') },
  scan: { summary: 'estimate what KSM would save on processes, before it runs', load: () => import('./scan.js') },
  unmerge: { summary: 'stop ksmd and split every KSM page (run=2)', load: () => import('./unmerge.js') },
  numa: { summary: 'NUMA nodes: CPUs, memory, KSM pages, distances', load: () => import('./numa.js') },
  exec: { summary: 'run a command bound to a NUMA node, with KSM merging all its memory', load: () => import('./exec.js') },
  tune: { summary: 'drive ksmd: scan first, merge second (replaces ksmtuned)', load: () => import('./tune.js') },
  plan: { summary: 'plan migrations that raise KSM savings across hosts (sketches from serve); scheduler extender', load: () => import('./plan.js') },
  audit: { summary: 'KSM risks on this host: un-share exposure, tenants, NUMA, ksmtuned, strays', load: () => import('./audit.js') },
};
