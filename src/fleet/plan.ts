// The migration plan: a local search in the style of Memory Buddies (move a VM to the host whose
// memory it shares most with) and Sindelar et al. (place by shared content, within capacity). At
// each step the VM with the largest expected saving goes to that host; when the host has no room,
// the VM trades places with the VM there whose swap saves most. A step is taken only when its saving
// is clear of its error bound and capacity holds after it; the fleet's state is updated exactly (a VM
// leaving is a subtraction) before the next step, so every step is priced against the fleet as it
// will be then.
import { availableParallelism } from 'node:os';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { FleetModel, fleetInput, type FleetInput } from './model.js';
import { estimateFromSample, gainFromSamples, DEFAULT_Z, type Estimate } from './estimate.js';
import type { HostSketch } from './sketch.js';

export interface PlanOptions {
  /** Standard deviations of every stated bound (default 3). */
  z?: number;
  /** Stop after this many migrations (default: 4 × the VMs). */
  maxMoves?: number;
  /** Leave out steps expected to save less than this (default: 0, only the bound decides). */
  minSavingBytes?: number;
  /** Also list every VM's estimated overlap with every host (V × H rows: small fleets). */
  overlaps?: boolean;
  /**
   * Make the two plans on two threads (the same plan either way, sooner). Default: when the fleet
   * has at least 4 million VM × host pairs and the machine more than one CPU.
   */
  threads?: boolean;
}

export interface EstimateBytes {
  bytes: number;
  bound_bytes: number;
}

export interface PlannedMove {
  /** Position in the plan: migrations are meant to run in this order. */
  step: number;
  vm: string;
  from: string;
  to: string;
  memory_bytes: number;
  /** Memory KSM is expected to save by this migration, given the ones before it. */
  expected_saving_bytes: number;
  bound_bytes: number;
  /** What the VM shares with the VMs at the target, and with those it leaves. */
  shares_at_target: EstimateBytes;
  shares_at_source: EstimateBytes;
  /** The VM it trades places with (the next step moves that one back): the target holds both while this step runs. */
  swap_with?: string;
}

export interface OverlapRow {
  vm: string;
  host: string;
  /** Pages of the VM whose content the VMs on that host hold (at its own host: the other VMs there). */
  pages: number;
  bound_pages: number;
}

export interface Plan {
  modulus: number;
  z: number;
  hosts: { host: string; capacity_bytes: number; used_bytes_before: number; used_bytes_after: number; vms_before: number; vms_after: number }[];
  vms: number;
  moves: PlannedMove[];
  expected_saving_bytes: number;
  bound_bytes: number;
  overlaps?: OverlapRow[];
}

function bytes(e: Estimate, pageSize: number): EstimateBytes {
  return { bytes: e.pages * pageSize, bound_bytes: e.bound * pageSize };
}

/** A max-heap of numbers (the local search's queue of VMs by expected gain). */
class MaxHeap {
  private a = new Float64Array(1024);
  size = 0;

  push(k: number): void {
    if (this.size === this.a.length) {
      const b = new Float64Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    const a = this.a;
    let i = this.size++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p] >= k) break;
      a[i] = a[p];
      i = p;
    }
    a[i] = k;
  }

  pop(): number {
    const a = this.a;
    const top = a[0];
    const k = a[--this.size];
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= this.size) break;
      if (c + 1 < this.size && a[c + 1] > a[c]) c++;
      if (a[c] <= k) break;
      a[i] = a[c];
      i = c;
    }
    a[i] = k;
    return top;
  }
}

/** One way of planning, on its own copy of the fleet model. */
class Planner {
  readonly moves: PlannedMove[] = [];
  totalPages = 0;
  totalBound = 0;
  private readonly M: number;

  constructor(
    readonly model: FleetModel,
    private readonly z: number,
    private readonly pageSize: number,
    private readonly minGain: number,
    private readonly maxMoves: number,
  ) {
    this.M = model.modulus;
  }

  /** A step is worth taking when its gain, in sampled values, is clear of its bound (and of the minimum asked for). */
  clear(d: { plus: number; minus: number }): boolean {
    const gain = d.plus - d.minus;
    if (gain <= 0 || gain < this.minGain) return false;
    return gain * this.M > gainFromSamples(d.plus, d.minus, this.M, this.z).bound;
  }

  /**
   * `clear` for a step whose gain (plus − minus) is known and whose plus + minus is at most `most`,
   * walking contents (`walk`) only when those two leave the answer open: the bound grows with
   * plus + minus, which is at least the gain.
   */
  clearWithin(gain: number, most: number, walk: () => { plus: number; minus: number }): boolean {
    if (gain <= 0 || gain < this.minGain) return false;
    const { M, z } = this;
    if (gain * M > gainFromSamples(most, 0, M, z).bound) return true;
    if (gain * M <= gainFromSamples(gain, 0, M, z).bound) return false;
    return this.clear(walk());
  }

  fits(v: number, h: number, freed = 0): boolean {
    const m = this.model;
    return m.used[h] - freed + m.vms[v].memoryBytes <= m.hosts[h].capacityBytes;
  }

  record(v: number, to: number, swapWith?: number): Int32Array {
    const { model, M, z, pageSize } = this;
    const from = model.vms[v].host;
    const d = model.difference(v, to);
    const gain = gainFromSamples(d.plus, d.minus, M, z);
    this.moves.push({
      step: this.moves.length + 1,
      vm: model.vms[v].name,
      from: model.hosts[from].name,
      to: model.hosts[to].name,
      memory_bytes: model.vms[v].memoryBytes,
      expected_saving_bytes: gain.pages * pageSize,
      bound_bytes: gain.bound * pageSize,
      shares_at_target: bytes(estimateFromSample(model.shares(v, to), M, z), pageSize),
      shares_at_source: bytes(estimateFromSample(model.own(v), M, z), pageSize),
      ...(swapWith === undefined ? {} : { swap_with: model.vms[swapWith].name }),
    });
    this.totalPages += gain.pages;
    this.totalBound += gain.bound;
    return model.move(v, to);
  }

  /**
   * Sindelar-style regrouping: VMs that hold nearly the same contents (siblings of one template) are
   * grouped, each group is given the host that already holds most of it and has room for it all,
   * and the group's other members migrate there, in an order that keeps every host within capacity.
   */
  regroup(fraction = 0.95): void {
    const { model } = this;
    const V = model.vms.length;
    const H = model.hosts.length;
    const group = new Int32Array(V).fill(-1);
    const groups: number[][] = [];
    for (let v = 0; v < V; v++) {
      if (group[v] >= 0) continue;
      const g = [v];
      group[v] = groups.length;
      for (let i = 0; i < g.length; i++) {
        for (const u of model.siblings(g[i], fraction)) {
          if (group[u] < 0) {
            group[u] = groups.length;
            g.push(u);
          }
        }
      }
      groups.push(g);
    }
    // Target hosts, largest groups first; a host's target load starts from what stays on it.
    const planned = new Float64Array(H);
    const targetOf = new Int32Array(V).fill(-1);
    const order = groups.map((g, i) => i).filter((i) => groups[i].length > 1);
    const memOf = (g: number[]): number => g.reduce((a, v) => a + model.vms[v].memoryBytes, 0);
    order.sort((a, b) => memOf(groups[b]) - memOf(groups[a]));
    // Singletons stay where they are.
    for (const g of groups) if (g.length === 1) planned[model.vms[g[0]].host] += model.vms[g[0]].memoryBytes;
    for (const gi of order) {
      const g = groups[gi];
      const mem = memOf(g);
      const here = new Float64Array(H);
      for (const v of g) here[model.vms[v].host] += model.vms[v].memoryBytes;
      let best = -1;
      for (let h = 0; h < H; h++) {
        if (planned[h] + mem > model.hosts[h].capacityBytes) continue;
        if (best < 0 || here[h] > here[best] || (here[h] === here[best] && planned[h] < planned[best])) best = h;
      }
      if (best < 0) {
        // No host takes the whole group: its members stay.
        for (const v of g) planned[model.vms[v].host] += model.vms[v].memoryBytes;
        continue;
      }
      planned[best] += mem;
      for (const v of g) targetOf[v] = best;
    }
    // Migrate in an order that keeps capacity: any pending move whose target has room now.
    const pending = new Set<number>();
    for (let v = 0; v < V; v++) if (targetOf[v] >= 0 && targetOf[v] !== model.vms[v].host) pending.add(v);
    while (pending.size > 0 && this.moves.length < this.maxMoves) {
      let next = -1;
      for (const v of pending) {
        if (this.fits(v, targetOf[v])) {
          next = v;
          break;
        }
      }
      if (next >= 0) {
        pending.delete(next);
        this.record(next, targetOf[next]);
        continue;
      }
      // Every pending target is full: park a VM that has to leave one of them on any host with
      // room (it migrates twice), which frees room for the VM waiting there.
      let parked = false;
      for (const v of pending) {
        const t = targetOf[v];
        for (const w of pending) {
          if (model.vms[w].host !== t) continue;
          for (let h = 0; h < H && !parked; h++) {
            if (h !== t && this.fits(w, h)) {
              this.record(w, h);
              parked = true;
            }
          }
          if (parked) break;
        }
        if (parked) break;
      }
      if (!parked) break; // the local search takes over
    }
  }

  /** The local search (see the header): moves, swaps and plateau pairs, until nothing clear is left. */
  search(): void {
    const { model } = this;
    const H = model.hosts.length;
    const V = model.vms.length;
    const target = new Int32Array(V).fill(-1);
    const potential = new Float64Array(V).fill(-Infinity);
    // A VM whose step was not taken stays out until something its step depends on changes (see below).
    // STUCK_NO_ROOM: no swap and no host with room gained clearly; room freed on a host may change that.
    const STUCK = 1;
    const STUCK_NO_ROOM = 2;
    const stuck = new Uint8Array(V);
    // The VMs aiming at each host, and the VMs stuck for want of room: the VMs a step can concern
    // besides those on its two hosts and those whose rows it changed (see the end of a step).
    const aiming: number[][] = Array.from({ length: H }, () => []);
    const aimAt = new Int32Array(V).fill(-1);
    const noRoom: number[] = [];
    const noRoomAt = new Int32Array(V).fill(-1);
    const drop = (list: number[], at: Int32Array, u: number): void => {
      const i = at[u];
      const last = list.pop()!;
      if (last !== u) {
        list[i] = last;
        at[last] = i;
      }
      at[u] = -1;
    };
    const setTarget = (u: number, h: number): void => {
      if (target[u] === h) return;
      if (target[u] >= 0) drop(aiming[target[u]], aimAt, u);
      target[u] = h;
      if (h >= 0) {
        aimAt[u] = aiming[h].length;
        aiming[h].push(u);
      }
    };
    const setStuck = (u: number, why: number): void => {
      if (stuck[u] === STUCK_NO_ROOM && why !== STUCK_NO_ROOM) drop(noRoom, noRoomAt, u);
      else if (why === STUCK_NO_ROOM && stuck[u] !== STUCK_NO_ROOM) {
        noRoomAt[u] = noRoom.length;
        noRoom.push(u);
      }
      stuck[u] = why;
    };
    // The VMs whose rows the step's migrations changed (marked, and listed to clear the marks).
    const isChanged = new Uint8Array(V);
    const changed: number[] = [];
    const mark = (list: Int32Array): void => {
      for (const u of list) {
        if (isChanged[u] === 0) {
          isChanged[u] = 1;
          changed.push(u);
        }
      }
    };
    // fresh[v]: v's row has not changed since rate(v) last ran, so running it again would answer the same.
    const fresh = new Uint8Array(V);
    // A swap candidate's bound on its gain (see the swap below).
    const mostOf = new Int32Array(V);
    const rate = (v: number): void => {
      const own = model.own(v);
      const to = model.bestElsewhere(v);
      const best = to < 0 ? -Infinity : model.shares(v, to) - own;
      setTarget(v, to);
      // A move that gains nothing alone may gain with a companion (a plateau): kept, ranked last.
      potential[v] = best < 0 || (best === 0 && own === 0) ? -Infinity : best;
      fresh[v] = 1;
    };
    // The next VM to try: the largest potential, the lowest index among equals, not stuck. Kept in a
    // heap of keys potential·2^24 + (2^24 − 1 − v); an entry whose key is no longer the VM's (its
    // potential changed, or it is stuck) is skipped when it comes up. A VM is pushed again whenever
    // it becomes free or its potential changes.
    const seen = new Int32Array(V);
    let step = 0;
    const SLOTS = 2 ** 24;
    if (V >= SLOTS) throw new RangeError(`the planner takes at most ${SLOTS - 1} VMs`);
    const keyOf = (u: number): number => potential[u] * SLOTS + (SLOTS - 1 - u);
    const queue = new MaxHeap();
    const enqueue = (u: number): void => {
      if (stuck[u] === 0 && potential[u] > -Infinity) queue.push(keyOf(u));
    };
    for (let v = 0; v < V; v++) {
      rate(v);
      enqueue(v);
    }
    while (this.moves.length < this.maxMoves) {
      let v = -1;
      while (queue.size > 0) {
        const k = queue.pop();
        const u = SLOTS - 1 - (k % SLOTS);
        if (stuck[u] === 0 && potential[u] > -Infinity && keyOf(u) === k) {
          v = u;
          break;
        }
      }
      if (v < 0) break;
      const a = model.vms[v].host;
      let b = target[v];
      for (const u of changed) isChanged[u] = 0;
      changed.length = 0;
      let partner = -1;
      if (potential[v] === 0) {
        // Move together with the VM on a that shares most with v, when the pair gains clearly.
        let p = -1;
        let most = 0;
        const ownV = model.own(v);
        for (const w of model.on(a)) {
          // What v and w (both on a) hold in common, each shares on a with the other: neither count is smaller.
          if (w === v || Math.min(ownV, model.own(w)) <= most) continue;
          const c = model.common(v, w);
          if (c > most) {
            most = c;
            p = w;
          }
        }
        let taken = false;
        if (p >= 0 && this.moves.length + 2 <= this.maxMoves && model.used[b] + model.vms[v].memoryBytes + model.vms[p].memoryBytes <= model.hosts[b].capacityBytes) {
          const dv = model.difference(v, b);
          model.move(v, b);
          const dp = model.difference(p, b);
          model.move(v, a);
          if (this.clear({ plus: dv.plus + dp.plus, minus: dv.minus + dp.minus })) {
            mark(this.record(v, b));
            mark(this.record(p, b));
            taken = true;
          }
        }
        if (!taken) {
          setStuck(v, STUCK);
          continue;
        }
      } else if (this.fits(v, b) && !this.clearWithin(model.shares(v, b) - model.own(v), model.shares(v, b) + model.own(v), () => model.difference(v, b))) {
        setStuck(v, STUCK);
        continue;
      }
      if (changed.length === 0 && !this.fits(v, b)) {
        // Trade places with the VM on b whose swap saves most, if both fit afterwards: of the clear
        // swaps with the largest gain, the one with the lowest VM index. Candidates are tried by
        // what the counts alone bound their gain to, largest first (the gain is never more: it
        // lacks what the two lose by leaving each other), so the walks stop once no bound can win.
        let best = 0;
        const candidates: number[] = [];
        for (const w of model.on(b)) {
          if (!this.fits(v, b, model.vms[w].memoryBytes) || !this.fits(w, a, model.vms[v].memoryBytes)) continue;
          const most = model.shares(v, b) - model.own(v) + model.shares(w, a) - model.own(w);
          if (most <= 0) continue;
          candidates.push(w);
          mostOf[w] = most;
        }
        candidates.sort((x, y) => mostOf[y] - mostOf[x] || x - y);
        // A candidate beats the current one with a larger gain, or an equal gain and a lower index.
        const beats = (g: number, w: number): boolean => g > best || (partner >= 0 && g === best && w < partner);
        for (const w of candidates) {
          const most = mostOf[w];
          if (most < best) break;
          if (!beats(most, w)) continue;
          const g = most - model.swapLoss(v, w);
          if (!beats(g, w)) continue;
          // Each VM's plus + minus is at most what it shares at both ends.
          const within = model.shares(v, b) + model.own(v) + model.shares(w, a) + model.own(w);
          const both = (): { plus: number; minus: number } => {
            const dv = model.difference(v, b, w);
            const dw = model.difference(w, a, v);
            return { plus: dv.plus + dw.plus, minus: dv.minus + dw.minus };
          };
          if (this.clearWithin(g, within, both)) {
            best = g;
            partner = w;
          }
        }
        if (partner < 0) {
          // No swap: the best host with room, if any is worth it.
          b = -1;
          let bestG = 0;
          for (let h = 0; h < H; h++) {
            if (h === a || !this.fits(v, h)) continue;
            const g = model.shares(v, h) - model.own(v);
            if (g > bestG && this.clearWithin(g, model.shares(v, h) + model.own(v), () => model.difference(v, h))) {
              bestG = g;
              b = h;
            }
          }
          if (b < 0) {
            setStuck(v, STUCK_NO_ROOM);
            continue;
          }
        }
      }
      if (changed.length === 0) {
        if (this.moves.length + (partner >= 0 ? 2 : 1) > this.maxMoves) break;
        mark(this.record(v, b, partner >= 0 ? partner : undefined));
        if (partner >= 0) mark(this.record(partner, a, v));
      }
      // Only columns a and b of the rows changed, and room on a and b: VMs on them are rated again in
      // full, and so are VMs aiming at them whose rows changed since they were last rated; the others
      // compare a and b with their best so far. A VM whose step was refused is tried again only when
      // something that step depends on changed: its host or target is a or b, it now aims at a or b,
      // or room freed on a or b could take it (a step depends on the VM's row, its host and target,
      // the VMs there, and room on them; a swap's fallback on room anywhere).
      // Every other VM is left as it is (the loop below would change nothing for it).
      step++;
      const concerned: number[] = [];
      const concern = (u: number): void => {
        if (seen[u] !== step) {
          seen[u] = step;
          concerned.push(u);
        }
      };
      for (const u of model.on(a)) concern(u);
      for (const u of model.on(b)) concern(u);
      for (const u of aiming[a]) concern(u);
      for (const u of aiming[b]) concern(u);
      for (const u of changed) concern(u);
      for (const u of noRoom) concern(u);
      for (const u of concerned) {
        if (isChanged[u] === 1) fresh[u] = 0;
        const h = model.hostOf[u];
        if (h === a || h === b) {
          setStuck(u, 0);
          rate(u);
          enqueue(u);
          continue;
        }
        const wasStuck = stuck[u];
        const before = potential[u];
        if (target[u] === a || target[u] === b) {
          setStuck(u, 0);
          if (fresh[u] === 0) rate(u);
        } else {
          if (stuck[u] === STUCK_NO_ROOM) {
            const own = model.own(u);
            if ((this.fits(u, a) && model.shares(u, a) > own) || (this.fits(u, b) && model.shares(u, b) > own)) setStuck(u, 0);
          }
          if (isChanged[u] === 1) {
            const own = model.own(u);
            // a, then b (on equal gains a is kept).
            const ga = model.shares(u, a) - own;
            if ((ga > 0 || (ga === 0 && own > 0)) && ga > potential[u]) {
              potential[u] = ga;
              setTarget(u, a);
              setStuck(u, 0);
            }
            const gb = model.shares(u, b) - own;
            if ((gb > 0 || (gb === 0 && own > 0)) && gb > potential[u]) {
              potential[u] = gb;
              setTarget(u, b);
              setStuck(u, 0);
            }
          }
        }
        if (wasStuck !== 0 || before !== potential[u]) enqueue(u);
      }
    }
  }
}

/** What one way of planning leaves: its moves and totals, and where the VMs end up. */
interface Outcome {
  moves: PlannedMove[];
  totalPages: number;
  totalBound: number;
  used: Float64Array;
  hostOf: Int32Array;
  /** Migrations the regrouping made before the local search (0 for the local search alone). */
  regrouped: number;
}

function outcome(p: Planner, regrouped: number): Outcome {
  return { moves: p.moves, totalPages: p.totalPages, totalBound: p.totalBound, used: p.model.used, hostOf: p.model.hostOf, regrouped };
}

/** The settings both ways of planning share. */
interface SearchSettings {
  z: number;
  pageSize: number;
  minGain: number;
  maxMoves: number;
}

/** Fleets with at least this many VM × host counts plan their two ways on two threads (below it a thread costs more than it saves). */
const THREAD_CELLS = 4_000_000;

/** The two ways of planning (see planMigrations). */
type Way = 'alone' | 'grouped';

function planOneWay(model: FleetModel, settings: SearchSettings, way: Way): Outcome {
  const p = new Planner(model, settings.z, settings.pageSize, settings.minGain, settings.maxMoves);
  if (way === 'grouped') p.regroup();
  const regrouped = p.moves.length;
  p.search();
  return outcome(p, regrouped);
}

/**
 * One way of planning on a thread of its own (the worker side of `planOnThread`): it builds its
 * own model from the fleet's input (the keys in memory both threads share) while the planning
 * thread builds the other. Answers on `port`, then raises `done[0]` for the planning thread, which
 * waits for it without an event loop.
 */
export function planOnThisThread(data: { input: FleetInput; settings: SearchSettings; way: Way; port: MessagePort; done: Int32Array }): void {
  const { input, settings, way, port, done } = data;
  try {
    const model = new FleetModel(input);
    port.postMessage({ outcome: planOneWay(model, settings, way) });
  } catch (err) {
    port.postMessage({ error: String((err as Error)?.stack ?? err) });
  } finally {
    port.close();
    Atomics.store(done, 0, 1);
    Atomics.notify(done, 0);
  }
}

/**
 * Starts one way of planning on another thread, from the fleet's input (`input.keys` in a
 * SharedArrayBuffer: the thread reads the keys this one derived, without a copy); the returned
 * function waits for it (blocking: planning stays synchronous) and gives its outcome. Both threads
 * run the same deterministic code on the same counts, so the plan is the one a single thread makes.
 */
function planOnThread(input: FleetInput, settings: SearchSettings, way: Way): () => Outcome {
  const { port1, port2 } = new MessageChannel();
  const done = new Int32Array(new SharedArrayBuffer(4));
  // Run from the sources (tsx), this module is plan.ts: the thread registers tsx first, as the
  // process did through --import (a worker's module loader does not have it).
  const self = import.meta.url;
  const loader = self.endsWith('.ts')
    ? `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((api) => api.register())`
    : 'Promise.resolve()';
  const worker = new Worker(
    `${loader}.then(() => import(${JSON.stringify(self)})).then((m) => m.planOnThisThread(require('node:worker_threads').workerData), (err) => {
       const { port, done } = require('node:worker_threads').workerData;
       port.postMessage({ error: String(err && err.stack || err) }); port.close();
       Atomics.store(done, 0, 1); Atomics.notify(done, 0);
     });`,
    { eval: true, workerData: { input, settings, way, port: port2, done }, transferList: [port2] },
  );
  worker.unref();
  return () => {
    while (Atomics.load(done, 0) === 0) Atomics.wait(done, 0, 0, 1000);
    const answer = receiveMessageOnPort(port1)?.message as { outcome?: Outcome; error?: string } | undefined;
    port1.close();
    if (answer?.outcome === undefined) throw new Error(`the planning thread failed: ${answer?.error ?? 'no answer'}`);
    return answer.outcome;
  };
}

export function planMigrations(sketches: HostSketch[], options: PlanOptions = {}): Plan {
  const z = options.z ?? DEFAULT_Z;
  const pageSize = sketches[0]?.pageSize ?? 4096;
  const minGain = (options.minSavingBytes ?? 0) / pageSize;
  const H = sketches.length;
  const V = sketches.reduce((n, s) => n + s.vms.length, 0);
  const M = Math.max(1, ...sketches.map((s) => s.modulus)); // as FleetModel's
  const maxMoves = options.maxMoves ?? 4 * V;
  // Two plans, kept the one expected to save more: the local search alone (Memory Buddies), and
  // regrouping template siblings first, polished by the local search (Sindelar). On a large fleet
  // the first is made on another thread, from its own model, while this one makes the second: the
  // regrouped plan is the longer at 1,000 × 20,000 (19.7 s against 15.9 s), so it goes on the thread
  // that starts first.
  const settings: SearchSettings = { z, pageSize, minGain: minGain / M, maxMoves };
  const threads = options.threads ?? (V * H >= THREAD_CELLS && availableParallelism() > 1);
  const input = fleetInput(sketches, threads);
  const aloneOnThread = threads ? planOnThread(input, settings, 'alone') : null;
  const first = new FleetModel(input);
  const usedBefore = Float64Array.from(first.used);
  const countBefore = new Int32Array(H);
  for (const v of first.vms) countBefore[v.host]++;
  const overlaps: OverlapRow[] | undefined = options.overlaps
    ? first.vms.flatMap((vm, v) =>
        first.hosts.map((host, h) => {
          const e = estimateFromSample(first.shares(v, h), M, z);
          return { vm: vm.name, host: host.name, pages: e.pages, bound_pages: e.bound };
        }),
      )
    : undefined;
  const model = first;
  const grouped = planOneWay(aloneOnThread === null ? first.clone() : first, settings, 'grouped');
  // A regrouping that moved nothing left the local search the fleet as it is: its plan is the local
  // search's alone, which need not be made again.
  const alone = aloneOnThread !== null ? aloneOnThread() : grouped.regrouped === 0 ? grouped : planOneWay(first, settings, 'alone');
  const best = grouped.totalPages > alone.totalPages ? grouped : alone;
  const countAfter = new Int32Array(H);
  for (let v = 0; v < V; v++) countAfter[best.hostOf[v]]++;
  return {
    modulus: M,
    z,
    hosts: model.hosts.map((h, i) => ({
      host: h.name,
      capacity_bytes: h.capacityBytes,
      used_bytes_before: usedBefore[i],
      used_bytes_after: best.used[i],
      vms_before: countBefore[i],
      vms_after: countAfter[i],
    })),
    vms: V,
    moves: best.moves,
    expected_saving_bytes: best.totalPages * pageSize,
    bound_bytes: best.totalBound * pageSize,
    ...(overlaps === undefined ? {} : { overlaps }),
  };
}
