// pagefuse scan: how much KSM would save on some processes, before ksmd spends anything on it.
import { processKsm } from '../ksm/process.js';
import { PAGE_SIZE } from '../region.js';
import { PagefuseError } from '../errors.js';
import { ksmOptionsFromEnv } from '../ksm/ksm.js';
import { scan, type ScanMode, type ScanResult, type TargetScan, type TotalsScanResult, type TotalsTargetScan } from '../scan/scan.js';
import { readablePids } from '../scan/pids.js';
import { discoverVms } from '../safety/vms.js';
import { HostSource } from '../report/source.js';
import { readProcStat } from '../host/procfs.js';
import { escapeTerminal } from '../report/escape.js';
import { EXIT_FAILURE, EXIT_OK, UsageError, formatBytes, formatTable, intFlag, parse, printJson, wholeNumber } from './common.js';

const HELP = `usage: pagefuse scan (--pid PID… | --vms | --all) [--mode exact|fast|sampled] [--sample-rate M] [--threads N] [--unmergeable] [--totals] [--json]

Reads the private anonymous memory of processes (only what KSM would merge: mappings with
MADV_MERGEABLE or PR_SET_MEMORY_MERGE, VmFlags "mg"), hashes every resident page and reports how
many pages KSM would free, per process and in total, which processes share content, and what KSM
has merged so far. Reading another user's process needs root.

  --pid PID…         processes to scan (repeat the flag, or separate with commas)
  --vms              processes of virtual machine monitors (qemu-system-*, qemu-kvm, firecracker,
                     cloud-hypervisor, crosvm), found by executable or argv[0], named by their VM
                     name (QEMU's -name guest=…)
  --all              every process this user may read
  --mode MODE        exact (default: every page hashed, equal hashes byte-compared), fast (a
                     partial-page prefilter first; processes are read whole, so the same as exact
                     for them), sampled (1/--sample-rate of contents, with an error bound)
  --sample-rate M    sampled mode: keep contents whose hash is 0 modulo M (power of 2, default 64)
  --threads N        hashing threads (default: CPUs, at most 8)
  --unmergeable      include private anonymous memory not marked mergeable
  --totals           only the totals: no per-process table or sharing matrix, and no bitmask of
                     processes per content (8 bytes per index entry per 64 processes), for sampled
                     scans of many VMs; in --json the per-process unique, duplicate and shared
                     counts and the sharing matrix are null
  --json             machine-readable output (snake_case)

The estimate is what merging gives back by the end of ksmd's second full scan over these processes
(its first only records each page's checksum; docs/savings.md): pages merged by KSM (the predicted
pages_sharing), zero pages KSM maps to the zero page (use_zero_pages=1), and the zero-filled subpages
of the huge pages ksmd splits in that scan (it splits a huge page to merge any subpage of it, and the
split frees the zero-filled subpages). With use_zero_pages=0, huge pages holding only zero subpages and
unique data are split at most one per full scan after that (smart_scan=1: on about scans 3, 4, 6, 9,
14, 23, then every ninth): their zero subpages are printed apart, not in the estimate
(thp_slow_split_* in --json). The per-process "would save" column is each process's
share of the estimate and sums to the total.

After ksmd ran, the zero subpages it freed by splitting huge pages are printed apart, "already
freed" (thp_split_freed_pages in --json): counted beyond each process's zero-page mappings from
before KSM first merged it, which a scan (as root) records for processes not yet merged, as status,
top, serve and tune do (PAGEFUSE_STATE_DIR, default /run/pagefuse). A merged process none of them saw
before has no such count: its freed zero subpages are not counted, and the output says so.

What a scan cannot see: pages that change between ksmd's passes (volatile) are merged by a
scan's estimate but not by ksmd; scan twice (the API's previous option) to leave them out.
Zero pages inside transparent huge pages are told apart only as root (kpageflags).
Processes this user may not read are listed on stderr; with --vms or --all the scan exits 1 when
it could read none of them.
`;

function parsePids(values: string[], positionals: string[]): number[] {
  const pids: number[] = [];
  for (const v of [...values, ...positionals].flatMap((s) => s.split(','))) {
    if (v.trim() === '') continue;
    const n = wholeNumber(v.trim());
    if (!Number.isSafeInteger(n) || n < 1 || n > 2 ** 22) throw new UsageError(`pagefuse scan: --pid needs process ids (1 to ${2 ** 22}), got '${v}'`);
    pids.push(n);
  }
  if (pids.length === 0) throw new UsageError(`pagefuse scan: --pid needs process ids, got '${values.join(',')}'`);
  return [...new Set(pids)];
}

function progressBar(): ((p: { bytesDone: number; bytesTotal: number }) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  let last = 0;
  return ({ bytesDone, bytesTotal }) => {
    const now = Date.now();
    if (now - last < 100 && bytesDone < bytesTotal) return;
    last = now;
    const frac = bytesTotal > 0 ? bytesDone / bytesTotal : 1;
    const width = 30;
    const full = Math.round(frac * width);
    process.stderr.write(
      `\r[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${formatBytes(bytesDone)} / ${formatBytes(bytesTotal)}\x1b[K`,
    );
  };
}

interface KsmNow {
  mergingPages: number;
  zeroPages: number;
  /**
   * Zero subpages ksmd already split out of the process's huge pages: its zero-page mappings that are not
   * KSM's, beyond its zero-page baseline (docs/savings.md); 0 while KSM has merged none of its pages; null
   * when it has and no pagefuse reader recorded a baseline before, or the scan could not tell huge pages
   * apart (not root), or it read unmergeable memory too (--unmergeable: the baselines count mergeable areas).
   */
  thpSplitFreedPages: number | null;
}

/**
 * After the scan: each process's ksm_stat, and what ksmd freed in it by splitting huge pages, from the
 * baselines `readers` share (read once for all). A process KSM has merged none of gives them its own: its
 * zero-page mappings as this scan counted them, so that a scan after ksmd ran counts the splits since. Only
 * where `counted`: the scan told huge pages apart (root) and read the mergeable areas alone, as the baselines
 * count.
 */
async function ksmNow(targets: (TargetScan | TotalsTargetScan)[], counted: boolean, procRoot: string | undefined, readers: HostSource): Promise<(KsmNow | undefined)[]> {
  const read = await Promise.all(
    targets.map(async (t) => {
      if (t.pid === undefined) return undefined;
      try {
        const s = await processKsm(t.pid, procRoot === undefined ? {} : { procRoot });
        const start = counted ? (await readProcStat(procRoot ?? '/proc', t.pid))?.startTime : undefined;
        return { t, pid: t.pid, s, merged: s.mergingPages + s.zeroPages > 0, start };
      } catch {
        return undefined;
      }
    }),
  );
  const known = read.filter((r): r is NonNullable<typeof r> & { start: number } => r?.start !== undefined);
  await readers.recordZeroBaselines(known.filter((r) => !r.merged).map((r) => ({ pid: r.pid, start: r.start, zeroMappedPages: r.t.zeroMappedPages })));
  const baselines = await readers.zeroBaselinesOf(known.filter((r) => r.merged));
  return read.map((r) => {
    if (r === undefined) return undefined;
    const baseline = baselines.get(r.pid);
    const thpSplitFreedPages = !r.merged ? 0 : baseline === undefined ? null : Math.max(0, r.t.zeroMappedPages - r.t.ksmZeroMappedPages - baseline);
    return { mergingPages: r.s.mergingPages, zeroPages: r.s.zeroPages, thpSplitFreedPages };
  });
}

/** Σ of the processes' THP-split pages ksmd freed, and how many merged processes have no baseline to count them from. */
function splitFreed(now: (KsmNow | undefined)[]): { pages: number; unknown: number } {
  const known = now.filter((n): n is KsmNow => n !== undefined);
  return { pages: known.reduce((a, n) => a + (n.thpSplitFreedPages ?? 0), 0), unknown: known.filter((n) => n.thpSplitFreedPages === null).length };
}

function targetJson(t: TargetScan | TotalsTargetScan, now: KsmNow | undefined) {
  return {
    pid: t.pid,
    name: t.name,
    pages: t.pages,
    zero_pages: t.zeroPages,
    thp_zero_pages: t.thpZeroPages,
    thp_split_pages: t.thpSplitPages,
    thp_split_zero_pages: t.thpSplitZeroPages,
    thp_slow_split_pages: t.thpSlowSplitPages,
    thp_slow_split_zero_pages: t.thpSlowSplitZeroPages,
    estimated_saved_pages: t.estimatedSavedPages,
    unique_pages: t.uniquePages,
    duplicate_pages: t.duplicatePages,
    shared_with_others: t.sharedWithOthers,
    merging_pages: t.mergingPages,
    volatile_pages: t.volatilePages,
    absent_pages: t.absentPages,
    unreadable_pages: t.unreadablePages,
    vanished: t.vanished,
    ksm_merging_pages: now?.mergingPages ?? null,
    ksm_zero_pages: now?.zeroPages ?? null,
    thp_split_freed_pages: now?.thpSplitFreedPages ?? null,
  };
}

export function resultJson(r: ScanResult | TotalsScanResult, now: (KsmNow | undefined)[]) {
  const known = now.filter((n): n is KsmNow => n !== undefined);
  const freed = splitFreed(now);
  return {
    mode: r.mode,
    pages: r.pages,
    zero_pages: r.zeroPages,
    unique_pages: r.uniquePages,
    duplicate_pages: r.duplicatePages,
    volatile_pages: r.volatilePages,
    estimated_saved_pages: r.estimatedSavedPages,
    estimated_saved_bytes: r.estimatedSavedBytes,
    estimate: {
      ksm_pages: r.estimate.ksmPages,
      ksm_zero_pages: r.estimate.ksmZeroPages,
      thp_split_zero_pages: r.estimate.thpSplitZeroPages,
    },
    thp_zero_pages: r.thpZeroPages,
    thp_split_pages: r.thpSplitPages,
    thp_slow_split_pages: r.thpSlowSplitPages,
    thp_slow_split_zero_pages: r.thpSlowSplitZeroPages,
    thp_known: r.thpKnown,
    merging_pages: r.mergingPages,
    zero_merged_pages: r.zeroMergedPages,
    use_zero_pages: r.useZeroPages,
    bytes_per_second: Math.round(r.bytesPerSecond),
    seconds: r.seconds,
    threads: r.threads,
    collisions: r.collisions,
    index_bytes: r.indexBytes,
    ...(r.sampling
      ? { sampling: { sample_rate: r.sampling.sampleRate, sampled_pages: r.sampling.sampledPages, error_bound_pages: r.sampling.errorBoundPages, confidence: r.sampling.confidence } }
      : {}),
    ksm: {
      merging_pages: known.reduce((a, n) => a + n.mergingPages, 0),
      zero_pages: known.reduce((a, n) => a + n.zeroPages, 0),
      thp_split_freed_pages: freed.pages,
      // Merged processes whose THP-split part is not counted (no baseline; or all of them, when not root or --unmergeable).
      thp_split_freed_unknown_processes: freed.unknown,
    },
    targets: r.targets.map((t, i) => targetJson(t, now[i])),
    sharing: r.sharing,
  };
}

function label(t: TargetScan | TotalsTargetScan): string {
  return `${t.name ?? '?'}[${t.pid}]${t.vanished ? ' (exited)' : ''}`;
}

function printTargets(r: ScanResult, now: (KsmNow | undefined)[], pageSize: number): void {
  const rows = r.targets.map((t, i) => [
    label(t),
    formatBytes(t.pages * pageSize),
    t.thpZeroPages > 0 ? `${t.zeroPages} (${t.thpZeroPages} in THP)` : t.zeroPages,
    t.duplicatePages,
    t.sharedWithOthers,
    t.mergingPages,
    formatBytes(t.estimatedSavedPages * pageSize),
    now[i] === undefined ? '-' : `${now[i]!.mergingPages}+${now[i]!.zeroPages}`,
  ]);
  process.stdout.write(
    `${formatTable(['process', 'scanned', 'zero', 'dup inside', 'shared w/ others', 'merging (est.)', 'would save', 'ksm now (merging+zero)'], rows)}\n\n`,
  );
  if (r.targets.length > 1 && r.targets.length <= 16) {
    const names = r.targets.map(label);
    const matrix = r.sharing.map((row, i) => [names[i], ...row.map((v) => v)]);
    process.stdout.write(
      `duplicate pages between processes (off the diagonal: distinct contents both hold; on it: duplicate pages inside the process):\n${formatTable(['', ...names], matrix)}\n\n`,
    );
  }
}

/** `counted`: the THP-split pages ksmd freed were counted (ksmNow()). */
function printTotals(r: ScanResult | TotalsScanResult, now: (KsmNow | undefined)[], pageSize: number, counted: boolean): void {
  const known = now.filter((n): n is KsmNow => n !== undefined);
  const merged = known.reduce((a, n) => a + n.mergingPages + n.zeroPages, 0);
  const bound = r.sampling ? ` ± ${formatBytes(r.sampling.errorBoundPages * pageSize)}` : '';
  const e = r.estimate;
  const zeroKsm = r.zeroPages - r.thpZeroPages;
  const unfreed = r.thpZeroPages - e.thpSplitZeroPages - r.thpSlowSplitZeroPages;
  const freed = splitFreed(now);
  process.stdout.write(
    `estimate: merging would give back ${formatBytes(r.estimatedSavedBytes)}${bound} (${r.estimatedSavedPages} pages) of ${formatBytes(r.pages * pageSize)} scanned` +
      `${r.ksmZeroMappedPages > 0 ? ` and ${formatBytes(r.ksmZeroMappedPages * pageSize)} KSM had already mapped to the zero page` : ''},` +
      ` by the end of ksmd's second full scan over them` +
      `${freed.pages > 0 ? ` (ksmd has already freed ${formatBytes(freed.pages * pageSize)} more by splitting huge pages: below)` : ''}:\n` +
      `  ${e.ksmPages} pages merged by KSM (pages_sharing: ${r.duplicatePages} duplicate pages` +
      `${!r.useZeroPages && zeroKsm >= 2 ? ` + ${zeroKsm - 1} zero pages merged into one` : ''})\n` +
      `  ${e.ksmZeroPages} zero pages mapped to the zero page by KSM (ksm_zero_pages; use_zero_pages=${r.useZeroPages ? 1 : 0}` +
      `${r.ksmZeroMappedPages > 0 ? `; ${r.ksmZeroMappedPages} of them already mapped` : ''})\n` +
      `  ${e.thpSplitZeroPages} zero subpages freed by splitting ${r.thpSplitPages} huge pages` +
      `${r.thpKnown ? '' : ' (huge pages are told apart only as root: their zero pages are counted as KSM zero pages here)'}\n` +
      (r.thpSlowSplitPages > 0
        ? `  not in the estimate: ${r.thpSlowSplitZeroPages} zero subpages (${formatBytes(r.thpSlowSplitZeroPages * pageSize)}) of ${r.thpSlowSplitPages} huge pages holding only zero subpages and unique data;` +
          ` with use_zero_pages=0 ksmd splits those at most one per full scan after its second (use_zero_pages=1 splits them in one):` +
          ` up to ${formatBytes((r.estimatedSavedPages + r.thpSlowSplitZeroPages) * pageSize)} in time\n`
        : '') +
      `  zero pages: ${r.zeroPages}, of which ${r.thpZeroPages} inside huge pages` +
      `${unfreed > 0 ? ` (${unfreed} of them in huge pages ksmd will not split: not in the estimate)` : ''}\n` +
      `predicted ksm_merging_pages + ksm_zero_pages: ${r.mergingPages + r.zeroMergedPages}; merged so far: ${merged}\n` +
      (freed.pages > 0
        ? `already freed, not in the estimate: ${freed.pages} zero subpages (${formatBytes(freed.pages * pageSize)}) ksmd split out of huge pages (not in ksm_stat; counted beyond each process's zero-page baseline, docs/savings.md)\n`
        : '') +
      (freed.unknown > 0 && counted
        ? `${freed.unknown} merged process${freed.unknown === 1 ? ' has' : 'es have'} no zero-page baseline: zero subpages ksmd split out of their huge pages are not counted (a pagefuse scan, status, top, serve or tune seeing them before they merge records one)\n`
        : '') +
      `scanned at ${formatBytes(r.bytesPerSecond)}/s on ${r.threads} thread(s), mode ${r.mode}${r.collisions ? `, ${r.collisions} hash collisions caught` : ''}\n`,
  );
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse('scan', args, {
    options: {
      pid: { type: 'string', multiple: true },
      vms: { type: 'boolean' },
      all: { type: 'boolean' },
      mode: { type: 'string' },
      'sample-rate': { type: 'string' },
      threads: { type: 'string' },
      unmergeable: { type: 'boolean' },
      totals: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return EXIT_OK;
  }
  const sources = [values.pid !== undefined, values.vms === true, values.all === true].filter(Boolean).length;
  if (sources !== 1) throw new UsageError('pagefuse scan: give exactly one of --pid PID…, --vms, --all');
  if (positionals.length > 0 && values.pid === undefined) {
    throw new UsageError(`pagefuse scan: unexpected argument '${positionals[0]}'`);
  }
  const mode = (values.mode ?? 'exact') as ScanMode;
  if (!['exact', 'fast', 'sampled'].includes(mode)) {
    throw new UsageError(`pagefuse scan: --mode must be exact, fast or sampled, got '${values.mode}'`);
  }
  const threads = intFlag('scan', 'threads', values.threads, 1, 64);
  const sampleRate = intFlag('scan', 'sample-rate', values['sample-rate'], 1, 2 ** 30);
  if (sampleRate !== undefined && mode !== 'sampled') {
    throw new UsageError('pagefuse scan: --sample-rate goes with --mode sampled');
  }
  if (sampleRate !== undefined && (sampleRate & (sampleRate - 1)) !== 0) {
    throw new UsageError(`pagefuse scan: --sample-rate must be a power of two, got ${sampleRate}`);
  }
  const { procRoot } = ksmOptionsFromEnv();
  const listed = values.pid !== undefined;
  // --vms: the VMs discovery finds (VMMs in /proc and registered processes). Every target that is a VM
  // is named as status and top name it: registered name, else the VMM's (QEMU's -name guest=…).
  const vms = await discoverVms(procRoot === undefined ? {} : { procRoot });
  const names = new Map(vms.map((vm) => [vm.pid, vm.name]));
  const pids = listed ? parsePids(values.pid ?? [], positionals) : values.vms ? vms.map((vm) => vm.pid) : readablePids(procRoot);
  if (pids.length === 0) {
    throw new PagefuseError('ESRCH', values.vms ? 'no virtual machine monitor processes found (qemu-system-*, qemu-kvm, firecracker, cloud-hypervisor, crosvm)' : 'no processes to scan');
  }
  const mergeableOnly = !values.unmergeable;
  const onProgress = values.json ? undefined : progressBar();
  const ac = new AbortController();
  const onSigint = (): void => ac.abort();
  process.once('SIGINT', onSigint);
  let result: ScanResult | TotalsScanResult;
  try {
    result = await scan(
      pids.map((pid) => ({ pid, mergeableOnly, ...(names.has(pid) ? { name: names.get(pid)! } : {}) })),
      {
        mode,
        signal: ac.signal,
        skipMissing: !listed,
        skipDenied: !listed,
        keepState: false,
        sharing: values.totals !== true,
        ...(threads === undefined ? {} : { threads }),
        ...(sampleRate === undefined ? {} : { sampleRate }),
        ...(procRoot === undefined ? {} : { procRoot }),
        ...(onProgress === undefined ? {} : { onProgress }),
      },
    );
  } finally {
    process.off('SIGINT', onSigint);
    if (onProgress) process.stderr.write('\r\x1b[K');
  }
  const denied = result.targets.filter((t) => t.denied);
  if (denied.length > 0) {
    const who = denied.slice(0, 8).map((t) => escapeTerminal(label(t))).join(', ');
    process.stderr.write(
      `pagefuse scan: could not read ${denied.length} of ${result.targets.length} processes (${who}${denied.length > 8 ? ', …' : ''}): reading another user's memory needs root\n`,
    );
    if (denied.length === result.targets.length) return EXIT_FAILURE;
  }
  // --all and --vms list only processes that hold memory worth scanning.
  if (!listed) {
    const keep = result.targets.map((t) => t.pages > 0);
    result =
      result.sharing === null
        ? { ...result, targets: result.targets.filter((_, i) => keep[i]) }
        : {
            ...result,
            targets: result.targets.filter((_, i) => keep[i]),
            sharing: result.sharing.filter((_, i) => keep[i]).map((row) => row.filter((_, j) => keep[j])),
          };
  }
  // The zero-page baselines scan, status, top, serve and tune share (a reader on a fake procRoot has none).
  const readers = new HostSource(procRoot === undefined ? {} : { procRoot });
  const counted = result.thpKnown && mergeableOnly;
  const now = await ksmNow(result.targets, counted, procRoot, readers);
  if (values.json) {
    printJson(resultJson(result, now));
  } else {
    if (result.sharing !== null) printTargets(result, now, PAGE_SIZE);
    printTotals(result, now, PAGE_SIZE, counted);
  }
  return EXIT_OK;
}
