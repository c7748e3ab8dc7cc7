// The tune daemon's scheduling policy (src/host/scheduling.ts): every thread SCHED_BATCH, threads created later too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { SCHED_BATCH, SCHED_OTHER, batchScheduling, schedulingPolicy } from '../src/host/scheduling.js';

const policies = (): number[] =>
  [...new Set(readdirSync('/proc/self/task').map((tid) => Number(/^policy\s*:\s*(\d+)$/m.exec(readFileSync(`/proc/self/task/${tid}/sched`, 'utf8'))![1])))];

/** The policy a thread started now runs under, as it reads it itself. */
async function newThreadPolicy(): Promise<number> {
  const w = new Worker(`require('node:worker_threads').parentPort.postMessage(/^policy\\s*:\\s*(\\d+)$/m.exec(require('node:fs').readFileSync('/proc/thread-self/sched', 'utf8'))[1])`, { eval: true });
  const [policy] = (await once(w, 'message')) as [string];
  await w.terminate();
  return Number(policy);
}

test('batchScheduling puts every thread of the process under SCHED_BATCH, threads started after it too, and back', async () => {
  assert.equal(schedulingPolicy(), SCHED_OTHER, 'the test process starts SCHED_OTHER');
  try {
    assert.equal(batchScheduling(true), true);
    const on = [policies(), schedulingPolicy(), await newThreadPolicy()];
    assert.equal(batchScheduling(false), true);
    assert.deepEqual([on, [policies(), schedulingPolicy(), await newThreadPolicy()]], [[[SCHED_BATCH], SCHED_BATCH, SCHED_BATCH], [[SCHED_OTHER], SCHED_OTHER, SCHED_OTHER]]);
  } finally {
    batchScheduling(false);
  }
});
