// Plain-text views of the figures: the screen `pagefuse top` redraws, and its one-shot form.
import type { Figures, WouldSave } from './model.js';
import { formatBytes, formatTable } from './format.js';
import { escapeTerminal, truncateColumns } from './escape.js';

function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(1)} %`;
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

/**
 * Why the THP-split part is only an upper bound, or null when it is not: some processes were first seen
 * already merged, so huge pages split before pagefuse looked count too (docs/savings.md).
 */
export function thpSplitBoundNote(f: Figures): string | null {
  if (!f.host.thpSplitUpperBound) return null;
  const n = f.processes.filter((p) => p.thpSplitUpperBound).length;
  return (
    `upper bound: ${n === 1 ? '1 process was' : `${n} processes were`} first seen already merged, so huge pages split before ` +
    `(by the kernel or an earlier ksmd run) count too; a pagefuse reader that sees them before they merge (status, top, serve, tune) or runs from before they start records their baseline`
  );
}

/** What the processes got back and its parts (docs/savings.md); a second line says why when it is an upper bound. */
export function savedLines(f: Figures): string[] {
  const h = f.host;
  const ps = f.pageSize;
  const le = h.thpSplitUpperBound ? '≤ ' : '';
  const note = thpSplitBoundNote(f);
  return [
    `saved ${le}${formatBytes(h.savedBytes)} = KSM pages ${formatBytes(h.saved.ksmPages * ps)} + KSM zero pages ${formatBytes(h.saved.ksmZeroPages * ps)}` +
      ` + THP-split zero pages ${h.thpSplitKnown ? `${le}${formatBytes(h.saved.thpSplitZeroPages * ps)}` : '? (needs root)'}`,
    ...(note === null ? [] : [`  (${note})`]),
    ...(h.exitedPages === 0 ? [] : [`  (${exitedWords(h.exitedPages, ps)})`]),
  ];
}

/** Why pages_sharing says more than `saved`, in the words of every output. */
export function exitedWords(pages: number, pageSize: number): string {
  return (
    `not counted: ${pages} page${pages === 1 ? '' : 's'} (${formatBytes(pages * pageSize)}) that pages_sharing still counts for processes that have exited;` +
    ` their memory is free already, and ksmd drops them from its counters on its next pass`
  );
}

/** The would-save figure's later part, in the words of every output (top, report --summary, the HTML tile). */
export const slowSplitWords = {
  /** When the scan could not read page flags. */
  unknown: 'from huge pages it splits one a full scan: unknown (needs root)',
  /** The figure once every slow huge page is split. */
  onceSplit: (w: WouldSave, slow: NonNullable<WouldSave['slowSplit']>): string =>
    `${formatBytes(w.bytes + slow.bytes)} once ksmd has split ${slow.hugePages} more huge page${slow.hugePages === 1 ? '' : 's'}, at most one a full scan`,
  zeroSubpages: (slow: NonNullable<WouldSave['slowSplit']>): string => `+${formatBytes(slow.bytes)} of zero subpages`,
};

/**
 * What merging would give back by the latest scan (docs/savings.md, "The prediction"): the estimate,
 * which ksmd reaches by its second full scan (docs/savings.md measures it), and on a second line what comes only later, the huge pages
 * ksmd splits one per full scan (use_zero_pages=0), with the figure once all are split.
 */
export function wouldSaveLines(f: Figures): string[] {
  const w = f.wouldSave;
  if (w === null) return ['would save -  (no scan yet: pagefuse tune scans the VMs; pagefuse scan --vms estimates once)'];
  const slow = w.slowSplit;
  const first =
    `would save ${formatBytes(w.bytes)} by ksmd's second full scan` +
    (slow === null ? `, more later ${slowSplitWords.unknown}` : '') +
    `  (${w.source === 'tuner' ? "tuner's scan" : 'scan'} ${ago(f.at - w.at)}; saved now ${formatBytes(f.host.savedBytes)})`;
  if (slow === null || slow.hugePages === 0) return [first];
  return [
    first,
    `  ${slowSplitWords.onceSplit(w, slow)} (${slowSplitWords.zeroSubpages(slow)}; use_zero_pages=1 frees them in one)`,
  ];
}

/** The header lines: knobs, host savings, rates, the tuner's decision and the per-node split. */
export function headerLines(f: Figures): string[] {
  const s = f.settings;
  const c = f.counters;
  const h = f.host;
  const lines = [
    `KSM run=${s.run} pages_to_scan=${s.pages_to_scan} sleep_millisecs=${s.sleep_millisecs}` +
      (s.merge_across_nodes === undefined ? '' : ` merge_across_nodes=${s.merge_across_nodes}`) +
      `  full_scans ${c.full_scans}`,
    ...savedLines(f),
    `  KSM metadata ${formatBytes(h.metadataBytes)} (host cost, kernel memory)  kernel general_profit ${formatBytes(h.kernelProfitBytes)}` +
      `  pages_shared ${c.pages_shared} pages_sharing ${c.pages_sharing}` +
      `  ratio ${h.sharingRatio === null ? '-' : h.sharingRatio.toFixed(2)}`,
  ];
  lines.push(...wouldSaveLines(f));
  const r = f.rates;
  lines.push(
    r === null
      ? 'merge rate -  ksmd CPU -  (needs two samples)'
      : `merge rate ${r.mergePagesPerSecond >= 0 ? '+' : ''}${Math.round(r.mergePagesPerSecond)} pages/s` +
          `  ksmd CPU ${r.ksmdCpu === null ? '-' : percent(r.ksmdCpu)}` +
          (r.scannedPagesPerSecond === null ? '' : `  scanning ${Math.round(r.scannedPagesPerSecond)} pages/s`),
  );
  const t = f.tuner;
  if (t === null) {
    lines.push('tuner: none running');
  } else if (!t.running) {
    lines.push(`tuner: none running (pid ${t.pid ?? '?'} exited; its last decision, ${ago(f.at - t.at)}, is not in force)`);
  } else {
    // The state file is another process's writing: every field of it is escaped, as the names are.
    const knobs = escapeTerminal(
      Object.entries(t.settings)
        .map(([k, v]) => `${k}=${v}`)
        .join(' '),
    );
    const policy = escapeTerminal(t.policy);
    const reason = t.reason ? ` (${escapeTerminal(t.reason)})` : '';
    lines.push(
      t.dryRun
        ? `tuner ${policy} dry run, pid ${t.pid} ${ago(f.at - t.at)}: would set ${knobs}, writes nothing${reason}`
        : `tuner ${policy} pid ${t.pid} ${ago(f.at - t.at)}: ${knobs}${reason}`,
    );
  }
  if (f.nodes.length > 0) {
    lines.push(`nodes  ${f.nodes.map((n) => `${n.id}: ${n.ksmPages} pages (${formatBytes(n.bytes)})`).join('   ')}`);
  }
  return lines;
}

/** The per-process table, most saved first; VMs are marked. Each row's SAVED is its share: the rows sum to the host's. */
export function processTable(f: Figures, maxRows = Infinity): string {
  const ps = f.pageSize;
  const rows = f.processes
    .slice(0, maxRows)
    .map((p) => [
      p.pid,
      p.vm ? `${p.name} [vm]` : p.name,
      `${p.thpSplitUpperBound ? '≤' : ''}${formatBytes(p.savedBytes)}`,
      p.pssBytes === null ? '-' : formatBytes(p.pssBytes),
      p.saved.ksmPages,
      p.saved.ksmZeroPages,
      f.host.thpSplitKnown ? `${p.thpSplitUpperBound ? '≤' : ''}${p.saved.thpSplitZeroPages}` : '-',
      p.mergingPages,
      formatBytes(p.metadataBytes),
      formatBytes(p.kernelProfitBytes),
    ]);
  const table = formatTable(['PID', 'NAME', 'SAVED', 'PSS', 'KSM', 'KSM_ZERO', 'THP_ZERO', 'MERGING', 'METADATA', 'KERNEL_PROFIT'], rows);
  const notes: string[] = [];
  const hidden = f.processes.length - rows.length;
  if (hidden > 0) notes.push(`… ${hidden} more`);
  if (f.sharesNote !== null) notes.push(`(SAVED rows do not sum to the host's: ${f.sharesNote})`);
  return [table, ...notes].join('\n');
}

/** The legend under the table: what each column is. */
export const LEGEND =
  'SAVED: this process\'s share of what KSM gave back (pages shared k ways credit (k-1)/k per mapping; the rows sum to the host); ' +
  'PSS: what it costs now; KSM/KSM_ZERO/THP_ZERO: the parts in pages; METADATA: its rmap items; KERNEL_PROFIT: ksm_process_profit (counts a shared page in every sharer)';

const NO_PROCESS = 'no process has KSM state or mergeable memory';

/** The one-shot report (stdout is not a terminal). */
export function summaryText(f: Figures): string {
  const body = f.processes.length > 0 ? `${processTable(f)}\n${LEGEND}` : NO_PROCESS;
  return `${headerLines(f).join('\n')}\n\n${body}\n`;
}

/** One full screen for `pagefuse top`, cut to the terminal's size. */
export function topScreen(f: Figures, opts: { columns: number; rows: number; intervalSeconds: number }): string[] {
  const title = `pagefuse top — ${new Date(f.at).toISOString().slice(11, 19)} UTC, every ${opts.intervalSeconds}s — q to quit`;
  const head = [title, ...headerLines(f), ''];
  const room = Math.max(1, opts.rows - head.length - 2);
  const body = f.processes.length > 0 ? processTable(f, room).split('\n') : [NO_PROCESS];
  return [...head, ...body].slice(0, opts.rows).map((l) => truncateColumns(l, opts.columns));
}
