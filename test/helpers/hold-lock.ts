// For suites whose processes hold mergeable memory without driving ksmd: while another suite drives
// ksmd under the machine-wide lock, merging them would move its global counters, so such a suite
// holds the lock for its whole file.
import { after, before } from 'node:test';
import { lockKsm } from './lock.js';

export function holdKsmLockForFile(): void {
  let release: () => void = () => {};
  before(async () => {
    release = await lockKsm();
  });
  after(() => release());
}
