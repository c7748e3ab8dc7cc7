import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FleetModel } from '../src/fleet/model.js';
import { HolderIndex } from '../src/fleet/holders.js';
import { SKETCH_FORMAT, type HostSketch } from '../src/fleet/sketch.js';

// A fleet built like a real one: 3 OS layers that most hosts hold (the model's index keeps those as
// the hosts lacking them), 12 application layers on a few hosts each, every layer content resident in
// a VM with probability 0.9, and contents of each VM's own. 96 VMs on 16 hosts.
const HOSTS = 16;
const VMS = 96;

function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function fleet(): { sketches: HostSketch[]; contents: Set<number>[]; hostOf: number[] } {
  const r = random(16);
  const contents: Set<number>[] = [];
  const hostOf: number[] = [];
  const vms: HostSketch['vms'][] = Array.from({ length: HOSTS }, () => []);
  for (let v = 0; v < VMS; v++) {
    const app = Math.floor(r() * 12);
    const os = app % 3;
    const set = new Set<number>();
    for (let i = 0; i < 60; i++) if (r() < 0.9) set.add(os * 1000 + i);
    for (let i = 0; i < 30; i++) if (r() < 0.9) set.add(10_000 + app * 1000 + i);
    for (let i = 0; i < 10; i++) set.add(100_000 + v * 100 + i);
    const h = Math.floor(r() * HOSTS);
    contents.push(set);
    hostOf.push(h);
    // Sampled values k·2^40: 0 modulo 16 and distinct in their top 53 bits, as keyed values are.
    const values = BigUint64Array.from([...set].sort((a, b) => a - b), (k) => BigInt(k) << 40n);
    vms[h].push({ name: `vm-${v}`, pid: v + 1, vmm: 'qemu', memoryBytes: 1 << 20, pages: 256, zeroPages: 0, thpPages: null, takenAt: '2026-11-30T12:00:00.000Z', sample: { values, counts: new Uint32Array(values.length).fill(1) } });
  }
  const sketches: HostSketch[] = vms.map((list, h) => ({ format: SKETCH_FORMAT, keyId: '0123456789abcdef', modulus: 16, pageSize: 4096, host: `node-${h}`, takenAt: '2026-11-30T12:00:00.000Z', capacityBytes: 1 << 30, vms: list }));
  return { sketches, contents, hostOf };
}

/** The model's VM index of each generated VM (the model numbers VMs host by host). */
function indexOf(model: FleetModel): Map<string, number> {
  return new Map(model.vms.map((v, i) => [v.name, i]));
}

/** Every (VM, host) count the model should hold: contents of v that some other VM on h holds. */
function truth(contents: Set<number>[], hostOf: number[]): number[][] {
  return contents.map((mine, v) =>
    Array.from({ length: HOSTS }, (_, h) => {
      let n = 0;
      for (const x of mine) if (contents.some((other, u) => u !== v && hostOf[u] === h && other.has(x))) n++;
      return n;
    }),
  );
}

/** Every VM × host count of the model, by the model's own VM numbers. */
function modelRows(model: FleetModel): number[][] {
  return Array.from({ length: VMS }, (_, v) => Array.from({ length: HOSTS }, (_, h) => model.shares(v, h)));
}

function rows(model: FleetModel): number[][] {
  const at = indexOf(model);
  return Array.from({ length: VMS }, (_, v) => Array.from({ length: HOSTS }, (_, h) => model.shares(at.get(`vm-${v}`)!, h)));
}

test('every VM × host count of a freshly built model equals the count from the full content sets', () => {
  const { sketches, contents, hostOf } = fleet();
  assert.deepEqual(rows(new FleetModel(sketches)), truth(contents, hostOf));
});

/** 40 migrations of random VMs to random other hosts (seeded), mirrored in hostOf. */
function migrateAtRandom(model: FleetModel, at: Map<string, number>, hostOf: number[], seed: number): void {
  const r = random(seed);
  for (let i = 0; i < 40; i++) {
    const v = Math.floor(r() * VMS);
    let to = Math.floor(r() * HOSTS);
    if (to === hostOf[v]) to = (to + 1) % HOSTS;
    model.move(at.get(`vm-${v}`)!, to);
    hostOf[v] = to;
  }
}

test('after a sequence of migrations every VM × host count still equals the count from the content sets', () => {
  const { sketches, contents, hostOf } = fleet();
  const model = new FleetModel(sketches);
  const at = indexOf(model);
  migrateAtRandom(model, at, hostOf, 7);
  assert.deepEqual(rows(model), truth(contents, hostOf));
});

test('a migration reports the migrated VM and exactly the other VMs whose counts it changed', () => {
  const { sketches } = fleet();
  const model = new FleetModel(sketches);
  const before = modelRows(model);
  const changed = [...model.move(0, (model.vms[0].host + 5) % HOSTS)].sort((a, b) => a - b);
  const after = modelRows(model);
  const differing = Array.from({ length: VMS }, (_, v) => v).filter((v) => v === 0 || after[v].some((c, h) => c !== before[v][h]));
  assert.deepEqual(changed, differing);
});

test('migrations on a clone leave the model it was copied from unchanged', () => {
  const { sketches } = fleet();
  const model = new FleetModel(sketches);
  const before = modelRows(model);
  const copy = model.clone();
  copy.move(3, (copy.vms[3].host + 1) % HOSTS);
  assert.deepEqual(modelRows(model), before);
  assert.notDeepEqual(modelRows(copy), before);
});

test('the holder index gives every shared content exactly its holders, by group or listed', () => {
  const { contents } = fleet();
  const holdersOf = new Map<number, number[]>();
  contents.forEach((set, v) => set.forEach((x) => holdersOf.set(x, [...(holdersOf.get(x) ?? []), v])));
  const sharedHolders = [...holdersOf.values()].filter((h) => h.length >= 2);
  const holderStart = new Int32Array(sharedHolders.length + 1);
  sharedHolders.forEach((h, x) => (holderStart[x + 1] = holderStart[x] + h.length));
  const index = new HolderIndex(holderStart, Int32Array.from(sharedHolders.flat()), VMS);
  assert.deepEqual(
    sharedHolders.map((_, x) => index.holdersOf(x)),
    sharedHolders,
  );
  // Both ways of writing holders are in use on this fleet.
  assert.ok(index.groupOf.some((g) => g >= 0) && index.groupOf.some((g) => g < 0));
});

test("after migrations each VM's own count and best other host equal those from the full content sets", () => {
  const { sketches, contents, hostOf } = fleet();
  const model = new FleetModel(sketches);
  const at = indexOf(model);
  // Asked once before, so the moves below have to keep every VM's answer up to date.
  for (let v = 0; v < VMS; v++) model.bestElsewhere(v);
  migrateAtRandom(model, at, hostOf, 11);
  const counts = truth(contents, hostOf);
  const expected = counts.map((row, v) => {
    let best = -1;
    for (let h = 0; h < HOSTS; h++) if (h !== hostOf[v] && (best < 0 || row[h] > row[best])) best = h;
    return { own: row[hostOf[v]], best };
  });
  const actual = Array.from({ length: VMS }, (_, v) => {
    const m = at.get(`vm-${v}`)!;
    return { own: model.own(m), best: model.bestElsewhere(m) };
  });
  assert.deepEqual(actual, expected);
});

test('two values of one VM that differ only below bit 11 count as one content, not a VM sharing with itself', () => {
  // A peer's sketch (or, rarely, an honest one) can hold such a pair: it made the holder index size a list at -1
  // ('Invalid typed array length: -1'), and the whole plan failed.
  const vm = (name: string, pid: number, values: bigint[]) => ({
    name,
    pid,
    vmm: 'qemu',
    memoryBytes: 1 << 20,
    pages: 256,
    zeroPages: 0,
    thpPages: null,
    takenAt: '2026-11-30T12:00:00.000Z',
    sample: { values: BigUint64Array.from(values), counts: new Uint32Array(values.length).fill(1) },
  });
  const host = (h: number, vms: HostSketch['vms']): HostSketch => ({ format: SKETCH_FORMAT, keyId: '0123456789abcdef', modulus: 1, pageSize: 4096, host: `node-${h}`, takenAt: '2026-11-30T12:00:00.000Z', capacityBytes: 1 << 30, vms });
  const model = new FleetModel([host(0, [vm('a', 1, [256n, 512n, 1n << 40n])]), host(1, [vm('b', 2, [256n, 2n << 40n])])]);
  assert.deepEqual([model.shares(0, 0), model.shares(0, 1), model.shares(1, 0), model.shares(1, 1)], [0, 1, 1, 0]);
});
