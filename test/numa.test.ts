import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Region, PAGE_SIZE, numaTopology, numaBackend, mergeAcrossNodesWarning } from '../src/index.js';
import type { NumaTopology } from '../src/index.js';
import { readFaultMapsZeroPage } from './helpers/zero-page.js';

const NODE_DIR = '/sys/devices/system/node';
const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

function expandList(text: string): number[] {
  return text
    .trim()
    .split(',')
    .filter((p) => p !== '')
    .flatMap((p) => {
      const [lo, hi = lo] = p.split('-').map(Number);
      return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
    });
}

/** The host's topology read straight from sysfs, independently of the addon. */
function sysfsTopology(): NumaTopology {
  const ids = readdirSync(NODE_DIR)
    .flatMap((n) => (/^node\d+$/.test(n) ? [Number(n.slice(4))] : []))
    .sort((a, b) => a - b);
  const kb = (meminfo: string, key: string): number => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(meminfo)![1]) * 1024;
  const nodes = ids.map((id) => {
    const meminfo = readFileSync(`${NODE_DIR}/node${id}/meminfo`, 'utf8');
    return {
      id,
      cpus: expandList(readFileSync(`${NODE_DIR}/node${id}/cpulist`, 'utf8')),
      memTotal: kb(meminfo, 'MemTotal'),
      memFree: kb(meminfo, 'MemFree'),
    };
  });
  const distances = ids.map((id) => readFileSync(`${NODE_DIR}/node${id}/distance`, 'utf8').trim().split(/\s+/).map(Number));
  return { nodes, distances };
}

/** memFree moves while we read it: compare it within 256 MiB, everything else exactly. */
function assertSameHost(actual: NumaTopology, expected: NumaTopology): void {
  const fixed = (t: NumaTopology) => ({ nodes: t.nodes.map(({ memFree: _, ...rest }) => rest), distances: t.distances });
  assert.deepEqual(fixed(actual), fixed(expected));
  actual.nodes.forEach((n, i) => {
    assert.ok(Math.abs(n.memFree - expected.nodes[i].memFree) < 256 * 2 ** 20, `memFree of node ${n.id}`);
    assert.ok(n.memFree > 0 && n.memFree <= n.memTotal);
  });
}

test('the topology matches /sys/devices/system/node, read through libnuma', () => {
  assert.equal(numaBackend(), 'libnuma', 'libnuma1 is installed here: the loader must find it');
  assertSameHost(numaTopology(), sysfsTopology());
});

test('with libnuma switched off (PAGEFUSE_NO_LIBNUMA=1) the syscall/sysfs path gives the same topology', () => {
  const script = `import { numaTopology, numaBackend } from './src/index.ts';
process.stdout.write(JSON.stringify({ backend: numaBackend(), topology: numaTopology() }));`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    env: { ...process.env, PAGEFUSE_NO_LIBNUMA: '1' },
    encoding: 'utf8',
  });
  const { backend, topology } = JSON.parse(out) as { backend: string; topology: NumaTopology };
  assert.equal(backend, 'syscalls');
  assertSameHost(topology, numaTopology());
  assertSameHost(topology, sysfsTopology());
});

test('a fake two-node tree', () => {
  assert.deepEqual(numaTopology({ sysfsRoot: fixture('sysfs-2node') }), {
    nodes: [
      { id: 0, cpus: [0, 1, 2, 3], memTotal: 8 * 2 ** 30, memFree: 6 * 2 ** 30 },
      { id: 1, cpus: [4, 5, 6, 7], memTotal: 8 * 2 ** 30, memFree: 7 * 2 ** 30 },
    ],
    distances: [
      [10, 21],
      [21, 10],
    ],
  });
});

test('a fake four-node tree with a gap in node ids, a CPU-less node and a memoryless node', () => {
  assert.deepEqual(numaTopology({ sysfsRoot: fixture('sysfs-4node') }), {
    nodes: [
      { id: 0, cpus: [0, 1, 8, 9], memTotal: 4 * 2 ** 30, memFree: 2 ** 30 },
      { id: 1, cpus: [2, 3, 10, 11], memTotal: 4 * 2 ** 30, memFree: 2 * 2 ** 30 },
      { id: 2, cpus: [], memTotal: 2 * 2 ** 30, memFree: 2 * 2 ** 30 },
      { id: 4, cpus: [4, 5, 6, 7], memTotal: 0, memFree: 0 },
    ],
    distances: [
      [10, 16, 32, 32],
      [16, 10, 32, 32],
      [32, 32, 10, 16],
      [32, 32, 16, 10],
    ],
  });
});

test('a sysfs root without NUMA nodes is an ENOENT naming the directory', () => {
  assert.throws(() => numaTopology({ sysfsRoot: '/nonexistent' }), {
    code: 'ENOENT',
    message: /\/nonexistent\/devices\/system\/node/,
  });
});

test('a sysfs root that is not a string is a TypeError', () => {
  assert.throws(() => numaTopology({ sysfsRoot: 42 as unknown as string }), { name: 'TypeError' });
});

test('merge_across_nodes=1 on two memory nodes is warned about with the distance it costs', () => {
  const two = numaTopology({ sysfsRoot: fixture('sysfs-2node') });
  assert.equal(
    mergeAcrossNodesWarning(two, true),
    'merge_across_nodes=1 on a host with 2 memory nodes: KSM may merge a page onto a remote node, and every ' +
      'process on the other nodes then reads it remotely (node distance up to 21 against 10 for local memory); ' +
      "set it to 0 with 'pagefuse set merge_across_nodes=0 --unmerge-first'",
  );
});

test('merge_across_nodes=0 is not warned about', () => {
  assert.equal(mergeAcrossNodesWarning(numaTopology({ sysfsRoot: fixture('sysfs-2node') }), false), undefined);
});

test('the merge_across_nodes warning counts only the nodes that hold memory', () => {
  const four = numaTopology({ sysfsRoot: fixture('sysfs-4node') });
  assert.match(mergeAcrossNodesWarning(four, true)!, /with 3 memory nodes: .*up to 32 against 10/);
});

test('merge_across_nodes=1 on a host with one node is not warned about', () => {
  assert.equal(numaTopology().nodes.length, 1, 'this test needs a one-node host, as ours are');
  assert.equal(mergeAcrossNodesWarning(numaTopology(), true), undefined);
});

test('a region bound to node 0 has every resident page on node 0', () => {
  const r = Region.alloc(64 * PAGE_SIZE, { hugepages: 'never', node: 0 });
  const v = new Uint8Array(r.buffer);
  assert.deepEqual(r.pageNodes(), { nodes: {}, notPresent: 64, zeroPage: 0 });
  v.fill(1, 0, 40 * PAGE_SIZE);
  // Pages 40..47 are only read: the shared zero page where the kernel maps it on a read fault, else
  // fresh pages of their own (docs/kernel.md).
  for (let p = 40; p < 48; p++) assert.equal(v[p * PAGE_SIZE], 0);
  const readOnly = readFaultMapsZeroPage() ? { onNode: 0, zeroPage: 8 } : { onNode: 8, zeroPage: 0 };
  assert.deepEqual(r.pageNodes(), { nodes: { 0: 40 + readOnly.onNode }, notPresent: 16, zeroPage: readOnly.zeroPage });
  assert.deepEqual(r.pageNodes({ offset: 32 * PAGE_SIZE, length: 16 * PAGE_SIZE }), {
    nodes: { 0: 8 + readOnly.onNode },
    notPresent: 0,
    zeroPage: readOnly.zeroPage,
  });
  r.dispose();
});

for (const [title, options] of [
  ['bind with move keeps every page on the node', { move: true }],
  ['bind with the preferred policy on a sub-range keeps every page on the node', { policy: 'preferred', offset: 0, length: 8 * PAGE_SIZE }],
  ['bind with the interleave policy and move keeps every page on the node', { policy: 'interleave', move: true }],
] as const) {
  test(title, () => {
    const r = Region.alloc(32 * PAGE_SIZE, { hugepages: 'never' });
    new Uint8Array(r.buffer).fill(3);
    r.bind([0], options);
    assert.deepEqual(r.pageNodes(), { nodes: { 0: 32 }, notPresent: 0, zeroPage: 0 });
    r.dispose();
  });
}

test('alloc with a node and the preferred policy places the pages there', () => {
  const p = Region.alloc(4 * PAGE_SIZE, { node: [0], policy: 'preferred' });
  new Uint8Array(p.buffer).fill(1);
  assert.deepEqual(p.pageNodes(), { nodes: { 0: 4 }, notPresent: 0, zeroPage: 0 });
  p.dispose();
});

test('binding to a node that does not exist is a RangeError naming it and the call, before any mbind', () => {
  const last = numaTopology().nodes.at(-1)!.id;
  const missing = last + 1;
  const names = `this host has node ${numaTopology().nodes.map((n) => n.id).join(',')}`;
  assert.throws(() => Region.alloc(PAGE_SIZE, { node: missing }), {
    name: 'RangeError',
    message: `Region.alloc: node ${missing} does not exist: ${names}`,
  });
  const r = Region.alloc(4 * PAGE_SIZE);
  assert.throws(() => r.bind(missing), { name: 'RangeError', message: new RegExp(`node ${missing} does not exist`) });
  assert.throws(() => r.bind([0, 7]), { name: 'RangeError', message: /node 7 does not exist/ });
  r.dispose();
});

test('bind refuses node numbers that are not whole numbers from 0, naming them', () => {
  const r = Region.alloc(4 * PAGE_SIZE);
  assert.throws(() => r.bind(-1), { name: 'RangeError', message: /got -1/ });
  assert.throws(() => r.bind(0.5), { name: 'RangeError', message: /got 0\.5/ });
  assert.throws(() => r.bind([]), { name: 'TypeError', message: /non-empty array/ });
  assert.throws(() => r.bind('0' as unknown as number), { name: 'TypeError' });
  r.dispose();
});

test('bind refuses a policy it does not know, and preferred with several nodes', () => {
  const r = Region.alloc(4 * PAGE_SIZE);
  assert.throws(() => r.bind([0, 0], { policy: 'preferred' }), { name: 'RangeError', message: /takes one node/ });
  assert.throws(() => r.bind(0, { policy: 'local' as 'bind' }), { name: 'RangeError', message: /"local"/ });
  r.dispose();
});

test('bind refuses an offset that is not page-aligned', () => {
  const r = Region.alloc(4 * PAGE_SIZE);
  assert.throws(() => r.bind(0, { offset: 100 }), { name: 'RangeError', message: /offset 100/ });
  r.dispose();
});

test('alloc with a policy but no node is a TypeError', () => {
  assert.throws(() => Region.alloc(PAGE_SIZE, { policy: 'bind' }), { name: 'TypeError', message: /policy needs node/ });
});

test('a disposed region refuses bind and pageNodes with ERR_REGION_DISPOSED', () => {
  const r = Region.alloc(4 * PAGE_SIZE);
  r.dispose();
  assert.throws(() => r.bind(0), { code: 'ERR_REGION_DISPOSED' });
  assert.throws(() => r.pageNodes(), { code: 'ERR_REGION_DISPOSED' });
});
