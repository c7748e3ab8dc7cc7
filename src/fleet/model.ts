// The fleet as the planner sees it: every VM's sampled contents, which of them other VMs hold too,
// and for each VM and host how many sampled contents the VM shares with the VMs on that host.
// Built once from the hosts' sketches (exact: no estimate here, only counts of sampled values),
// then kept up to date move by move.
import type { HostSketch } from './sketch.js';
import { HolderIndex } from './holders.js';

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

/**
 * 53 bits of a keyed value, as a number (exact in a double; collisions at 2^-53 per pair), each once. Two values
 * of one VM that differ only below bit 11 are one key: kept twice, the VM was its own co-holder, and the holder
 * index sized a list at −1 ('Invalid typed array length'), failing the whole plan over one host's sketch (a peer
 * can send such a pair; an honest VM of 4 GiB has about one chance in 20,000 at M = 1). The values are ascending
 * (the decoder checks), so equal keys are neighbours.
 */
function keysOf(values: BigUint64Array, modulus: number): Float64Array {
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length * 2);
  const out = new Float64Array(values.length);
  const mask = modulus - 1;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const lo = words[2 * i];
    if ((lo & mask) !== 0) continue; // a finer sketch brought down to the fleet's modulus
    const key = words[2 * i + 1] * 2 ** 21 + (lo >>> 11);
    if (n > 0 && out[n - 1] === key) continue;
    out[n++] = key;
  }
  return out.subarray(0, n);
}

/**
 * What the model is built from: the hosts, the VMs (numbered host by host) and each VM's sampled
 * values brought to the fleet's modulus as keys (`keysOf`), all of them in one array: VM v's keys
 * are keys[keyStart[v] .. keyStart[v + 1]). A planning thread is handed this with `keys` in shared
 * memory, so it builds its model without a copy of the sketches and without deriving the keys again.
 */
export interface FleetInput {
  modulus: number;
  hosts: ModelHost[];
  vms: ModelVm[];
  keys: Float64Array;
  keyStart: Int32Array;
}

/** The model's input from the hosts' sketches; `shared`: the keys in a SharedArrayBuffer (for another thread). */
export function fleetInput(sketches: HostSketch[], shared = false): FleetInput {
  const modulus = Math.max(1, ...sketches.map((s) => s.modulus));
  const hosts = sketches.map((s) => ({ name: s.host, capacityBytes: s.capacityBytes }));
  const vms: ModelVm[] = [];
  const perVm: Float64Array[] = [];
  sketches.forEach((s, h) => {
    for (const v of s.vms) {
      vms.push({ name: v.name, host: h, memoryBytes: v.memoryBytes, pages: v.pages, zeroPages: v.zeroPages, thpPages: v.thpPages });
      perVm.push(keysOf(v.sample.values, modulus));
    }
  });
  const keyStart = new Int32Array(vms.length + 1);
  perVm.forEach((k, v) => (keyStart[v + 1] = keyStart[v] + k.length));
  const total = keyStart[vms.length];
  const keys = new Float64Array(shared ? new SharedArrayBuffer(total * 8) : new ArrayBuffer(total * 8));
  perVm.forEach((k, v) => keys.set(k, keyStart[v]));
  return { modulus, hosts, vms, keys, keyStart };
}

/** Slot of key k in an open-addressed table of `mask + 1` slots (keys are keyed hashes: their top bits are uniform). */
function slot(k: number, mask: number): number {
  return Math.floor(k / 2 ** 21) & mask;
}

function tableSize(n: number): number {
  let size = 1024;
  while (size < 2 * n) size *= 2;
  return size;
}

/**
 * The contents two VMs or more hold, ascending, and each VM's as ids into them (ascending too, as
 * the VMs' keys are). The keys are split by their top bits into parts that are counted one at a
 * time in a hash table small enough to stay in cache (sorting 20 million keys took seconds).
 */
function sharedContents(keys: Float64Array[]): { sharedKeys: Float64Array; shared: Int32Array[] } {
  let total = 0;
  for (const k of keys) total += k.length;
  const PARTS = 64;
  const partOf = (k: number): number => Math.floor(k / 2 ** 47); // keys are below 2^53
  const start = new Int32Array(PARTS + 1);
  for (const k of keys) for (let i = 0; i < k.length; i++) start[partOf(k[i]) + 1]++;
  for (let p = 0; p < PARTS; p++) start[p + 1] += start[p];
  const parts = new Float64Array(total);
  const fill = start.slice(0, PARTS);
  for (const k of keys) for (let i = 0; i < k.length; i++) parts[fill[partOf(k[i])]++] = k[i];
  let largest = 0;
  for (let p = 0; p < PARTS; p++) largest = Math.max(largest, start[p + 1] - start[p]);
  const size = tableSize(largest);
  const mask = size - 1;
  const table = new Float64Array(size);
  const count = new Uint8Array(size);
  const found: number[] = [];
  for (let p = 0; p < PARTS; p++) {
    table.fill(-1);
    count.fill(0);
    for (let i = start[p]; i < start[p + 1]; i++) {
      const k = parts[i];
      let j = slot(k, mask);
      for (;;) {
        const t = table[j];
        if (t === k) {
          if (count[j] === 1) {
            count[j] = 2;
            found.push(k);
          }
          break;
        }
        if (t === -1) {
          table[j] = k;
          count[j] = 1;
          break;
        }
        j = (j + 1) & mask;
      }
    }
  }
  const sharedKeys = Float64Array.from(found).sort();
  // Key → id, then every VM's keys looked up.
  const idSize = tableSize(sharedKeys.length);
  const idMask = idSize - 1;
  const idKeys = new Float64Array(idSize).fill(-1);
  const ids = new Int32Array(idSize);
  sharedKeys.forEach((k, id) => {
    let j = slot(k, idMask);
    while (idKeys[j] !== -1) j = (j + 1) & idMask;
    idKeys[j] = k;
    ids[j] = id;
  });
  const buf = new Int32Array(keys.reduce((n, k) => Math.max(n, k.length), 0));
  const shared = keys.map((k) => {
    let n = 0;
    for (let i = 0; i < k.length; i++) {
      let j = slot(k[i], idMask);
      for (;;) {
        const t = idKeys[j];
        if (t === k[i]) {
          buf[n++] = ids[j];
          break;
        }
        if (t === -1) break;
        j = (j + 1) & idMask;
      }
    }
    return buf.slice(0, n);
  });
  return { sharedKeys, shared };
}

export class FleetModel {
  readonly modulus: number;
  readonly hosts: ModelHost[];
  readonly vms: ModelVm[];
  /** Bytes of VM memory on each host. */
  readonly used: Float64Array;
  /** The VMs on each host. */
  private readonly members: number[][];
  /** Each VM's host (as vms[v].host, in a typed array for the planner's scans). */
  readonly hostOf: Int32Array;
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
  /**
   * cell[h·V + v]: sampled contents v shares with the VMs on h (for h = v's host: with the others
   * there): v's row is the cells v, V + v, 2V + v, … Stored host by host because a move changes
   * two hosts' cells of the ~2,000 VMs it concerns, which then lie in two columns of 80 KB (at
   * 20,000 VMs) instead of 4,000 places scattered over an 80 MB table.
   */
  private readonly cell: Int32Array;
  /** ownOf[v] = cell[v's host·V + v], kept apart so the planner reads it without touching the table. */
  private readonly ownOf: Int32Array;
  /**
   * Each VM's best other host: the h ≠ its host with the most shared (bestCount), the lowest such h
   * on ties (-1 when there is no other host), kept up to date by moves; `bestStale[v]` when a move
   * lowered that host's count or moved v, so the next `bestElsewhere(v)` scans v's row again.
   */
  private readonly bestHost: Int32Array;
  private readonly bestCount: Int32Array;
  private readonly bestStale: Uint8Array;
  /** The VMs whose rows the last move changed (`changedCount` of them), and a per-VM stamp that dedupes them. */
  private readonly changedList: Int32Array;
  private changedCount = 0;
  private readonly stamp: Uint32Array;
  private epoch = 0;
  /** `siblings`' scratch: seenAt[u] = seenMark when u was met in the current call. */
  private seenAt: Int32Array | null = null;
  private seenMark = 0;
  /** Each content's holders by group (shared by clones: holders never change). */
  private readonly index: HolderIndex;
  /** A move's scratch: per VM, the change to its row at the source and the target; per group, how many of its contents arrive or leave. */
  private readonly dFrom: Int32Array;
  private readonly dTo: Int32Array;
  private readonly inD: Uint8Array;
  private readonly dList: Int32Array;
  private readonly kFrom: Int32Array;
  private readonly kTo: Int32Array;
  /** A move's scratch: how many VMs dList holds, and the groups whose counts kFrom/kTo it changed. */
  private dCount = 0;
  private readonly movedGroups: number[] = [];

  constructor(fleet: HostSketch[] | FleetInput);
  constructor(fleet: HostSketch[], from: FleetModel);
  constructor(fleet: HostSketch[] | FleetInput, from?: FleetModel) {
    if (from !== undefined) {
      // A copy to plan on: what moves change is copied, what they never change is shared.
      this.modulus = from.modulus;
      this.hosts = from.hosts;
      this.vms = from.vms.map((v) => ({ ...v }));
      this.used = from.used.slice();
      this.members = from.members.map((m) => m.slice());
      this.hostOf = from.hostOf.slice();
      this.shared = from.shared;
      this.sampled = from.sampled;
      this.holderStart = from.holderStart;
      this.holders = from.holders;
      this.onHost = from.onHost.slice();
      this.S = from.S;
      this.cell = from.cell.slice();
      this.ownOf = from.ownOf.slice();
      this.bestHost = from.bestHost.slice();
      this.bestCount = from.bestCount.slice();
      this.bestStale = from.bestStale.slice();
      this.changedList = new Int32Array(this.vms.length);
      this.stamp = new Uint32Array(this.vms.length);
      this.index = from.index;
      [this.dFrom, this.dTo, this.inD, this.dList, this.kFrom, this.kTo] = this.scratch();
      return;
    }
    const input = Array.isArray(fleet) ? fleetInput(fleet) : fleet;
    this.modulus = input.modulus;
    this.hosts = input.hosts;
    this.vms = input.vms;
    const keys = Array.from(input.vms, (_, v) => input.keys.subarray(input.keyStart[v], input.keyStart[v + 1]));
    const V = this.vms.length;
    const H = this.hosts.length;
    this.used = new Float64Array(H);
    this.members = Array.from({ length: H }, () => []);
    this.hostOf = new Int32Array(V);
    this.vms.forEach((v, i) => {
      this.used[v.host] += v.memoryBytes;
      this.members[v.host].push(i);
      this.hostOf[i] = v.host;
    });
    this.sampled = Int32Array.from(keys, (k) => k.length);

    // Contents held by two VMs or more.
    const { sharedKeys, shared } = sharedContents(keys);
    this.shared = shared;
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
    // VM by VM (a host's VMs are numbered together, so this walks one host's counts at a time).
    this.shared.forEach((ids, v) => {
      const at = this.hostOf[v] * S;
      for (let i = 0; i < ids.length; i++) this.onHost[at + ids[i]]++;
    });
    this.cell = new Int32Array(V * H);
    this.ownOf = new Int32Array(V);
    this.bestHost = new Int32Array(V);
    this.bestCount = new Int32Array(V);
    this.bestStale = new Uint8Array(V);
    this.changedList = new Int32Array(V);
    this.stamp = new Uint32Array(V);
    this.index = new HolderIndex(this.holderStart, this.holders, V);
    [this.dFrom, this.dTo, this.inD, this.dList, this.kFrom, this.kTo] = this.scratch();
    this.buildRows();
  }

  private scratch(): [Int32Array, Int32Array, Uint8Array, Int32Array, Int32Array, Int32Array] {
    const V = this.vms.length;
    const G = this.index.groupStart.length - 1;
    return [new Int32Array(V), new Int32Array(V), new Uint8Array(V), new Int32Array(V), new Int32Array(G), new Int32Array(G)];
  }

  /** A copy of the model to plan on (moves on the copy leave this one as it is). */
  clone(): FleetModel {
    return new FleetModel([], this);
  }

  /**
   * Fills the cells from the contents' host sets (see hostIndex). VMs are visited in an order that puts
   * VMs holding nearly the same contents next to each other, and a VM's row is the previous VM's
   * row plus the host sets of the contents only it holds, minus those of the contents only the
   * previous one held: for siblings of a template that is a few contents instead of all of them.
   */
  private buildRows(): void {
    const H = this.hosts.length;
    const V = this.vms.length;
    const { start, list, most } = this.hostIndex();
    // acc[h] + base: contents of the current VM some VM on h holds (the VM itself included).
    const acc = new Int32Array(H);
    let base = 0;
    const add = (x: number, sign: number): void => {
      if (most[x] === 1) {
        base += sign;
        for (let i = start[x]; i < start[x + 1]; i++) acc[list[i]] -= sign;
      } else {
        for (let i = start[x]; i < start[x + 1]; i++) acc[list[i]] += sign;
      }
    };
    const cost = (x: number): number => start[x + 1] - start[x] + 1;
    // Rows are gathered BATCH VMs at a time and written host by host: written one VM at a time,
    // each of a row's H cells lands in another 80 KB column (a TLB miss each).
    const BATCH = 64;
    const batch = new Int32Array(BATCH * H);
    const batchVms = new Int32Array(BATCH);
    let inBatch = 0;
    const flush = (): void => {
      for (let h = 0; h < H; h++) for (let k = 0; k < inBatch; k++) this.cell[h * V + batchVms[k]] = batch[k * H + h];
      inBatch = 0;
    };
    let prev: Int32Array | null = null;
    for (const v of this.similarOrder()) {
      const cur = this.shared[v];
      // The previous row is worth starting from when the contents that differ cost less than all of cur's.
      let full = 0;
      for (let i = 0; i < cur.length; i++) full += cost(cur[i]);
      let delta = 0;
      if (prev !== null) {
        for (let i = 0, j = 0; (i < cur.length || j < prev.length) && delta < full; ) {
          if (j >= prev.length || (i < cur.length && cur[i] < prev[j])) delta += cost(cur[i++]);
          else if (i >= cur.length || prev[j] < cur[i]) delta += cost(prev[j++]);
          else {
            i++;
            j++;
          }
        }
      }
      if (prev === null || delta >= full) {
        acc.fill(0);
        base = 0;
        for (let i = 0; i < cur.length; i++) add(cur[i], 1);
      } else {
        for (let i = 0, j = 0; i < cur.length || j < prev.length; ) {
          if (j >= prev.length || (i < cur.length && cur[i] < prev[j])) add(cur[i++], 1);
          else if (i >= cur.length || prev[j] < cur[i]) add(prev[j++], -1);
          else {
            i++;
            j++;
          }
        }
      }
      prev = cur;
      const home = this.hostOf[v];
      const at = inBatch * H;
      batchVms[inBatch++] = v;
      let best = -1;
      for (let h = 0; h < H; h++) {
        batch[at + h] = acc[h] + base;
        if (h !== home && (best < 0 || acc[h] > acc[best])) best = h;
      }
      this.bestHost[v] = best;
      this.bestCount[v] = best < 0 ? 0 : acc[best] + base;
      // At a VM's own host, count only what another VM there holds.
      let own = 0;
      for (let i = 0; i < cur.length; i++) if (this.onHost[home * this.S + cur[i]] >= 2) own++;
      batch[at + home] = own;
      this.ownOf[v] = own;
      if (inBatch === BATCH) flush();
    }
    flush();
  }

  /**
   * The hosts holding each shared content (CSR over `start`/`list`), written as the hosts that do
   * not hold it when that is the shorter list (`most[x]` = 1): a content of a popular OS is on
   * nearly every host, and costs nothing to add to a row then.
   */
  private hostIndex(): { start: Int32Array; list: Int32Array; most: Uint8Array } {
    const H = this.hosts.length;
    const S = this.S;
    const start = new Int32Array(S + 1);
    const most = new Uint8Array(S);
    const mark = new Int32Array(H).fill(-1);
    for (let x = 0; x < S; x++) {
      let n = 0;
      for (let i = this.holderStart[x]; i < this.holderStart[x + 1]; i++) {
        const h = this.hostOf[this.holders[i]];
        if (mark[h] !== x) {
          mark[h] = x;
          n++;
        }
      }
      most[x] = n * 2 > H ? 1 : 0;
      start[x + 1] = start[x] + (most[x] === 1 ? H - n : n);
    }
    const list = new Int32Array(start[S]);
    mark.fill(-1);
    for (let x = 0; x < S; x++) {
      let at = start[x];
      if (most[x] === 0) {
        for (let i = this.holderStart[x]; i < this.holderStart[x + 1]; i++) {
          const h = this.hostOf[this.holders[i]];
          if (mark[h] !== x) {
            mark[h] = x;
            list[at++] = h;
          }
        }
      } else {
        for (let i = this.holderStart[x]; i < this.holderStart[x + 1]; i++) mark[this.hostOf[this.holders[i]]] = x;
        for (let h = 0; h < H; h++) if (mark[h] !== x) list[at++] = h;
      }
    }
    return { start, list, most };
  }

  /**
   * VMs ordered so that those holding nearly the same contents come together: by the smallest id
   * among each VM's rarest contents (held by at most twice as many VMs as its rarest one: the
   * contents that tell a template's siblings from the rest), then by its smallest id overall. Only
   * speed depends on this order, never a result.
   */
  private similarOrder(): Int32Array {
    const V = this.vms.length;
    const rare = new Float64Array(V);
    const first = new Float64Array(V);
    for (let v = 0; v < V; v++) {
      const ids = this.shared[v];
      let fewest = Infinity;
      for (let i = 0; i < ids.length; i++) fewest = Math.min(fewest, this.holderStart[ids[i] + 1] - this.holderStart[ids[i]]);
      let r = -1;
      for (let i = 0; i < ids.length && r < 0; i++) if (this.holderStart[ids[i] + 1] - this.holderStart[ids[i]] <= 2 * fewest) r = ids[i];
      rare[v] = r;
      first[v] = ids.length > 0 ? ids[0] : -1;
    }
    return Int32Array.from({ length: V }, (_, v) => v).sort((a, b) => rare[a] - rare[b] || first[a] - first[b] || a - b);
  }

  /** The VMs on host h, ascending. */
  on(h: number): number[] {
    return this.members[h].slice().sort((a, b) => a - b);
  }

  /** Sampled contents v shares with the other VMs of its own host. */
  own(v: number): number {
    return this.ownOf[v];
  }

  /** The host other than v's own whose VMs share most with v (the lowest index among equals), -1 when there is none. */
  bestElsewhere(v: number): number {
    if (this.bestStale[v] === 0) return this.bestHost[v];
    const H = this.hosts.length;
    const V = this.vms.length;
    const cell = this.cell;
    const home = this.hostOf[v];
    let best = -Infinity;
    let to = -1;
    for (let h = 0, at = v; h < H; h++, at += V) {
      if (h !== home && cell[at] > best) {
        best = cell[at];
        to = h;
      }
    }
    this.bestHost[v] = to;
    this.bestCount[v] = best;
    this.bestStale[v] = 0;
    return to;
  }

  /** Keeps u's best other host right after its count at host h (not u's host) changed by d to `value`. */
  private rebest(u: number, h: number, d: number, value: number): void {
    if (this.bestStale[u] === 1) return;
    const b = this.bestHost[u];
    if (b === h) {
      if (d < 0) this.bestStale[u] = 1;
      else this.bestCount[u] = value;
      return;
    }
    const top = this.bestCount[u];
    if (value > top || (value === top && h < b)) {
      this.bestHost[u] = h;
      this.bestCount[u] = value;
    }
  }

  /** Sampled contents v shares with the VMs on host h (other than v). */
  shares(v: number, h: number): number {
    return this.cell[h * this.vms.length + v];
  }

  /**
   * The one VM other than `except` on host h holding x (when the host's count says there is exactly
   * one). `cursor` has a place per VM on h, 0 at the start of a move: a move asks for its contents in
   * ascending order, so each VM's contents are walked forward once per move rather than searched.
   */
  private oneOn(x: number, h: number, except: number, cursor: Int32Array): number {
    const on = this.members[h];
    if (this.holderStart[x + 1] - this.holderStart[x] > 8 * on.length) {
      // A content many VMs hold (an OS page): ask the few VMs on h instead of walking its holders.
      for (let k = 0; k < on.length; k++) {
        const u = on[k];
        if (u === except) continue;
        const a = this.shared[u];
        let c = cursor[k];
        while (c < a.length && a[c] < x) c++;
        cursor[k] = c;
        if (c < a.length && a[c] === x) return u;
      }
      return -1;
    }
    for (let i = this.holderStart[x]; i < this.holderStart[x + 1]; i++) {
      const u = this.holders[i];
      if (u !== except && this.hostOf[u] === h) return u;
    }
    return -1;
  }

  /**
   * What moving v to host `to` changes, in sampled contents: `plus` it would share at `to` and
   * does not share where it is, `minus` it shares where it is and would not at `to`. The gain is
   * plus − minus; only these contents carry sampling noise (the ones shared at both cancel).
   * `without`: a VM on `to` that leaves it at the same time (a swap).
   */
  difference(v: number, to: number, without = -1): { plus: number; minus: number } {
    const S = this.S;
    const from = this.hostOf[v];
    const gone = without >= 0 && this.hostOf[without] === to;
    // The contents of `without`, walked beside v's (both ascending), to tell which of v's it holds.
    const w = gone ? this.shared[without] : null;
    let j = 0;
    let plus = 0;
    let minus = 0;
    const ids = this.shared[v];
    for (let i = 0; i < ids.length; i++) {
      const x = ids[i];
      let n = this.onHost[to * S + x];
      if (w !== null) {
        while (j < w.length && w[j] < x) j++;
        if (n > 0 && j < w.length && w[j] === x) n--;
      }
      const there = n > 0;
      const here = this.onHost[from * S + x] > 1; // v itself is one of those on `from`
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
    // The VMs met, in the order first met, each once (a per-VM stamp rather than a Set).
    this.seenAt ??= new Int32Array(this.vms.length);
    const seenAt = this.seenAt;
    const mark = ++this.seenMark;
    const seen: number[] = [];
    const { holderStart, holders } = this;
    for (const x of this.shared[v]) {
      if (holderStart[x + 1] - holderStart[x] > rareHolders) continue;
      for (let i = holderStart[x]; i < holderStart[x + 1]; i++) {
        const u = holders[i];
        if (u !== v && seenAt[u] !== mark) {
          seenAt[u] = mark;
          seen.push(u);
        }
      }
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
    const { onHost, S } = this;
    // A content both hold is held on b by no VM but w when w is its only holder there (count 1), on a likewise for u.
    const atA = this.hostOf[u] * S;
    const atB = this.hostOf[w] * S;
    const su = this.shared[u];
    const sw = this.shared[w];
    let loss = 0;
    for (let i = 0, j = 0; i < su.length && j < sw.length; ) {
      const x = su[i];
      const y = sw[j];
      if (x < y) i++;
      else if (x > y) j++;
      else {
        if (onHost[atB + x] === 1) loss++;
        if (onHost[atA + x] === 1) loss++;
        i++;
        j++;
      }
    }
    return loss;
  }

  /** Records that u's row changed in the current move (once per VM). */
  private touch(u: number): void {
    if (this.stamp[u] !== this.epoch) {
      this.stamp[u] = this.epoch;
      this.changedList[this.changedCount++] = u;
    }
  }

  /** Adds `sign` to d[u] and lists u among the VMs whose rows this move changes. */
  private note(u: number, d: Int32Array, sign: number): void {
    d[u] += sign;
    if (this.inD[u] === 0) {
      this.inD[u] = 1;
      this.dList[this.dCount++] = u;
    }
  }

  /**
   * Adds `sign` to d[u] for every holder u of content x (the moving VM included: its own cells are set
   * apart in move): for a content written by group (see HolderIndex), to the group's count in k, and the
   * opposite to the members lacking it.
   */
  private spread(x: number, d: Int32Array, k: Int32Array, sign: number): void {
    const g = this.index.groupOf[x];
    if (g < 0) {
      const { holderStart, holders } = this;
      for (let i = holderStart[x]; i < holderStart[x + 1]; i++) this.note(holders[i], d, sign);
      return;
    }
    if (this.kFrom[g] === 0 && this.kTo[g] === 0) this.movedGroups.push(g);
    k[g] += sign;
    const { missStart, missVms } = this.index;
    for (let i = missStart[x]; i < missStart[x + 1]; i++) this.note(missVms[i], d, -sign);
  }

  /**
   * Moves VM v to host `to`, updating every row it changes; returns the VMs whose rows changed
   * (a view valid until the next move). Exact: a VM leaving is a subtraction of its contents,
   * arriving an addition. When v takes the last copy of content x away from `from`, every other
   * holder of x shares one content less with `from`; when it brings the first copy to `to`, one
   * more. Those changes are summed per VM first, by group (see HolderIndex), then applied.
   */
  move(v: number, to: number): Int32Array {
    const S = this.S;
    const V = this.vms.length;
    const from = this.vms[v].host;
    const { groupStart, groupVms } = this.index;
    const { dFrom, dTo, inD, dList, kFrom, kTo, onHost } = this;
    this.dCount = 0;
    const groups = this.movedGroups;
    groups.length = 0;
    const ownBefore = this.cell[from * V + v];
    const sharesAtTarget = this.cell[to * V + v];
    const ids = this.shared[v];
    const atFrom = from * S;
    const atTo = to * S;
    const cursorFrom = new Int32Array(this.members[from].length);
    const cursorTo = new Int32Array(this.members[to].length);
    for (let k = 0; k < ids.length; k++) {
      const x = ids[k];
      const left = onHost[atFrom + x] - 1;
      if (left === 0) this.spread(x, dFrom, kFrom, -1);
      else if (left === 1) this.note(this.oneOn(x, from, v, cursorFrom), dFrom, -1); // the last holder on `from` no longer shares it there
      const there = onHost[atTo + x];
      if (there === 0) this.spread(x, dTo, kTo, 1);
      else if (there === 1) this.note(this.oneOn(x, to, v, cursorTo), dTo, 1);
      onHost[atFrom + x]--;
      onHost[atTo + x]++;
    }
    let dCount = this.dCount;
    for (const g of groups) {
      const a = kFrom[g];
      const b = kTo[g];
      kFrom[g] = kTo[g] = 0;
      for (let i = groupStart[g]; i < groupStart[g + 1]; i++) {
        const u = groupVms[i];
        dFrom[u] += a;
        dTo[u] += b;
        if (inD[u] === 0) {
          inD[u] = 1;
          dList[dCount++] = u;
        }
      }
    }
    if (++this.epoch === 0xffffffff) {
      this.stamp.fill(0);
      this.epoch = 1;
    }
    this.changedCount = 0;
    this.touch(v);
    const { cell, hostOf, ownOf } = this;
    const colFrom = from * V;
    const colTo = to * V;
    for (let i = 0; i < dCount; i++) {
      const u = dList[i];
      inD[u] = 0;
      const df = dFrom[u];
      const dt = dTo[u];
      if (u !== v && (df !== 0 || dt !== 0)) {
        const home = hostOf[u];
        if (df !== 0) {
          const value = (cell[colFrom + u] += df);
          if (home === from) ownOf[u] = value;
          else this.rebest(u, from, df, value);
        }
        if (dt !== 0) {
          const value = (cell[colTo + u] += dt);
          if (home === to) ownOf[u] = value;
          else this.rebest(u, to, dt, value);
        }
        this.touch(u);
      }
      dFrom[u] = dTo[u] = 0;
    }
    cell[colFrom + v] = ownBefore;
    cell[colTo + v] = sharesAtTarget;
    this.ownOf[v] = sharesAtTarget;
    this.bestStale[v] = 1;
    this.used[from] -= this.vms[v].memoryBytes;
    this.used[to] += this.vms[v].memoryBytes;
    this.vms[v].host = to;
    this.hostOf[v] = to;
    const left = this.members[from];
    left.splice(left.indexOf(v), 1);
    this.members[to].push(v);
    return this.changedList.subarray(0, this.changedCount);
  }
}
