// The machine-wide KSM lock: one KSM-touching test or bench at a time across every process on the machine
// (ksmd's knobs and counters are global). Taken by the test harness (test/helpers/ksm.ts) and the bench
// entries (bench/); never by the CLI, which a test holding the lock runs. A lock file holds the owner's
// pid; a lock whose owner died is taken over. The file appears with its pid already in it (written aside,
// then hard-linked into place): an empty lock file read by a waiter would look ownerless and be taken over.
import { linkSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { processAlive } from './procfs.js';

const LOCK_PATH = '/tmp/pagefuse-ksm-tests.lock';

function lockOwner(): number | undefined {
  try {
    return Number(readFileSync(LOCK_PATH, 'utf8').trim());
  } catch {
    return undefined; // just removed: look again
  }
}

/** Waits until this process holds the machine-wide KSM lock; returns the release function. */
export async function lockKsm(timeoutMs = 15 * 60_000): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const aside = `${LOCK_PATH}.${process.pid}`;
    // Made anew, never opened as found: /tmp is anyone's, and root would write through a planted link.
    rmSync(aside, { force: true });
    writeFileSync(aside, `${process.pid}\n`, { flag: 'wx', mode: 0o644 });
    try {
      linkSync(aside, LOCK_PATH);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        try {
          unlinkSync(LOCK_PATH);
        } catch {
          // already gone
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      unlinkSync(aside);
    }
    const owner = lockOwner();
    if (owner !== undefined && !processAlive(owner)) {
      // Taken over only while it still names the dead owner: another waiter may have done it first.
      if (lockOwner() === owner) {
        try {
          unlinkSync(LOCK_PATH);
        } catch {
          // someone else took it over first
        }
      }
      continue;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${LOCK_PATH}`);
    await sleep(100);
  }
}
