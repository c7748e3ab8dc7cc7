// One KSM test at a time across every process on the machine: ksmd's knobs and counters are global.
// A lock file holds the owner's pid; a lock whose owner died is taken over.
import { openSync, writeSync, closeSync, readFileSync, unlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const LOCK_PATH = '/tmp/pagefuse-ksm-tests.lock';

function ownerAlive(): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(LOCK_PATH, 'utf8').trim());
  } catch {
    return true; // being written right now, or just removed: look again
  }
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Waits until this process holds the machine-wide KSM test lock; returns the release function. */
export async function lockKsm(timeoutMs = 15 * 60_000): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = openSync(LOCK_PATH, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
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
    }
    if (!ownerAlive()) {
      try {
        unlinkSync(LOCK_PATH);
      } catch {
        // someone else took it over first
      }
      continue;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${LOCK_PATH}`);
    await sleep(100);
  }
}
