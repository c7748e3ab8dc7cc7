// Which VMs may share pages: one security domain (host), tenants kept apart (tenant), or no content
// merging at all (zero-only).
import { PagefuseError, invalidArgValue } from '../errors.js';
import { readRegularFileSync } from '../host/regular-file.js';
import { configLines } from '../host/config-lines.js';
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
 * (PAGEFUSE_CONFIG or /etc/pagefuse/pagefuse.conf), else 'host'. The file is read strictly, as tune.conf is:
 * a line that is not KEY=VALUE, a key other than ISOLATION or ISOLATION twice is an error, never a silent
 * 'host' (an `ISOLATON=tenant` or `isolation=zero-only` meant one security domain for every tenant).
 */
export function readIsolation(configPath = process.env.PAGEFUSE_CONFIG ?? DEFAULT_CONFIG_PATH): Isolation {
  if (process.env.PAGEFUSE_ISOLATION) return parseIsolation(process.env.PAGEFUSE_ISOLATION, 'PAGEFUSE_ISOLATION');
  let text: string;
  try {
    text = readRegularFileSync(configPath, { what: 'the config', maxBytes: 1024 * 1024 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'host';
    throw err;
  }
  let found: Isolation | undefined;
  for (const { line, key, value } of configLines(text)) {
    const where = `${configPath}:${line}`;
    if (key === undefined) throw new PagefuseError('EINVAL', `${where}: expected KEY=VALUE (pagefuse.conf holds ISOLATION=host|tenant|zero-only)`, { path: configPath });
    if (key !== 'ISOLATION') throw new PagefuseError('EINVAL', `${where}: unknown key ${key} (pagefuse.conf holds ISOLATION only)`, { path: configPath });
    if (found !== undefined) throw new PagefuseError('EINVAL', `${where}: ISOLATION is set twice`, { path: configPath });
    const v = /^(?:"([^"]*)"|'([^']*)'|([^"'\s#]*))\s*(#.*)?$/.exec(value.trimStart());
    if (v === null) throw new PagefuseError('EINVAL', `${where}: ISOLATION takes one word, quoted or not, then at most a # comment`, { path: configPath });
    found = parseIsolation(v[1] ?? v[2] ?? v[3], `${where}: ISOLATION`);
  }
  return found ?? 'host';
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
    throw new PagefuseError('ERR_ISOLATION', 'isolation is tenant: a mergeable VM needs a tenant id (--tenant ID; tenant in the API)');
  }
  for (const [tenant, pids] of mergingTenants(registry.list())) {
    if (tenant !== request.tenant) {
      throw new PagefuseError(
        'ERR_ISOLATION',
        `isolation is tenant: tenant '${tenant}' already has mergeable VMs (pid ${pids.join(', ')}); ` +
          `refusing to make tenant '${request.tenant}' mergeable on the same host (--force, or force: true in the API, overrides)`,
      );
    }
  }
}
