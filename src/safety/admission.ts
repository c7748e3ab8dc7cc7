// Tenant admission: whether a process may get KSM content merging under the host's isolation setting,
// and its record in the host-wide registry once it runs. Tuner.register() and spawnMerged() admit
// processes through this one path.
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

/** An admitted request: records the process once its pid exists. */
export interface Admitted {
  record(pid: number, entry: { via: 'spawn' | 'register'; name?: string }): Registration;
}

/**
 * Checks the request against the host's isolation before anything is started or changed (throws
 * ERR_ISOLATION, or a RangeError for a malformed tenant id), and returns how to record the process.
 */
export function admit(registry: Registry, request: AdmitRequest): Admitted {
  const tenant = checkTenant(request.tenant);
  if (request.merge) {
    checkMergeAdmission(registry, {
      isolation: request.isolation,
      ...(tenant === undefined ? {} : { tenant }),
      ...(request.force === undefined ? {} : { force: request.force }),
    });
  }
  return {
    record: (pid, entry) =>
      registry.add({
        pid,
        merge: request.merge,
        via: entry.via,
        ...(tenant === undefined ? {} : { tenant }),
        ...(entry.name === undefined ? {} : { name: entry.name }),
      }),
  };
}
