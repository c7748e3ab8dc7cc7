// How the tune daemon's threads are scheduled: SCHED_BATCH, so that none of them preempts ksmd (or a VM's vCPU
// thread) when it wakes; ksmd then gets more of its CPU at the same budget (docs/kernel.md, Cost).
import { readFileSync } from 'node:fs';
import { native } from '../native.js';

/** Linux's scheduling policies, as /proc/<pid>/sched and sched_setscheduler(2) number them. */
export const SCHED_OTHER = 0;
export const SCHED_BATCH = 3;
export const SCHED_IDLE = 5;

/** This thread's scheduling policy (/proc/thread-self/sched); undefined where it cannot be read. */
export function schedulingPolicy(): number | undefined {
  try {
    const m = /^policy\s*:\s*(\d+)$/m.exec(readFileSync('/proc/thread-self/sched', 'utf8'));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
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

/**
 * The tune daemon's start: SCHED_BATCH for all its threads when it runs under the default policy. One the
 * operator chose (SCHED_IDLE from `chrt -i` or a unit's CPUSchedulingPolicy=, a realtime policy) is kept.
 * Whether it switched.
 */
export function batchUnlessChosen(): boolean {
  return schedulingPolicy() === SCHED_OTHER && batchScheduling(true);
}
