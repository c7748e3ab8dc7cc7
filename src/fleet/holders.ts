// Who holds each shared content, written so a migration can update the fleet model cheaply. The VMs
// made from one template layer hold nearly the same contents (each page resident in most of them),
// so a content's holders are written as its group (the VMs holding any content of that layer) minus
// the few members that lack it. When a VM leaves the last host holding 200 contents of its
// version, 1,250 VMs each lose 200 shared contents there: with groups that costs one pass over the
// group and the missing members of each content (a few percent) instead of 250,000 updates.
// Exact: every content's holders are its group minus its misses, or listed directly.

export class HolderIndex {
  /** Per content: its group, or -1 when its holders are listed directly (see `holdersOf`). */
  readonly groupOf: Int32Array;
  /** Members of each group (CSR, ascending). */
  readonly groupStart: Int32Array;
  readonly groupVms: Int32Array;
  /** Per content written against its group: the members that do not hold it (CSR, ascending). */
  readonly missStart: Int32Array;
  readonly missVms: Int32Array;

  /**
   * `holderStart`/`holders`: each content's holders (CSR, ascending VM ids). Contents are grouped
   * by their first holder and the power of two of their holder count (a layer's contents mostly
   * share both; an OS layer and a version layer starting at the same VM are told apart by size).
   */
  constructor(
    readonly holderStart: Int32Array,
    readonly holders: Int32Array,
    vmCount: number,
  ) {
    const S = holderStart.length - 1;
    const groupOfKey = new Map<number, number>();
    const groupOf = new Int32Array(S);
    for (let x = 0; x < S; x++) {
      const n = holderStart[x + 1] - holderStart[x];
      const key = holders[holderStart[x]] * 32 + (31 - Math.clz32(n));
      let g = groupOfKey.get(key);
      if (g === undefined) {
        g = groupOfKey.size;
        groupOfKey.set(key, g);
      }
      groupOf[x] = g;
    }
    const G = groupOfKey.size;
    // The contents of each group, then each group's members: the union of its contents' holders.
    const contentStart = new Int32Array(G + 1);
    for (let x = 0; x < S; x++) contentStart[groupOf[x] + 1]++;
    for (let g = 0; g < G; g++) contentStart[g + 1] += contentStart[g];
    const contents = new Int32Array(S);
    const at = contentStart.slice(0, G);
    for (let x = 0; x < S; x++) contents[at[groupOf[x]]++] = x;
    const mark = new Int32Array(vmCount).fill(-1);
    const members: number[] = [];
    const groupStart = new Int32Array(G + 1);
    const groupVms: number[] = [];
    const missStart = new Int32Array(S + 1);
    const missCount = new Int32Array(S);
    for (let g = 0; g < G; g++) {
      members.length = 0;
      for (let c = contentStart[g]; c < contentStart[g + 1]; c++) {
        const x = contents[c];
        for (let i = holderStart[x]; i < holderStart[x + 1]; i++) {
          const u = holders[i];
          if (mark[u] !== g) {
            mark[u] = g;
            members.push(u);
          }
        }
      }
      members.sort((a, b) => a - b);
      groupStart[g + 1] = groupStart[g] + members.length;
      for (const u of members) groupVms.push(u);
      // Written against the group only when that is shorter than listing the holders.
      for (let c = contentStart[g]; c < contentStart[g + 1]; c++) {
        const x = contents[c];
        const n = holderStart[x + 1] - holderStart[x];
        const misses = members.length - n;
        if (misses * 2 < n) missCount[x] = misses;
        else groupOf[x] = -1;
      }
    }
    for (let x = 0; x < S; x++) missStart[x + 1] = missStart[x] + missCount[x];
    const missVms = new Int32Array(missStart[S]);
    for (let x = 0; x < S; x++) {
      const g = groupOf[x];
      if (g < 0) continue;
      // Members not among x's holders (both ascending).
      let out = missStart[x];
      let i = holderStart[x];
      for (let k = groupStart[g]; k < groupStart[g + 1]; k++) {
        const u = groupVms[k];
        while (i < holderStart[x + 1] && holders[i] < u) i++;
        if (i < holderStart[x + 1] && holders[i] === u) continue;
        missVms[out++] = u;
      }
    }
    this.groupOf = groupOf;
    this.groupStart = groupStart;
    this.groupVms = Int32Array.from(groupVms);
    this.missStart = missStart;
    this.missVms = missVms;
  }

  /** The VMs holding content x, ascending, as this index writes them (for checking it). */
  holdersOf(x: number): number[] {
    const g = this.groupOf[x];
    if (g < 0) return Array.from(this.holders.subarray(this.holderStart[x], this.holderStart[x + 1]));
    const missing = new Set(this.missVms.subarray(this.missStart[x], this.missStart[x + 1]));
    return Array.from(this.groupVms.subarray(this.groupStart[g], this.groupStart[g + 1])).filter((u) => !missing.has(u));
  }
}
