// What boundMemory() (tune's and serve's memory bounds, src/cli/common.ts) does to glibc's allocator, seen
// from a child process that runs it and then allocates the way a daemon does; and what tune's compiler
// setting (src/cli/compiler.ts) does to a hot function.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { REPO } from './helpers/cli.js';

// Frees an 8 MiB block (glibc mapped it) and then keeps eight 1 MiB blocks: by glibc's default the free
// raises its mmap threshold to 8 MiB and the eight come from the heap, which grows 8 MiB and stays grown;
// with the threshold pinned they are mapped on their own and handed back when freed.
const CHILD = `
import { readFileSync } from 'node:fs';
import { boundMemory } from ${JSON.stringify(`${REPO}/src/cli/common.ts`)};
boundMemory();
const heapBytes = () => {
  const m = /^([0-9a-f]+)-([0-9a-f]+) .*\\[heap\\]$/m.exec(readFileSync('/proc/self/maps', 'utf8'));
  return m === null ? 0 : parseInt(m[2], 16) - parseInt(m[1], 16);
};
let big = new ArrayBuffer(8 << 20);
new Uint8Array(big).fill(1);
big = null;
globalThis.gc();
globalThis.gc();
await new Promise((resolve) => setTimeout(resolve, 100));
const before = heapBytes();
const kept = [];
for (let i = 0; i < 8; i++) kept.push(new Uint8Array(new ArrayBuffer(1 << 20)).fill(1));
process.stdout.write(String(heapBytes() - before));
`;

test('after boundMemory, blocks of a size glibc once mapped and freed no longer grow its heap', () => {
  const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', CHILD], { cwd: REPO, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(Number(r.stdout), 0);
});

// tune's JavaScript stays on V8's baseline tier: a function run hot enough for TurboFan is baseline code still.
const HOT = `
import { baselineCompilerOnly } from ${JSON.stringify(`${REPO}/src/cli/compiler.ts`)};
baselineCompilerOnly();
function f(a) { let s = 0; for (let i = 0; i < a.length; i++) s += a[i] * 2; return s; }
const a = new Array(1000).fill(1);
for (let i = 0; i < 20000; i++) f(a);
const status = %GetOptimizationStatus(f);
process.stdout.write(JSON.stringify({ turbofanned: (status & 64) !== 0, baseline: (status & (1 << 15)) !== 0 }));
`;

test("after tune's compiler setting, a hot function stays baseline code, never TurboFan's", () => {
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--import', 'tsx', '--input-type=module', '-e', HOT], { cwd: REPO, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { turbofanned: false, baseline: true });
});
