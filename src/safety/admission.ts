// Tenant admission: whether a process may get KSM content merging under the host's isolation setting,
// and its record in the host-wide registry once it runs. Tuner.register() and spawnMerged() admit
// processes through this one path.
import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../native.js';
import { PagefuseError, explain } from '../errors.js';
import { checkMergeAdmission, type Isolation } from './isolation.js';
import { checkTenant, type Registration, type Registry } from './registry.js';

export interface AdmitRequest {
  isolation: Isolation;
  tenant?: string;
  /** Merge anyway under 'tenant' isolation (never under 'zero-only'). */
  force?: boolean;
  /** Whether the process gets content merging; a process without it is recorded but never refused. */
  merge: boolean;
}

/**
 * An admitted request: records the process once its pid exists. Under 'tenant' isolation it holds the
 * host's admission lock until record() or release(), whichever comes first; both may be called again.
 */
export interface Admitted {
  record(pid: number, entry: { via: 'spawn' | 'register'; name?: string }): Registration;
  /** Lets the next admission in without recording (the process never started). */
  release(): void;
}

/** How long an admission waits for another in progress (a check, a spawn and a registry write: milliseconds). */
const ADMISSION_WAIT_MS = 10_000;
const NAP = new Int32Array(new SharedArrayBuffer(4));

/**
 * Takes the state directory's admission lock: flock(2) on `admission.lock`, waited for synchronously
 * (spawnMerged() returns the ChildProcess), released by closing. The check of the other tenants and the
 * record of this process happen under it, so two VMs of different tenants started at once cannot both
 * pass a check that neither has been recorded for.
 */
function lockAdmission(registry: Registry): () => void {
  registry.prepare();
  const path = join(registry.stateDir, 'admission.lock');
  let fd: number;
  try {
    // Node opens with O_CLOEXEC: a VMM spawned under the lock does not inherit it.
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw explain(err, `cannot open the admission lock ${path}: ${(err as Error).message}`);
  }
  try {
    if (!fstatSync(fd).isFile()) throw new PagefuseError('EINVAL', `the admission lock ${path} is not a regular file`, { path });
    const deadline = performance.now() + ADMISSION_WAIT_MS;
    while (!native.tryLockExclusive(fd)) {
      if (performance.now() > deadline) {
        throw new PagefuseError('EBUSY', `another admission has held ${path} for ${ADMISSION_WAIT_MS / 1000} s: a pagefuse process is stuck in one`, { path });
      }
      Atomics.wait(NAP, 0, 0, 5);
    }
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  let open = true;
  return () => {
    if (!open) return;
    open = false;
    closeSync(fd);
  };
}

/**
 * Checks the request against the host's isolation before anything is started or changed (throws
 * ERR_ISOLATION, or a RangeError for a malformed tenant id), and returns how to record the process.
 */
export function admit(registry: Registry, request: AdmitRequest): Admitted {
  const tenant = checkTenant(request.tenant);
  // Only a check that reads the other tenants' registrations races with their admissions.
  const release = request.merge && request.isolation === 'tenant' && request.force !== true ? lockAdmission(registry) : () => undefined;
  try {
    if (request.merge) {
      checkMergeAdmission(registry, {
        isolation: request.isolation,
        ...(tenant === undefined ? {} : { tenant }),
        ...(request.force === undefined ? {} : { force: request.force }),
      });
    }
  } catch (err) {
    release();
    throw err;
  }
  return {
    record: (pid, entry) => {
      try {
        return registry.add({
          pid,
          merge: request.merge,
          via: entry.via,
          ...(tenant === undefined ? {} : { tenant }),
          ...(entry.name === undefined ? {} : { name: entry.name }),
        });
      } finally {
        release();
      }
    },
    release,
  };
}
