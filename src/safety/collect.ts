// Gathers what the audit and the overcommit guard reason about, from the live host (or fixture trees).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Ksm, type KsmOptions } from '../ksm/ksm.js';
import { listKsmProcesses } from '../ksm/process.js';
import { numaTopology } from '../numa/topology.js';
import { PAGE_SIZE } from '../region.js';
import { evaluateAudit, type AuditResult, type AuditSnapshot } from './audit.js';
import { admission, unshareExposure, type Admission, type Exposure } from './exposure.js';
import { readMemInfo } from '../host/meminfo.js';
import { findKsmtuned, ksmBootSwitches } from '../host/ksm-services.js';
import { readIsolation, type Isolation } from './isolation.js';
import { Registry } from './registry.js';
import { vmNames as discoverVmNames } from './vms.js';
import { invalidNumber, throwIfAborted } from '../errors.js';

export interface HostOptions extends KsmOptions {
  /** Root of the sysfs tree holding devices/system/node (default '/sys'). */
  sysRoot?: string;
  /** Prefix for /etc and /run (default '/'). */
  rootDir?: string;
  registry?: Registry;
  isolation?: Isolation;
}

/** Un-share exposure of the whole host right now. */
export async function hostExposure(options: HostOptions = {}): Promise<Exposure> {
  const ksm = new Ksm(options);
  const [state, mem] = await Promise.all([
    (await ksm.available()) ? ksm.read() : undefined,
    readMemInfo(options.procRoot),
  ]);
  return unshareExposure({
    pagesSharing: state?.counters.pages_sharing ?? 0,
    ksmZeroPages: state?.counters.ksm_zero_pages ?? 0,
    pageSize: PAGE_SIZE,
    mem,
  });
}

export interface CanAdmitOptions extends HostOptions {
  /** Bytes to keep free beyond the VM and the exposure. */
  reserveBytes?: number;
  signal?: AbortSignal;
}

/**
 * Whether a new VM of `bytes` fits on this host if every merged page came back (MemAvailable + SwapFree
 * must hold the VM and the un-share exposure, plus `reserveBytes`). A few small async reads.
 */
export async function canAdmit(bytes: number, options: CanAdmitOptions = {}): Promise<Admission> {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes) || bytes < 0) {
    throw invalidNumber(`canAdmit: bytes must be a non-negative number`, bytes);
  }
  throwIfAborted(options?.signal, 'canAdmit');
  const exposure = await hostExposure(options);
  throwIfAborted(options.signal);
  return admission(bytes, exposure, options.reserveBytes ?? 0);
}

async function cmdline(procRoot: string, pid: number): Promise<string[]> {
  try {
    return (await readFile(join(procRoot, String(pid), 'cmdline'), 'utf8')).split('\0').filter((a) => a.length > 0);
  } catch {
    return [];
  }
}

export async function collectAuditSnapshot(options: HostOptions = {}): Promise<AuditSnapshot> {
  const procRoot = options.procRoot ?? '/proc';
  const ksm = new Ksm(options);
  const available = await ksm.available();
  const state = available ? await ksm.read() : undefined;
  const mem = await readMemInfo(procRoot);
  const registry = options.registry ?? new Registry({ procRoot });
  const { processes, unreadable } = await listKsmProcesses({ procRoot, includeRegistered: true });
  // A VM by its registered name, else its guest name (-name guest=web1, --id…), as top, serve and the scan name it.
  const vmNames = await discoverVmNames({ procRoot, registry });
  const settings = state?.settings ?? {};
  return {
    ksmAvailable: available,
    run: Number(settings.run ?? 0),
    ...(settings.merge_across_nodes === undefined ? {} : { mergeAcrossNodes: Number(settings.merge_across_nodes) }),
    ...(settings.use_zero_pages === undefined ? {} : { useZeroPages: Number(settings.use_zero_pages) }),
    topology: numaTopology(options.sysRoot === undefined ? {} : { sysfsRoot: options.sysRoot }),
    mem,
    exposure: unshareExposure({
      pagesSharing: state?.counters.pages_sharing ?? 0,
      ksmZeroPages: state?.counters.ksm_zero_pages ?? 0,
      pageSize: PAGE_SIZE,
      mem,
    }),
    processes: await Promise.all(
      processes.map(async (p) => ({
        pid: p.pid,
        name: vmNames.get(p.pid) ?? p.name,
        mergeAny: p.mergeAny === true,
        mergeable: p.mergeable === true || p.mergingPages > 0,
        mergingPages: p.mergingPages,
        zeroPages: p.zeroPages,
        cmdline: await cmdline(procRoot, p.pid),
      })),
    ),
    registrations: registry.list(),
    isolation: options.isolation ?? readIsolation(),
    ksmtuned: await findKsmtuned({ procRoot, ...(options.rootDir === undefined ? {} : { rootDir: options.rootDir }) }),
    bootSwitches: await ksmBootSwitches(options.rootDir === undefined ? {} : { rootDir: options.rootDir }),
    processesUnreadable: unreadable,
  };
}

export async function audit(options: HostOptions = {}): Promise<AuditResult> {
  return evaluateAudit(await collectAuditSnapshot(options));
}
