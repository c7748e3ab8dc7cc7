// The fleet as the planner sees it: every VM's sampled contents, which of them other VMs hold too,
// and for each VM and host how many sampled contents the VM shares with the VMs on that host.
// Built once from the hosts' sketches (exact: no estimate here, only counts of sampled values),
// then kept up to date move by move.
import type { HostSketch } from './sketch.js';

export interface ModelHost {
  name: string;
  capacityBytes: number;
}

export interface ModelVm {
  name: string;
  host: number;
  memoryBytes: number;
  pages: number;
  zeroPages: number;
  thpPages: number | null;
}

/** 53 bits of a keyed value, as a number (exact in a double; collisions at 2^-53 per pair). */
function keysOf(values: BigUint64Array, modulus: number): Float64Array {
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length * 2);
  const out = new Float64Array(values.length);
  const mask = modulus - 1;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const lo = words[2 * i];
    if ((lo & mask) !== 0) continue; // a finer sketch brought down to the fleet's modulus
    out[n++] = words[2 * i + 1] * 2 ** 21 + (lo >>> 11);
  }
  return out.subarray(0, n);
}

function lowerBound(a: Float64Array, x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class FleetModel {
  readonly modulus: number;
  readonly hosts: ModelHost[];
  readonly vms: ModelVm[];
  /** Bytes of VM memory on each host. */
  readonly used: Float64Array;
  /** Sampled contents of each VM that another VM of the fleet holds too (ids, ascending). */
  private readonly shared: Int32Array[];
  /** Sampled distinct contents of each VM (shared or not). */
  readonly sampled: Int32Array;
  /** For each shared content id, the VMs holding it (CSR). */
  private readonly holderStart: Int32Array;
  private readonly holders: Int32Array;
  /** onHost[h·S + x]: VMs on host h holding shared content x. */
  private readonly onHost: Uint16Array;
  private readonly S: number;
  /** row[v·H + h]: sampled contents v shares with the VMs on h (for h = v's host: with the others there). */
  readonly row: Int32Array;

  constructor(sketches: HostSketch[]) {
    this.modulus = Math.max(1, ...sketches.map((s) => s.modulus));
    this.hosts = sketches.map((s) => ({ name: s.host, capacityBytes: s.capacityBytes }));
    this.vms = [];
    const keys: Float64Array[] = [];
    sketches.forEach((s, h) => {
      for (const v of s.vms) {
        this.vms.push({ name: v.name, host: h, memoryBytes: v.memoryBytes, pages: v.pages, zeroPages: v.zeroPages, thpPages: v.thpPages });
        keys.push(keysOf(v.sample.values, this.modulus));
      }
    });
    const V = this.vms.length;
    const H = this.hosts.length;
    this.used = new Float64Array(H);
    for (const v of this.vms) this.used[v.host] += v.memoryBytes;
    this.sampled = Int32Array.from(keys, (k) => k.length);

    // Contents held by two VMs or more: sort every key once, keep those that repeat.
    let total = 0;
    for (const k of keys) total += k.length;
    const all = new Float64Array(total);
    let at = 0;
    for (const k of keys) {
      all.set(k, at);
      at += k.length;
    }
    all.sort();
    let s = 0;
    for (let i = 0; i < total; ) {
      let j = i + 1;
      while (j < total && all[j] === all[i]) j++;
      if (j - i >= 2) all[s++] = all[i];
      i = j;
    }
    const sharedKeys = all.slice(0, s);
    this.shared = keys.map((k) => {
      const ids: number[] = [];
      let from = 0;
      for (let i = 0; i < k.length && from < sharedKeys.length; i++) {
        from = lowerBound(sharedKeys, k[i]);
        if (from < sharedKeys.length && sharedKeys[from] === k[i]) ids.push(from);
      }
      return Int32Array.from(ids);
    });
    const S = sharedKeys.length;
    this.holderStart = new Int32Array(S + 1);
    for (const ids of this.shared) for (const x of ids) this.holderStart[x + 1]++;
    for (let x = 0; x < S; x++) this.holderStart[x + 1] += this.holderStart[x];
    this.holders = new Int32Array(this.holderStart[S]);
    const fill = this.holderStart.slice(0, S);
    this.shared.forEach((ids, v) => {
      for (const x of ids) this.holders[fill[x]++] = v;
    });
    this.S = S;
    this.onHost = new Uint16Array(H * S);
    for (let x = 0; x < S; x++) for (let i = this.holderStart[x]; i < this.holderStart[x + 1]; i++) this.onHost[this.vms[this.holders[i]].host * S + x]++;
    this.row = new Int32Array(V * H);
    this.buildRows();
  }

  /**
   * Fills `row`. Contents are grouped by the set of hosts holding them, so a template's pages,
   * present on the same hosts, are added to a VM's row once per group rather than once per page;
   * a group on most hosts is added as "everywhere but these".
   */
  private buildRows(): void {
    const H = this.hosts.length;
    const S = this.holderStart.length - 1;
    const classOf = new Int32Array(S);
    const classes = new Map<string, number>();
    const classHosts: Int32Array[] = [];
    const mark = new Int32Array(H).fill(-1);
    const hostsBuf: number[] = [];
    for (let x = 0; x < S; x++) {
      hostsBuf.length = 0;
      for (let i = this.holderStart[x]; i < this.holderStart[x + 1]; i++) {
        const h = this.vms[this.holders[i]].host;
        if (mark[h] !== x) {
          mark[h] = x;
          hostsBuf.push(h);
        }
      }
      hostsBuf.sort((a, b) => a - b);
      const key = hostsBuf.join(',');
      let c = classes.get(key);
      if (c === undefined) {
        c = classHosts.length;
        classes.set(key, c);
        classHosts.push(Int32Array.from(hostsBuf));
      }
      classOf[x] = c;
    }
    const C = classHosts.length;
    const perClass = new Int32Array(C);
    const touched: number[] = [];
    const inClass = new Uint8Array(H);
    for (let v = 0; v < this.vms.length; v++) {
      const base = v * H;
      touched.length = 0;
      for (const x of this.shared[v]) {
        const c = classOf[x];
        if (perClass[c]++ === 0) touched.push(c);
      }
      let everywhere = 0;
      for (const c of touched) {
        const k = perClass[c];
        perClass[c] = 0;
        const hs = classHosts[c];
        if (hs.length * 2 <= H) {
          for (const h of hs) this.row[base + h] += k;
        } else {
          everywhere += k;
          for (const h of hs) inClass[h] = 1;
          for (let h = 0; h < H; h++) {
            if (inClass[h] === 0) this.row[base + h] -= k;
            else inClass[h] = 0;
          }
        }
      }
      if (everywhere !== 0) for (let h = 0; h < H; h++) this.row[base + h] += everywhere;
      this.row[base + this.vms[v].host] = 0;
    }
    // At a VM's own host, count only what another VM there holds.
    const onHost = new Int32Array(H);
    for (let x = 0; x < S; x++) {
      const a = this.holderStart[x];
      const b = this.holderStart[x + 1];
      for (let i = a; i < b; i++) onHost[this.vms[this.holders[i]].host]++;
      for (let i = a; i < b; i++) {
        const v = this.holders[i];
        if (onHost[this.vms[v].host] >= 2) this.row[v * H + this.vms[v].host]++;
      }
      for (let i = a; i < b; i++) onHost[this.vms[this.holders[i]].host] = 0;
    }
  }

  /** Sampled contents v shares with the other VMs of its own host. */
  own(v: number): number {
    return this.row[v * this.hosts.length + this.vms[v].host];
  }

  /** Sampled contents v shares with the VMs on host h (other than v). */
  shares(v: number, h: number): number {
    return this.row[v * this.hosts.length + h];
  }

  /** How many VMs other than `except` (which holds x) on host h hold content x. */
  private countOn(x: number, h: number, except: number): number {
    return this.onHost[h * this.S + x] - (this.vms[except].host === h ? 1 : 0);
  }

  /** The one VM other than `except` on host h holding x (when countOn says there is exactly one). */
  private oneOn(x: number, h: number, except: number): number {
    for (let i = this.holderStart[x]; i < this.holderStart[x + 1]; i++) {
      const u = this.holders[i];
      if (u !== except && this.vms[u].host === h) return u;
    }
    return -1;
  }

  private holds(v: number, x: number): boolean {
    const a = this.shared[v];
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (a[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo < a.length && a[lo] === x;
  }

  /**
   * What moving v to host `to` changes, in sampled contents: `plus` it would share at `to` and
   * does not share where it is, `minus` it shares where it is and would not at `to`. The gain is
   * plus − minus; only these contents carry sampling noise (the ones shared at both cancel).
   * `without`: a VM on `to` that leaves it at the same time (a swap).
   */
  difference(v: number, to: number, without = -1): { plus: number; minus: number } {
    const from = this.vms[v].host;
    const gone = without >= 0 && this.vms[without].host === to;
    let plus = 0;
    let minus = 0;
    for (const x of this.shared[v]) {
      let n = this.onHost[to * this.S + x];
      if (gone && n > 0 && this.holds(without, x)) n--;
      const there = n > 0;
      const here = this.countOn(x, from, v) > 0;
      if (there && !here) plus++;
      else if (here && !there) minus++;
    }
    return { plus, minus };
  }

  /**
   * VMs that hold nearly everything v shares (at least `fraction` of the smaller of the two shared
   * sets): its siblings from one template. Found through v's rarest contents, so a content every
   * VM of the fleet holds costs nothing here.
   */
  siblings(v: number, fraction: number, rareHolders = 64): number[] {
    const seen = new Set<number>();
    for (const x of this.shared[v]) {
      if (this.holderStart[x + 1] - this.holderStart[x] > rareHolders) continue;
      for (let i = this.holderStart[x]; i < this.holderStart[x + 1]; i++) if (this.holders[i] !== v) seen.add(this.holders[i]);
    }
    const out: number[] = [];
    for (const u of seen) {
      const need = fraction * Math.min(this.shared[u].length, this.shared[v].length);
      if (need > 0 && this.common(u, v) >= need) out.push(u);
    }
    return out;
  }

  /** Sampled contents both u and v hold (of those another VM holds too). */
  common(u: number, v: number): number {
    const a = this.shared[u];
    const b = this.shared[v];
    let n = 0;
    for (let i = 0, j = 0; i < a.length && j < b.length; ) {
      if (a[i] < b[j]) i++;
      else if (a[i] > b[j]) j++;
      else {
        n++;
        i++;
        j++;
      }
    }
    return n;
  }

  /**
   * Sampled contents u (on host a) and w (on host b) would stop sharing if they traded places:
   * what u shares with b only through w, and what w shares with a only through u.
   */
  swapLoss(u: number, w: number): number {
    const a = this.vms[u].host;
    const b = this.vms[w].host;
    const su = this.shared[u];
    const sw = this.shared[w];
    let loss = 0;
    for (let i = 0, j = 0; i < su.length && j < sw.length; ) {
      if (su[i] < sw[j]) i++;
      else if (su[i] > sw[j]) j++;
      else {
        if (this.countOn(su[i], b, w) === 0) loss++;
        if (this.countOn(su[i], a, u) === 0) loss++;
        i++;
        j++;
      }
    }
    return loss;
  }

  /**
   * Moves VM v to host `to`, updating every row it changes; returns the VMs whose rows changed.
   * Exact: a VM leaving is a subtraction of its contents, arriving an addition.
   */
  move(v: number, to: number): Set<number> {
    const H = this.hosts.length;
    const from = this.vms[v].host;
    const changed = new Set<number>([v]);
    const ownBefore = this.row[v * H + from];
    const sharesAtTarget = this.row[v * H + to];
    for (const x of this.shared[v]) {
      const left = this.countOn(x, from, v);
      if (left === 0) {
        // x is gone from `from`: everyone holding it elsewhere shares one content less with `from`.
        for (let i = this.holderStart[x]; i < this.holderStart[x + 1]; i++) {
          const u = this.holders[i];
          if (u !== v) {
            this.row[u * H + from]--;
            changed.add(u);
          }
        }
      } else if (left === 1) {
        const one = this.oneOn(x, from, v);
        this.row[one * H + from]--; // the last holder on `from` no longer shares it there
        changed.add(one);
      }
      const there = this.countOn(x, to, v);
      if (there === 0) {
        for (let i = this.holderStart[x]; i < this.holderStart[x + 1]; i++) {
          const u = this.holders[i];
          if (u !== v) {
            this.row[u * H + to]++;
            changed.add(u);
          }
        }
      } else if (there === 1) {
        const one = this.oneOn(x, to, v);
        this.row[one * H + to]++;
        changed.add(one);
      }
      this.onHost[from * this.S + x]--;
      this.onHost[to * this.S + x]++;
    }
    this.row[v * H + from] = ownBefore;
    this.row[v * H + to] = sharesAtTarget;
    this.used[from] -= this.vms[v].memoryBytes;
    this.used[to] += this.vms[v].memoryBytes;
    this.vms[v].host = to;
    return changed;
  }
}
