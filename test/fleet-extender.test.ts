import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FleetModel } from '../src/fleet/model.js';
import { prioritize, checkExtenderArgs, type ExtenderArgs } from '../src/fleet/extender.js';
import { SKETCH_FORMAT, type HostSketch } from '../src/fleet/sketch.js';
import { kubevirtManifests, virshCommands } from '../src/fleet/commands.js';
import type { PlannedMove } from '../src/fleet/plan.js';

/** Sampled values k·2^40 for k in [from, to) (0 modulo 16, distinct in their top 53 bits as keyed values are). */
function sample(from: number, to: number) {
  const values = BigUint64Array.from({ length: to - from }, (_, i) => BigInt(from + i) << 40n);
  return { values, counts: new Uint32Array(values.length).fill(1) };
}

function host(name: string, vms: [string, number, number][]): HostSketch {
  return {
    format: SKETCH_FORMAT,
    keyId: '0123456789abcdef',
    modulus: 16,
    pageSize: 4096,
    host: name,
    takenAt: '2026-11-30T12:00:00.000Z',
    capacityBytes: 1 << 30,
    vms: vms.map(([n, a, b]) => ({ name: n, pid: 1, vmm: 'qemu', memoryBytes: 1 << 20, pages: 256, zeroPages: 0, thpPages: null, takenAt: '2026-11-30T12:00:00.000Z', sample: sample(a, b) })),
  };
}

// web-1 shares 60 sampled contents with node-b's VM, 20 with node-c's, none with node-a's.
const model = new FleetModel([
  host('node-a', [['prod_web-1', 0, 100], ['prod_db', 500, 600]]),
  host('node-b', [['prod_web-2', 40, 140]]),
  host('node-c', [['prod_cache', 80, 180]]),
]);

const launcher = {
  metadata: { name: 'virt-launcher-web-1-x7k2p', namespace: 'prod', labels: { 'kubevirt.io': 'virt-launcher' }, annotations: { 'kubevirt.io/domain': 'web-1' } },
};

test('prioritize answers a HostPriorityList in the order of ExtenderArgs.Nodes, the best node scoring 10', () => {
  const args: ExtenderArgs = { Pod: launcher, Nodes: { items: [{ metadata: { name: 'node-a' } }, { metadata: { name: 'node-b' } }, { metadata: { name: 'node-c' } }] } };
  assert.deepEqual(prioritize(model, args), [
    { Host: 'node-a', Score: 0 },
    { Host: 'node-b', Score: 10 },
    { Host: 'node-c', Score: 3 },
  ]);
});

test('prioritize reads NodeNames when the extender is nodeCacheCapable', () => {
  assert.deepEqual(prioritize(model, { Pod: launcher, NodeNames: ['node-c', 'node-b'] }), [
    { Host: 'node-c', Score: 3 },
    { Host: 'node-b', Score: 10 },
  ]);
});

test('a pod that is no virt-launcher scores 0 on every node', () => {
  const pod = { metadata: { name: 'nginx', namespace: 'prod', labels: { app: 'nginx' } } };
  assert.deepEqual(prioritize(model, { Pod: pod, NodeNames: ['node-a', 'node-b'] }), [
    { Host: 'node-a', Score: 0 },
    { Host: 'node-b', Score: 0 },
  ]);
});

test('a VM not running yet is scored through the exemplar of its template', () => {
  const pod = { metadata: { name: 'virt-launcher-web-9', namespace: 'prod', labels: { 'kubevirt.io': 'virt-launcher', 'vm.kubevirt.io/template': 'web' }, annotations: { 'kubevirt.io/domain': 'web-9' } } };
  assert.deepEqual(prioritize(model, { Pod: pod, NodeNames: ['node-a', 'node-b', 'node-c'] }, { exemplars: new Map([['web', 'prod_web-1']]) }), [
    { Host: 'node-a', Score: 0 },
    { Host: 'node-b', Score: 10 },
    { Host: 'node-c', Score: 3 },
  ]);
});

test('a body without Pod is refused as not ExtenderArgs', () => {
  assert.throws(() => checkExtenderArgs({ Nodes: { items: [] } }), { name: 'TypeError', message: 'ExtenderArgs needs Pod' });
});

test('virsh lines name the domain and the destination as --domain= and --desturi=, so a VM name cannot pass for an option', () => {
  const move = (vm: string) => ({ step: 1, vm, from: 'node-a', to: 'node-b', memory_bytes: 0, expected_saving_bytes: 0, bound_bytes: 0, shares_at_target: { bytes: 0, bound_bytes: 0 }, shares_at_source: { bytes: 0, bound_bytes: 0 } });
  assert.equal(
    virshCommands([move('web-1'), move('--migrateuri=tcp://10.0.0.9:1')] as PlannedMove[]),
    'virsh -c qemu+ssh://node-a/system migrate --live --persistent --undefinesource --verbose --domain=web-1 --desturi=qemu+ssh://node-b/system\n' +
      'virsh -c qemu+ssh://node-a/system migrate --live --persistent --undefinesource --verbose --domain=--migrateuri=tcp://10.0.0.9:1 --desturi=qemu+ssh://node-b/system\n',
  );
});

test('the kubectl line before a KubeVirt 1.5 migration names the namespace and the VM so that neither can pass for an option', () => {
  const move = { step: 1, vm: '--migrateuri=tcp:/127.0.0.1:1', from: 'node-a', to: 'node-b', memory_bytes: 0, expected_saving_bytes: 0, bound_bytes: 0, shares_at_target: { bytes: 0, bound_bytes: 0 }, shares_at_source: { bytes: 0, bound_bytes: 0 } };
  const kubectl = kubevirtManifests([move as PlannedMove], [1, 5]).split('\n').find((l) => l.startsWith('#   kubectl'));
  assert.match(kubectl ?? '', /^# {3}kubectl --namespace=--migrateuri=tcp: patch vm\/127\.0\.0\.1:1 --type merge -p '/);
});

test('prioritize scores 200,000 NodeNames (Math.max over them overflowed the stack at about 130,000)', () => {
  const names = Array.from({ length: 200_000 }, (_, i) => (i === 7 ? 'node-b' : `node-x${i}`));
  const list = prioritize(model, { Pod: launcher, NodeNames: names });
  assert.deepEqual([list.length, list[7], list.filter((e) => e.Score > 0).length], [200_000, { Host: 'node-b', Score: 10 }, 1]);
});
