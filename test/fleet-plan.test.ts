import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../src/native.js';
import { fleetKeyFromBytes } from '../src/fleet/key.js';
import { KIND_IMAGE, KIND_UNIQUE, writePage } from '../src/workload/content.js';
import { plantedVm, type PlantedLayers } from '../src/workload/planted.js';
import { planMigrations } from '../src/fleet/plan.js';
import { SKETCH_FORMAT, type HostSketch, type Sample } from '../src/fleet/sketch.js';

const PAGE = native.pageSize;
const key = fleetKeyFromBytes(Buffer.from('plan-test-key-0123456789'));
const LAYERS: PlantedLayers = { oses: 2, versionsPerOs: 2, appsPerVersion: 2, osPages: 2048, versionPages: 1024, appPages: 512, ownPages: 512 };

function vmMemory(f: number, index: number): ArrayBuffer {
  const vm = plantedVm(LAYERS, f, index);
  const pages = vm.layers.reduce((a, l) => a + l.pages, 0) + vm.ownPages;
  const buf = new ArrayBuffer(pages * PAGE);
  const words = new Uint32Array(buf);
  const per = PAGE / 4;
  let at = 0;
  for (const l of vm.layers) for (let i = 0; i < l.pages; i++, at++) writePage(words.subarray(at * per, (at + 1) * per), KIND_IMAGE, l.seed, i);
  for (let i = 0; i < vm.ownPages; i++, at++) writePage(words.subarray(at * per, (at + 1) * per), KIND_UNIQUE, vm.ownSeed, i);
  return buf;
}

/** 8 hosts with room for 5 VMs, 4 VMs each from 4 different families (host h: families h … h+3). */
function fleet(modulus: number): { sketches: HostSketch[]; full: Map<string, Sample>; family: Map<string, number> } {
  const full = new Map<string, Sample>();
  const family = new Map<string, number>();
  const memory = new Map<string, ArrayBuffer>();
  const sketches: HostSketch[] = [];
  const taken = new Array<number>(8).fill(0);
  for (let h = 0; h < 8; h++) {
    const vms = [];
    for (let j = 0; j < 4; j++) {
      const f = (h + j) % 8;
      const name = `f${f}-${taken[f]}`;
      const buf = memory.get(name) ?? vmMemory(f, taken[f]++);
      const s = native.sketchBuffer(buf, key.key, modulus);
      const m1 = native.sketchBuffer(buf, key.key, 1);
      full.set(name, { values: m1.values, counts: m1.counts });
      family.set(name, f);
      vms.push({ name, pid: 100 + vms.length, vmm: 'registered', memoryBytes: buf.byteLength, pages: s.pages, zeroPages: s.zeroPages, thpPages: null, takenAt: '2026-11-30T12:00:00.000Z', sample: { values: s.values, counts: s.counts } });
    }
    sketches.push({ format: SKETCH_FORMAT, keyId: key.id, modulus, pageSize: PAGE, host: `host-${h}`, takenAt: '2026-11-30T12:00:00.000Z', capacityBytes: 5 * 4096 * PAGE, vms });
  }
  return { sketches, full, family };
}

/** What KSM saves across VMs with this placement: per host, every content held by k VMs saves k − 1 pages. */
function trueSaving(placement: Map<string, string>, full: Map<string, Sample>): number {
  const perHost = new Map<string, Map<bigint, number>>();
  for (const [vm, host] of placement) {
    const m = perHost.get(host) ?? new Map<bigint, number>();
    perHost.set(host, m);
    for (const v of full.get(vm)!.values) m.set(v, (m.get(v) ?? 0) + 1);
  }
  let saving = 0;
  for (const m of perHost.values()) for (const k of m.values()) saving += k - 1;
  return saving;
}

test('every overlap the planner states is within its bound of the truth from the full hash sets', () => {
  const { sketches, full } = fleet(16);
  const plan = planMigrations(sketches, { overlaps: true });
  const hostOf = new Map(sketches.flatMap((s) => s.vms.map((v) => [v.name, s.host] as const)));
  const misses = plan.overlaps!.filter((o) => {
    const mine = new Set(full.get(o.vm)!.values);
    const there = new Set<bigint>();
    for (const [vm, h] of hostOf) if (h === o.host && vm !== o.vm) for (const v of full.get(vm)!.values) there.add(v);
    let truth = 0;
    for (const v of mine) if (there.has(v)) truth++;
    return Math.abs(truth - o.pages) > o.bound_pages;
  });
  assert.equal(plan.overlaps!.length, 32 * 8);
  assert.deepEqual(misses, []);
});

test('the plan realises at least 90 % of the best saving on a planted fleet', () => {
  const { sketches, full, family } = fleet(16);
  const before = new Map(sketches.flatMap((s) => s.vms.map((v) => [v.name, s.host] as const)));
  const plan = planMigrations(sketches);
  const after = new Map(before);
  for (const m of plan.moves) after.set(m.vm, m.to);
  const best = new Map([...family].map(([vm, f]) => [vm, `host-${f}`] as const));
  const gained = trueSaving(after, full) - trueSaving(before, full);
  const possible = trueSaving(best, full) - trueSaving(before, full);
  for (const h of plan.hosts) assert.ok(h.used_bytes_after <= h.capacity_bytes, `${h.host} over capacity`);
  assert.ok(gained >= 0.9 * possible, `plan gained ${gained} pages of ${possible} possible (${plan.moves.length} moves)`);
});

test('a plan made on two threads is the plan made on one', () => {
  const { sketches } = fleet(16);
  assert.deepEqual(planMigrations(sketches, { threads: true }), planMigrations(sketches, { threads: false }));
});
