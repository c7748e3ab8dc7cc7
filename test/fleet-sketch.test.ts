import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../src/native.js';
import { fleetKeyFromBytes } from '../src/fleet/key.js';
import { writePage } from '../src/workload/content.js';
import {
  addSamples,
  subtractSample,
  commonValues,
  sampledPages,
  encodeHostSketch,
  decodeHostSketch,
  SKETCH_FORMAT,
  sketchName,
  type HostSketch,
  type Sample,
} from '../src/fleet/sketch.js';

const PAGE = native.pageSize;
const keyA = fleetKeyFromBytes(Buffer.from('fleet-a-0123456789abcdef'));
const keyB = fleetKeyFromBytes(Buffer.from('fleet-b-0123456789abcdef'));

/** Pages with content (seed, i) for i in [from, to), then `zeros` zero pages. */
function pages(seed: number, from: number, to: number, zeros = 0): ArrayBuffer {
  const buf = new ArrayBuffer((to - from + zeros) * PAGE);
  const words = new Uint32Array(buf);
  const per = PAGE / 4;
  for (let i = from; i < to; i++) writePage(words.subarray((i - from) * per, (i - from + 1) * per), 1, seed, i);
  return buf;
}

function sketch(buf: ArrayBuffer, key = keyA, m = 1): Sample {
  const s = native.sketchBuffer(buf, key.key, m);
  return { values: s.values, counts: s.counts };
}

test('zero pages are counted and left out of the sample', () => {
  const s = native.sketchBuffer(pages(1, 0, 10, 6), keyA.key, 1);
  assert.equal(s.pages, 16);
  assert.equal(s.zeroPages, 6);
  assert.equal(s.values.length, 10);
});

test('the same pages sketched under two fleet keys have no value in common', () => {
  const buf = pages(2, 0, 3000);
  const a = sketch(buf, keyA);
  const b = sketch(buf, keyB);
  assert.equal(a.values.length, 3000);
  assert.equal(commonValues(a, b), 0);
  assert.notEqual(keyA.id, keyB.id);
});

test('a host sample is the sum of its VMs, and a VM leaving is an exact subtraction', () => {
  const vm1 = sketch(pages(3, 0, 400));
  const vm2 = sketch(pages(3, 200, 700));
  const host = addSamples(vm1, vm2);
  assert.equal(host.values.length, 700);
  assert.equal(sampledPages(host), 900);
  const left = subtractSample(host, vm2);
  assert.deepEqual(left.values, vm1.values);
  assert.deepEqual(left.counts, vm1.counts);
});

test('the overlap of two samples at M = 1 is the number of contents they share', () => {
  assert.equal(commonValues(sketch(pages(4, 0, 500)), sketch(pages(4, 300, 900))), 200);
});

test('a sketch survives the wire format unchanged, repeated values included', () => {
  const buf = pages(5, 0, 64);
  const twice = new Uint8Array(buf.byteLength * 2);
  twice.set(new Uint8Array(buf), 0);
  twice.set(new Uint8Array(buf), buf.byteLength);
  const sample = sketch(twice.buffer, keyA, 4);
  const host: HostSketch = {
    format: SKETCH_FORMAT,
    keyId: keyA.id,
    modulus: 4,
    pageSize: PAGE,
    host: 'node-1',
    takenAt: '2026-11-30T12:00:00.000Z',
    capacityBytes: 1 << 30,
    vms: [{ name: 'vm', pid: 7, vmm: 'qemu', memoryBytes: 1 << 20, pages: 128, zeroPages: 0, thpPages: null, takenAt: '2026-11-30T12:00:00.000Z', sample }],
  };
  const back = decodeHostSketch(JSON.parse(JSON.stringify(encodeHostSketch(host))), 'test');
  assert.deepEqual(back, host);
  assert.ok(sample.counts.every((c) => c === 2));
});

/** A host of one VM whose sample holds the single value 3, at modulus 1, as it goes on the wire. */
function oneValueWire() {
  return encodeHostSketch({
    format: SKETCH_FORMAT,
    keyId: keyA.id,
    modulus: 1,
    pageSize: PAGE,
    host: 'n',
    takenAt: '2026-11-30T12:00:00.000Z',
    capacityBytes: 0,
    vms: [{ name: 'vm', pid: 1, vmm: 'qemu', memoryBytes: 0, pages: 0, zeroPages: 0, thpPages: 0, takenAt: '2026-11-30T12:00:00.000Z', sample: { values: new BigUint64Array([3n]), counts: new Uint32Array([1]) } }],
  });
}

test('an answer whose values are not 0 modulo its modulus is refused as not a sketch', () => {
  const wire = oneValueWire();
  assert.throws(() => decodeHostSketch({ ...wire, modulus: 2 }, 'http://h:1'), { code: 'EBADMSG', message: 'http://h:1: not a pagefuse sketch: vms[0].a value is not 0 modulo the modulus' });
});

test('an answer whose values are not canonical base64 is refused as not a sketch', () => {
  const wire = oneValueWire();
  const vm = wire.vms[0];
  // A character base64 lacks, a line break, and an encoding whose padding bits are not zero.
  for (const values of [`${vm.values.slice(0, 4)}!${vm.values.slice(5)}`, `${vm.values}\n`, 'AwAAAAAAAAB=']) {
    assert.throws(() => decodeHostSketch({ ...wire, vms: [{ ...vm, values }] }, 'http://h:1'), { code: 'EBADMSG', message: 'http://h:1: not a pagefuse sketch: vms[0].values and repeats must be base64' });
  }
});

/** oneValueWire() with `patch` applied to its object, or to its one VM's. */
function wireWith(patch: Record<string, unknown>, vmPatch: Record<string, unknown> = {}) {
  const w = oneValueWire() as unknown as Record<string, unknown> & { vms: Record<string, unknown>[] };
  return { ...w, ...patch, vms: [{ ...w.vms[0], ...vmPatch }] };
}

test("a host name that is not a host name is refused: it goes into plan's libvirt URIs", () => {
  // 'h/system?command=/tmp/x&x=' made `plan --format virsh` print a URI that names the program libvirt runs.
  for (const host of ['h/system?command=/tmp/x&x=', 'a b', '-x', 'x:22', 'é.example']) {
    assert.throws(() => decodeHostSketch(wireWith({ host }), 'peer'), { message: "peer: not a pagefuse sketch: host must be a host name (letters, digits, '-', '.' and '_', at most 253)" }, host);
  }
  assert.equal(decodeHostSketch(wireWith({ host: 'Node-1.rack_2.example' }), 'peer').host, 'Node-1.rack_2.example');
});

test('a VM name in any script is taken; one with a control or format character is refused', () => {
  // A VM named café left the whole host out of the plan.
  assert.equal(decodeHostSketch(wireWith({}, { name: 'café-vm 东京' }), 'peer').vms[0].name, 'café-vm 东京');
  for (const name of ['a\u001b[31m', 'a\u202eb', 'a\nb', ' lead', '']) {
    assert.throws(() => decodeHostSketch(wireWith({}, { name }), 'peer'), { message: 'peer: not a pagefuse sketch: vms[0].name must be a printable string of 1-253 characters' }, JSON.stringify(name));
  }
});

test('a name read from a VMM is brought within what a sketch carries: control characters become ?, at most 240 characters', () => {
  assert.deepEqual(
    [sketchName('vm\u001b[2J\u202eend', 'pid-1'), sketchName('  guest', 'pid-1'), sketchName('', 'pid-7'), [...sketchName('é'.repeat(300), 'x')].length],
    ['vm?[2J?end', 'guest', 'pid-7', 240],
  );
});
