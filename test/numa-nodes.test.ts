// Per-node KSM pages against fake procfs and sysfs trees of two and four nodes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processMergingByNode, ksmPagesByNode, PAGE_SIZE } from '../src/index.js';
import { requireRoot } from './helpers/root.js';
import { builtBin, runCli } from './helpers/cli.js';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

const KPF_LRU = 1n << 5n;
const KPF_SLAB = 1n << 7n;
const KPF_ANON = 1n << 12n;
const KPF_KSM = 1n << 21n;
const PRESENT = 1n << 63n;
const SWAPPED = 1n << 62n;
const PID = 4242;

let proc: string;

function entry(value: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(value);
  return b;
}

/** Writes 8-byte entries at entry indexes of a (sparse) file. */
function writeEntries(path: string, entries: [number, bigint][]): void {
  const fd = openSync(path, 'w');
  for (const [index, value] of entries) writeSync(fd, entry(value), 0, 8, index * 8);
  closeSync(fd);
}

function vma(start: number, pages: number, flags: string): string {
  const end = start + pages * PAGE_SIZE;
  return [
    `${start.toString(16)}-${end.toString(16)} rw-p 00000000 00:00 0 `,
    `Size:             ${pages * 4} kB`,
    `Rss:              ${pages * 4} kB`,
    `VmFlags: ${flags}`,
  ].join('\n');
}

const A = 0x10000000;
const B = 0x20000000;
const C = 0x30000000;

before(() => {
  // Frames 0-15 lie in node 0's blocks of the two-node tree (8 pages a block), 16-31 in node 1's,
  // 32-39 in no block at all. KSM frames: 3 and 12 (node 0), 17 (node 1), 35 (nowhere); 9 is a slab.
  proc = mkdtempSync(join(tmpdir(), 'pagefuse-fake-proc-'));
  const flags: [number, bigint][] = [];
  for (let pfn = 0; pfn < 40; pfn++) flags.push([pfn, [3, 12, 17, 35].includes(pfn) ? KPF_KSM | KPF_ANON | KPF_LRU : KPF_LRU]);
  // A slab page: 6.18 reports KSM and ANON for those too (the slab reuses the mapping word).
  flags[9] = [9, KPF_SLAB | KPF_ANON | KPF_KSM];
  writeEntries(join(proc, 'kpageflags'), flags);
  mkdirSync(join(proc, String(PID)));
  writeFileSync(
    join(proc, String(PID), 'smaps'),
    `${[vma(A, 8, 'rd wr mr mw me ac mg'), vma(B, 4, 'rd wr mr mw me ac'), vma(C, 4, 'rd wr mr mw me ac sd mg')].join('\n')}\n`,
  );
  const at = (base: number, page: number) => base / PAGE_SIZE + page;
  writeEntries(join(proc, String(PID), 'pagemap'), [
    [at(A, 0), PRESENT | 3n], // KSM, node 0
    [at(A, 1), PRESENT | 3n], // the same KSM page at a second address: counted again, as ksm_merging_pages does
    [at(A, 2), PRESENT | 17n], // KSM, node 1
    [at(A, 3), PRESENT | 5n], // not KSM
    [at(A, 5), PRESENT | 35n], // KSM in no node's memory block
    [at(A, 6), SWAPPED | 12n], // swapped out: the low bits are a swap entry, not a frame
    [at(B, 0), PRESENT | 12n], // KSM, but in a range KSM does not scan
    [at(C, 0), PRESENT | 12n], // KSM, node 0
    [at(C, 1), PRESENT | 20n], // not KSM
    [at(C, 2), PRESENT | 9n], // flagged KSM but a slab page (cannot really be mapped; must not count anyway)
  ]);
  // A process whose frame numbers are hidden, as the kernel shows them to anyone but root.
  mkdirSync(join(proc, '77'));
  writeFileSync(join(proc, '77', 'smaps'), `${vma(A, 2, 'rd wr mg')}\n`);
  writeEntries(join(proc, '77', 'pagemap'), [
    [at(A, 0), PRESENT],
    [at(A, 1), PRESENT],
  ]);
});

after(() => rmSync(proc, { recursive: true, force: true }));

test('a process’s merged pages are placed on the nodes that hold their frames (two nodes)', async () => {
  assert.deepEqual(await processMergingByNode(PID, { procRoot: proc, sysfsRoot: fixture('sysfs-2node') }), {
    pid: PID,
    mergingPages: 5,
    nodes: [
      { node: 0, mergingPages: 3 },
      { node: 1, mergingPages: 1 },
    ],
    unknownNodePages: 1,
  });
});

test('the same pages on a four-node tree with a memory-block hole and a memoryless node', async () => {
  // Blocks: node 0 → 0 (frames 0-7), node 1 → 1-2 (8-23), node 2 → 4 (32-39), block 3 (24-31) in none.
  assert.deepEqual(await processMergingByNode(PID, { procRoot: proc, sysfsRoot: fixture('sysfs-4node') }), {
    pid: PID,
    mergingPages: 5,
    nodes: [
      { node: 0, mergingPages: 2 },
      { node: 1, mergingPages: 2 },
      { node: 2, mergingPages: 1 },
      { node: 4, mergingPages: 0 },
    ],
    unknownNodePages: 0,
  });
});

test('every KSM page of the host per node, from kpageflags over each node’s blocks', async () => {
  assert.deepEqual(await ksmPagesByNode({ procRoot: proc, sysfsRoot: fixture('sysfs-2node') }), [
    { node: 0, ksmPages: 2 },
    { node: 1, ksmPages: 1 },
  ]);
  assert.deepEqual(await ksmPagesByNode({ procRoot: proc, sysfsRoot: fixture('sysfs-4node') }), [
    { node: 0, ksmPages: 1 },
    { node: 1, ksmPages: 2 },
    { node: 2, ksmPages: 1 },
    { node: 4, ksmPages: 0 },
  ]);
});

test('hidden frame numbers (not root) are EPERM naming pagemap', async () => {
  await assert.rejects(processMergingByNode(77, { procRoot: proc, sysfsRoot: fixture('sysfs-2node') }), {
    code: 'EPERM',
    message: /needs root .*pagemap/,
  });
});

test('per-node pages of a process that does not exist are ESRCH', async () => {
  await assert.rejects(processMergingByNode(99999, { procRoot: proc, sysfsRoot: fixture('sysfs-2node') }), {
    code: 'ESRCH',
    message: /process 99999 does not exist/,
  });
});

test('per-node pages of pid 0 are a RangeError', async () => {
  await assert.rejects(processMergingByNode(0, { procRoot: proc, sysfsRoot: fixture('sysfs-2node') }), { name: 'RangeError' });
});

test('a kernel without memory blocks in sysfs is ENOTSUP naming block_size_bytes', async () => {
  const bare = mkdtempSync(join(tmpdir(), 'pagefuse-fake-sys-'));
  mkdirSync(join(bare, 'devices/system/node/node0'), { recursive: true });
  try {
    await assert.rejects(ksmPagesByNode({ procRoot: proc, sysfsRoot: bare }), {
      code: 'ENOTSUP',
      message: /block_size_bytes is missing/,
    });
  } finally {
    rmSync(bare, { recursive: true });
  }
});

const bin = builtBin();
const cli = (...args: string[]) => runCli(args, { bin });

test('pagefuse numa --json on a two-node tree: each node\'s CPUs, memory and KSM pages, the distances and the merge_across_nodes warning', () => {
  const two = cli('numa', '--json', '--sysfs-root', fixture('sysfs-2node'), '--proc-root', proc);
  assert.equal(two.status, 0, two.stderr);
  const json = JSON.parse(two.stdout);
  assert.deepEqual(json.nodes, [
    { id: 0, cpus: [0, 1, 2, 3], mem_total: 8 * 2 ** 30, mem_free: 6 * 2 ** 30, ksm_pages: 2 },
    { id: 1, cpus: [4, 5, 6, 7], mem_total: 8 * 2 ** 30, mem_free: 7 * 2 ** 30, ksm_pages: 1 },
  ]);
  assert.deepEqual(json.distances, [
    [10, 21],
    [21, 10],
  ]);
  assert.equal(json.merge_across_nodes, 1);
  assert.equal(json.source, 'sysfs');
  assert.equal(json.warnings.length, 1);
  assert.match(json.warnings[0], /^merge_across_nodes=1 on a host with 2 memory nodes/);
});

test('pagefuse numa --json on a four-node tree with merge_across_nodes=0: KSM pages per node and no warning', () => {
  const four = cli('numa', '--json', '--sysfs-root', fixture('sysfs-4node'), '--proc-root', proc);
  assert.equal(four.status, 0, four.stderr);
  const j4 = JSON.parse(four.stdout);
  assert.deepEqual(
    j4.nodes.map((n: { id: number; ksm_pages: number }) => [n.id, n.ksm_pages]),
    [
      [0, 1],
      [1, 2],
      [2, 1],
      [4, 0],
    ],
  );
  assert.equal(j4.merge_across_nodes, 0);
  assert.deepEqual(j4.warnings, []);
});

test('pagefuse numa prints the nodes and distances as tables, then the warning', () => {
  const r = cli('numa', '--sysfs-root', fixture('sysfs-2node'), '--proc-root', proc);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(
    r.stdout.split('\nwarning: ')[0],
    [
      'node  cpus  mem_total  mem_free  ksm_pages',
      '0      0-3    8.0 GiB   6.0 GiB          2',
      '1      4-7    8.0 GiB   7.0 GiB          1',
      '',
      'distances',
      'node   0   1',
      '0     10  21',
      '1     21  10',
      '',
    ].join('\n'),
  );
  assert.match(r.stdout, /\nwarning: merge_across_nodes=1 on a host with 2 memory nodes/);
});

test('pagefuse numa refuses an unknown option with one line, exit 2', () => {
  const bad = cli('numa', '--nodes');
  assert.equal(bad.status, 2);
  assert.equal(bad.stdout, '');
  assert.equal(bad.stderr, "pagefuse numa: Unknown option '--nodes'\n");
});

test('pagefuse numa --help prints the usage on stdout, exit 0', () => {
  const help = cli('numa', '--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^usage: pagefuse numa/);
});

test('pagefuse numa on this host agrees with numaTopology()', (t) => {
  if (!requireRoot(t, 'reads /proc/kpageflags for KSM pages per node')) return;
  const r = cli('numa', '--json');
  assert.equal(r.status, 0, r.stderr);
  const json = JSON.parse(r.stdout);
  assert.equal(json.source, 'libnuma');
  assert.ok(json.nodes.length >= 1);
  assert.equal(typeof json.nodes[0].ksm_pages, 'number', 'root reads kpageflags');
  assert.deepEqual(json.warnings, []);
});
