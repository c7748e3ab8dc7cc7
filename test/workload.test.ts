import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { scan } from '../src/index.js';
import { Workload } from '../src/workload/workload.js';
import { holdKsmLockForFile } from './helpers/hold-lock.js';

holdKsmLockForFile(); // the workload children hold mergeable memory

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function gone(pids: number[], timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (pids.every((p) => !alive(p))) return true;
    await sleep(50);
  }
  return false;
}

test('the expected counts of a workload are what an exact scan finds, volatile pages included', async () => {
  await using w = await Workload.start({
    processes: 2,
    imagePages: 100,
    zeroPages: 7,
    uniquePages: 30,
    volatilePages: 5,
    rewriteIntervalMs: 5,
    seed: 4,
  });
  assert.equal(w.children.length, 2);
  assert.deepEqual(w.expected, { pages: 284, zeroPages: 14, volatilePages: 10, uniquePages: 160, duplicatePages: 100, mergingPages: 200, achievablePages: 113 });
  const targets = w.pids.map((pid) => ({ pid }));
  const first = await scan(targets);
  await sleep(50);
  const r = await scan(targets, { previous: first });
  assert.equal(r.pages, w.expected.pages);
  assert.equal(r.zeroPages, w.expected.zeroPages);
  assert.equal(r.volatilePages, w.expected.volatilePages);
  assert.equal(r.uniquePages, w.expected.uniquePages);
  assert.equal(r.duplicatePages, w.expected.duplicatePages);
  assert.equal(r.mergingPages - (r.useZeroPages ? 0 : r.zeroPages), w.expected.mergingPages);
});

test('stop() ends every child', async () => {
  const w = await Workload.start({ processes: 3, imagePages: 8 });
  const pids = w.pids;
  assert.ok(pids.every(alive));
  await w.stop();
  assert.ok(await gone(pids));
  await w.stop(); // twice is harmless
});

for (const how of ['exits', 'is killed'] as const) {
  test(`no child outlives a parent that ${how}`, async () => {
    const workload = fileURLToPath(new URL('../src/workload/workload.ts', import.meta.url));
    const script = `
      import { Workload } from ${JSON.stringify(workload)};
      const w = await Workload.start({ processes: 2, imagePages: 16 });
      console.log(JSON.stringify(w.pids));
      ${how === 'exits' ? 'process.exit(0);' : 'setInterval(() => {}, 1000);'}
    `;
    const parent = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    const pids = await new Promise<number[]>((resolve, reject) => {
      parent.stdout.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]) as number[]);
      });
      parent.once('exit', () => reject(new Error(`parent exited before reporting: ${out}`)));
    });
    assert.equal(pids.length, 2);
    if (how === 'is killed') parent.kill('SIGKILL');
    assert.ok(await gone([...pids, parent.pid ?? 0]), 'children gone with their parent');
  });
}
