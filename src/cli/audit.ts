// pagefuse audit: the host's KSM posture, one finding per risk, with a severity.
import { ksmOptionsFromEnv } from '../ksm/ksm.js';
import { audit, type HostOptions } from '../safety/collect.js';
import { auditExitCode, SEVERITIES, type Severity } from '../safety/audit.js';
import { EXIT_OK, UsageError, formatBytes, parse, printJson } from './common.js';
import { escapeTerminal } from '../report/escape.js';

const HELP = `usage: pagefuse audit [--json] [--fail-on info|warning|critical]

Reports the risks of running KSM on this host, each with a severity:
  unshare-exposure        bytes that come back if every merged page is written, against
                          MemAvailable + SwapFree (swap must cover committed RAM)
  multiple-tenants        VMs of several tenants mergeable at once (page fusion is a side channel)
  zero-only-violated      content merging while the host's isolation is zero-only
  merge-across-nodes      merge_across_nodes=1 on a multi-node host
  ksmtuned-running        ksmtuned drives KSM (a distro default)
  ksm-enabled-at-boot     a service or setting that switches KSM on at boot
  qemu-mem-merge          QEMU guests merged because mem-merge is on by default
  unregistered-merge-any  processes merging all their memory that pagefuse does not know
  audit-incomplete        processes this user may not read (run without root) were left out

Exit status: 0 when no finding is at or above --fail-on (default critical); 3 when one is; 1 when the
audit itself failed (it could not read the host); 2 for bad usage; 141 when stdout was closed.
Processes are named (a VM by its name) with their pid; only counts, names and pids are printed,
no page content or hash ever leaves the process.

  --json              machine-readable: { findings: [{ id, severity, message }], exposure_bytes,
                      margin_bytes, available_bytes, isolation }
  --fail-on SEVERITY  info, warning or critical
`;

/** Fixture roots for tests and chroots, from the environment (as `status` reads PAGEFUSE_KSM_SYSFS). */
export function hostOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): HostOptions {
  return {
    ...ksmOptionsFromEnv(env),
    ...(env.PAGEFUSE_SYS_ROOT ? { sysRoot: env.PAGEFUSE_SYS_ROOT } : {}),
    ...(env.PAGEFUSE_ROOT_DIR ? { rootDir: env.PAGEFUSE_ROOT_DIR } : {}),
  };
}

export async function run(args: string[]): Promise<number> {
  const { values } = parse('audit', args, {
    options: { json: { type: 'boolean' }, 'fail-on': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return EXIT_OK;
  }
  const failOn = (values['fail-on'] ?? 'critical') as Severity;
  if (!SEVERITIES.includes(failOn)) {
    throw new UsageError(`pagefuse audit: --fail-on must be info, warning or critical, got '${values['fail-on']}'`);
  }
  const result = await audit(hostOptionsFromEnv());
  if (values.json) {
    printJson({
      findings: result.findings,
      exposure_bytes: result.exposureBytes,
      margin_bytes: result.marginBytes,
      available_bytes: result.availableBytes,
      isolation: result.isolation,
    });
  } else {
    process.stdout.write(
      `isolation: ${result.isolation}\n` +
        `un-share exposure: ${formatBytes(result.exposureBytes)} against ${formatBytes(result.availableBytes)} available ` +
        `(MemAvailable + SwapFree), margin ${formatBytes(result.marginBytes)}\n\n`,
    );
    if (result.findings.length === 0) process.stdout.write('no findings\n');
    // Messages name processes and tenants: escaped for the terminal (the JSON keeps them exact).
    for (const f of result.findings) process.stdout.write(`${f.severity.toUpperCase().padEnd(8)} ${f.id}: ${escapeTerminal(f.message)}\n`);
  }
  return auditExitCode(result, failOn);
}
