// How the tune daemon's threads are scheduled: SCHED_BATCH, so that none of them preempts ksmd (or a VM's vCPU
// thread) when it wakes; ksmd then gets more of its CPU at the same budget (docs/kernel.md, Cost).
import { readFileSync } from 'node:fs';
import { native } from '../native.js';

const SCHED_BATCH = 3;

/** Whether this thread runs SCHED_BATCH (/proc/thread-self/sched's policy); false where it cannot be read. */
export function runsBatch(): boolean {
  try {
    const m = /^policy\s*:\s*(\d+)$/m.exec(readFileSync('/proc/thread-self/sched', 'utf8'));
    return m !== null && Number(m[1]) === SCHED_BATCH;
  } catch {
    return false;
  }
}

/**
 * Puts every thread of this process under SCHED_BATCH (`on`), or back under SCHED_OTHER, its nice value kept;
 * threads created later inherit it from the thread that creates them (libuv's pool from the main thread; the
 * scan engine's threads set SCHED_BATCH themselves). False where it could not (a seccomp filter that refuses
 * sched_setscheduler, no addon): the policy then stays as it was.
 */
export function batchScheduling(on: boolean): boolean {
  try {
    native.batchScheduling(on);
    return true;
  } catch {
    return false;
  }
}
