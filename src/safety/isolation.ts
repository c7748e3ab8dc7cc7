// Which VMs may share pages: one security domain (host), tenants kept apart (tenant), or no content
// merging at all (zero-only).
import { readFileSync } from 'node:fs';
import { PagefuseError, invalidArgValue } from '../errors.js';
import type { Registration, Registry } from './registry.js';

export type Isolation = 'host' | 'tenant' | 'zero-only';
export const ISOLATIONS: readonly Isolation[] = ['host', 'tenant', 'zero-only'];

export const DEFAULT_CONFIG_PATH = '/etc/pagefuse/pagefuse.conf';

export function parseIsolation(value: unknown, where = 'isolation'): Isolation {
  if (typeof value === 'string' && (ISOLATIONS as readonly string[]).includes(value)) return value as Isolation;
  throw invalidArgValue(`${where} must be one of ${ISOLATIONS.join(', ')}`, value);
}

/**
 * The host's isolation setting: PAGEFUSE_ISOLATION, else ISOLATION= in the config file
 * (PAGEFUSE_CONFIG or /etc/pagefuse/pagefuse.conf), else 'host'.
 */
export function readIsolation(configPath = process.env.PAGEFUSE_CONFIG ?? DEFAULT_CONFIG_PATH): Isolation {
  if (process.env.PAGEFUSE_ISOLATION) return parseIsolation(process.env.PAGEFUSE_ISOLATION, 'PAGEFUSE_ISOLATION');
  let text: string;
  try {
    text = readFileSync(configPath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'host';
    throw err;
  }
  for (const [i, raw] of text.split('\n').entries()) {
    const m = /^\s*ISOLATION\s*=\s*"?([^"#\s]*)"?\s*(#.*)?$/.exec(raw);
    if (m) return parseIsolation(m[1], `${configPath}:${i + 1}: ISOLATION`);
  }
  return 'host';
}

export interface AdmissionRequest {
  tenant?: string;
  isolation: Isolation;
  /** Merge anyway under 'tenant' isolation (never under 'zero-only'). */
  force?: boolean;
}

/** The tenants whose processes currently have content merging, from live registrations. */
export function mergingTenants(registrations: readonly Registration[]): Map<string, number[]> {
  const tenants = new Map<string, number[]>();
  for (const r of registrations) {
    if (!r.merge) continue;
    const key = r.tenant ?? '(none)';
    tenants.set(key, [...(tenants.get(key) ?? []), r.pid]);
  }
  return tenants;
}

/**
 * Throws ERR_ISOLATION when giving content merging to a process of `tenant` would break the host's
 * isolation setting. Called before anything is started or changed.
 */
export function checkMergeAdmission(registry: Registry, request: AdmissionRequest): void {
  if (request.isolation === 'zero-only') {
    throw new PagefuseError(
      'ERR_ISOLATION',
      'isolation is zero-only: KSM content merging is off on this host (only zero pages of memory pagefuse owns are reclaimed)',
    );
  }
  if (request.isolation !== 'tenant' || request.force) return;
  if (request.tenant === undefined) {
    throw new PagefuseError('ERR_ISOLATION', 'isolation is tenant: a mergeable VM needs a tenant id (--tenant ID)');
  }
  for (const [tenant, pids] of mergingTenants(registry.list())) {
    if (tenant !== request.tenant) {
      throw new PagefuseError(
        'ERR_ISOLATION',
        `isolation is tenant: tenant '${tenant}' already has mergeable VMs (pid ${pids.join(', ')}); ` +
          `refusing to make tenant '${request.tenant}' mergeable on the same host (use --force to override)`,
      );
    }
  }
}
