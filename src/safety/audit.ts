// Posture report: each risk of running KSM on this host, as a finding with a severity.
import { THIN_MARGIN_FRACTION, type Exposure } from './exposure.js';
import type { MemInfo } from '../host/meminfo.js';
import type { Isolation } from './isolation.js';
import { mergingTenants } from './isolation.js';
import type { Registration } from './registry.js';
import type { NumaTopology } from '../numa/topology.js';
import { mergeAcrossNodesWarning } from '../numa/warnings.js';
import { formatBytes } from '../units.js';

export type Severity = 'info' | 'warning' | 'critical';
export const SEVERITIES: readonly Severity[] = ['info', 'warning', 'critical'];

export interface Finding {
  id: string;
  severity: Severity;
  message: string;
}

export interface AuditProcess {
  pid: number;
  name: string;
  mergeAny: boolean;
  mergeable: boolean;
  mergingPages: number;
  zeroPages: number;
  /** argv, for QEMU's mem-merge option. */
  cmdline: string[];
}

export interface AuditSnapshot {
  ksmAvailable: boolean;
  run: number;
  mergeAcrossNodes?: number;
  useZeroPages?: number;
  topology: NumaTopology;
  mem: MemInfo;
  exposure: Exposure;
  processes: AuditProcess[];
  registrations: Registration[];
  isolation: Isolation;
  /** Pids of running ksmtuned processes, and the pid file found, if any. */
  ksmtuned: { pids: number[]; pidFile?: string };
  /** Distro switches that turn KSM on at boot (e.g. systemd ksm.service enabled, KSM_ENABLED=AUTO). */
  bootSwitches: string[];
  /** Processes whose KSM state this user may not read (another user's, without root): not audited. */
  processesUnreadable?: number;
}

export interface AuditResult {
  findings: Finding[];
  exposureBytes: number;
  marginBytes: number;
  availableBytes: number;
  isolation: Isolation;
}

// The same units as the rest of pagefuse's output (the header above the findings shows these figures too).
const fmt = formatBytes;

/** A margin below this share of MemTotal is thin. */

export function isQemu(p: AuditProcess): boolean {
  return /^qemu-(system-|kvm)/.test(p.name) || /(^|\/)qemu-(system-[\w-]+|kvm)$/.test(p.cmdline[0] ?? '');
}

/** QEMU merges guest RAM unless `-machine …,mem-merge=off` is given. */
export function qemuMemMergeOn(cmdline: readonly string[]): boolean {
  return !cmdline.some((a) => /(^|,)mem-merge=(off|no|false)\b/.test(a));
}

export function evaluateAudit(s: AuditSnapshot): AuditResult {
  const findings: Finding[] = [];
  const add = (id: string, severity: Severity, message: string) => findings.push({ id, severity, message });
  const { exposureBytes, availableBytes, marginBytes } = s.exposure;

  if ((s.processesUnreadable ?? 0) > 0) {
    add(
      'audit-incomplete',
      'warning',
      `${s.processesUnreadable} processes could not be read (another user's ksm_stat and smaps need root): tenants, strays and QEMU's mem-merge were checked only on the rest; run as root to audit every process`,
    );
  }

  if (!s.ksmAvailable) {
    add('ksm-absent', 'info', 'KSM is not available on this kernel (/sys/kernel/mm/ksm is missing): nothing is merged');
  }

  if (exposureBytes > 0) {
    const base = `${fmt(exposureBytes)} would come back if every merged page were written; MemAvailable + SwapFree is ${fmt(availableBytes)}`;
    const advice = 'swap must cover committed RAM whether or not KSM runs (RHEL tuning guide): add swap or run fewer guests';
    if (marginBytes < 0) add('unshare-exposure', 'critical', `${base}: the host would run out of memory; ${advice}`);
    else if (marginBytes < THIN_MARGIN_FRACTION * s.mem.memTotal) add('unshare-exposure', 'warning', `${base}: the margin (${fmt(marginBytes)}) is under ${THIN_MARGIN_FRACTION * 100}% of RAM; ${advice}`);
    else add('unshare-exposure', 'info', `${base}: margin ${fmt(marginBytes)}`);
  }

  // Processes by name (a VM's name: registered, else found by VM discovery), the pid alongside.
  const names = new Map<number, string>(s.processes.map((p) => [p.pid, p.name]));
  for (const r of s.registrations) if (r.name !== undefined) names.set(r.pid, r.name);
  const who = (pid: number): string => (names.has(pid) ? `${names.get(pid)} (pid ${pid})` : `pid ${pid}`);

  const mergingPids = new Set(s.processes.filter((p) => p.mergeAny || p.mergeable).map((p) => p.pid));
  const liveMerging = s.registrations.filter((r) => r.merge && mergingPids.has(r.pid));
  const tenants = mergingTenants(liveMerging);
  const named = [...tenants.keys()].filter((t) => t !== '(none)');
  if (named.length > 1) {
    const list = named.map((t) => `${t}: ${tenants.get(t)!.map(who).join(', ')}`).join('; ');
    add(
      'multiple-tenants',
      s.isolation === 'host' ? 'warning' : 'critical',
      `VMs of ${named.length} tenants are mergeable at once: ${list}. KSM cannot keep tenants apart: page fusion is a side channel between them; set isolation to tenant or zero-only`,
    );
  }

  if (s.isolation === 'zero-only' && (s.run === 1 || mergingPids.size > 0)) {
    const list = [...mergingPids].slice(0, 10).map(who).join(', ');
    add('zero-only-violated', 'critical', `isolation is zero-only, yet ${s.run === 1 ? 'ksmd is running' : ''}${s.run === 1 && list ? ' and ' : ''}${list ? `processes are mergeable: ${list}${mergingPids.size > 10 ? ', …' : ''}` : ''}`);
  }

  const numa = mergeAcrossNodesWarning(s.topology, s.mergeAcrossNodes === 1);
  if (numa !== undefined) add('merge-across-nodes', 'warning', numa);

  if (s.ksmtuned.pids.length > 0 || s.ksmtuned.pidFile) {
    const where = s.ksmtuned.pids.length > 0 ? `pid ${s.ksmtuned.pids.join(', ')}` : `pid file ${s.ksmtuned.pidFile}`;
    add('ksmtuned-running', 'warning', `ksmtuned is running (${where}): KSM was switched on by a distro default; it counts only qemu processes and fights any other tuner (systemctl disable --now ksmtuned)`);
  }
  for (const sw of s.bootSwitches) add('ksm-enabled-at-boot', 'info', `KSM is switched on at boot by ${sw}`);

  const qemus = s.processes.filter((p) => isQemu(p) && (p.mergeable || p.mergeAny) && qemuMemMergeOn(p.cmdline));
  if (qemus.length > 0) {
    add('qemu-mem-merge', 'info', `QEMU marks guest RAM mergeable by default (mem-merge=on) in ${qemus.map((p) => who(p.pid)).join(', ')}; pass -machine mem-merge=off to keep a guest out of KSM`);
  }

  const registered = new Set(s.registrations.map((r) => r.pid));
  const strays = s.processes.filter((p) => p.mergeAny && !registered.has(p.pid));
  if (strays.length > 0) {
    const list = strays.slice(0, 10).map((p) => who(p.pid)).join(', ');
    add('unregistered-merge-any', 'warning', `${strays.length} process(es) merge all their memory (ksm_merge_any) without being registered with pagefuse: ${list}${strays.length > 10 ? ', …' : ''}`);
  }

  findings.sort((a, b) => SEVERITIES.indexOf(b.severity) - SEVERITIES.indexOf(a.severity) || a.id.localeCompare(b.id));
  return { findings, exposureBytes, marginBytes, availableBytes, isolation: s.isolation };
}

/**
 * `audit`'s exit status when a finding is at or above --fail-on: 3, apart from 1 (the audit itself failed)
 * and 2 (bad usage), so that a CI job can tell a risky host from a broken check.
 */
export const EXIT_FINDINGS = 3;

/** Exit status for `audit --fail-on`: EXIT_FINDINGS when any finding is at or above the given severity, else 0. */
export function auditExitCode(result: AuditResult, failOn: Severity): number {
  const limit = SEVERITIES.indexOf(failOn);
  return result.findings.some((f) => SEVERITIES.indexOf(f.severity) >= limit) ? EXIT_FINDINGS : 0;
}
