// pagefuse numa — the host's NUMA nodes, their CPUs, memory and KSM pages, and the distances between them.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatBytes, formatTable, parse, printJson } from './common.js';
import { formatIdList, numaBackend, numaTopology } from '../numa/topology.js';
import { ksmPagesByNode } from '../numa/ksm-nodes.js';
import { mergeAcrossNodesWarning } from '../numa/warnings.js';
import { isSystemError } from '../errors.js';

const HELP = `usage: pagefuse numa [--json] [--sysfs-root DIR] [--proc-root DIR]

Prints each NUMA node's CPUs, memory total and free, and the KSM pages its memory holds (root only),
then the node distance matrix. Warns when merge_across_nodes=1 on a host with several memory nodes.

  --json             JSON: { nodes: [{ id, cpus, mem_total, mem_free, ksm_pages }], distances, ... }
  --sysfs-root DIR   read the topology from this sysfs tree instead of the host's (default /sys)
  --proc-root DIR    read kpageflags from this procfs tree (default /proc)
`;

/** KSM pages per node id, or why this user or kernel cannot tell. */
async function ksmPages(procRoot: string, sysfsRoot: string): Promise<Map<number, number> | string> {
  try {
    return new Map((await ksmPagesByNode({ procRoot, sysfsRoot })).map((n) => [n.node, n.ksmPages]));
  } catch (err) {
    for (const code of ['EACCES', 'EPERM', 'ENOTSUP', 'ENOENT']) {
      if (isSystemError(err, code)) return (err as Error).message.split('\n')[0];
    }
    throw err;
  }
}

async function mergeAcrossNodes(sysfsRoot: string): Promise<boolean | undefined> {
  try {
    return (await readFile(join(sysfsRoot, 'kernel/mm/ksm/merge_across_nodes'), 'utf8')).trim() === '1';
  } catch (err) {
    if (isSystemError(err, 'ENOENT')) return undefined;
    throw err;
  }
}

export async function run(args: string[]): Promise<number> {
  const { values } = parse('numa', args, {
    options: {
      json: { type: 'boolean' },
      'sysfs-root': { type: 'string' },
      'proc-root': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const sysfsRoot = values['sysfs-root'];
  const procRoot = values['proc-root'] ?? '/proc';
  const topology = numaTopology(sysfsRoot === undefined ? {} : { sysfsRoot });
  const ksm = await ksmPages(procRoot, sysfsRoot ?? '/sys');
  const across = await mergeAcrossNodes(sysfsRoot ?? '/sys');
  const warning = across === undefined ? undefined : mergeAcrossNodesWarning(topology, across);

  if (values.json) {
    printJson({
      nodes: topology.nodes.map((n) => ({
        id: n.id,
        cpus: n.cpus,
        mem_total: n.memTotal,
        mem_free: n.memFree,
        ksm_pages: typeof ksm === 'string' ? null : (ksm.get(n.id) ?? null),
      })),
      distances: topology.distances,
      merge_across_nodes: across === undefined ? null : Number(across),
      source: sysfsRoot === undefined ? numaBackend() : 'sysfs',
      warnings: warning === undefined ? [] : [warning],
    });
    return 0;
  }
  const ids = topology.nodes.map((n) => String(n.id));
  const lines = [
    formatTable(
      ['node', 'cpus', 'mem_total', 'mem_free', 'ksm_pages'],
      topology.nodes.map((n) => [
        String(n.id),
        formatIdList(n.cpus) || '-',
        formatBytes(n.memTotal),
        formatBytes(n.memFree),
        typeof ksm === 'string' ? '-' : (ksm.get(n.id) ?? '-'),
      ]),
    ),
    '',
    'distances',
    formatTable(['node', ...ids], topology.distances.map((row, i) => [ids[i], ...row])),
  ];
  if (typeof ksm === 'string') lines.push('', `ksm_pages: unknown: ${ksm}`);
  if (warning !== undefined) lines.push('', `warning: ${warning}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
