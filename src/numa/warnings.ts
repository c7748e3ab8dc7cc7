// What a NUMA host's KSM settings cost, said plainly.
import type { NumaTopology } from './topology.js';

/**
 * The warning for merge_across_nodes=1 on a host with more than one node holding memory: KSM then
 * keeps one copy of a page for all nodes, and every process on the other nodes reads it remotely.
 * Undefined when there is nothing to warn about.
 */
export function mergeAcrossNodesWarning(topology: NumaTopology, mergeAcrossNodes: boolean): string | undefined {
  if (!mergeAcrossNodes) return undefined;
  const withMemory = topology.nodes.flatMap((n, i) => (n.memTotal > 0 ? [i] : []));
  if (withMemory.length < 2) return undefined;
  let local = Number.POSITIVE_INFINITY;
  let remote = 0;
  for (const i of withMemory) {
    for (const j of withMemory) {
      const d = topology.distances[i]?.[j] ?? 0;
      if (i === j) local = Math.min(local, d);
      else remote = Math.max(remote, d);
    }
  }
  const cost = remote > 0 && Number.isFinite(local) && local > 0
    ? ` (node distance up to ${remote} against ${local} for local memory)`
    : '';
  return (
    `merge_across_nodes=1 on a host with ${withMemory.length} memory nodes: KSM may merge a page onto a ` +
    `remote node, and every process on the other nodes then reads it remotely${cost}; ` +
    `set it to 0 with 'pagefuse set merge_across_nodes=0 --unmerge-first'`
  );
}
