// Plain-text views of the figures: the screen `pagefuse top` redraws, and its one-shot form.
import type { Figures } from './model.js';
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

/** The header lines: knobs, host savings, rates, the tuner's decision and the per-node split. */
export function headerLines(f: Figures): string[] {
  const s = f.settings;
  const c = f.counters;
  const h = f.host;
  const lines = [
    `KSM run=${s.run} pages_to_scan=${s.pages_to_scan} sleep_millisecs=${s.sleep_millisecs}` +
      (s.merge_across_nodes === undefined ? '' : ` merge_across_nodes=${s.merge_across_nodes}`) +
      `  full_scans ${c.full_scans}`,
    `saved ${formatBytes(h.profitBytes)} net (${formatBytes(h.grossBytes)} merged − ${formatBytes(h.metadataBytes)} metadata)` +
      `  pages_shared ${c.pages_shared} pages_sharing ${c.pages_sharing}` +
      `  ratio ${h.sharingRatio === null ? '-' : h.sharingRatio.toFixed(2)}`,
  ];
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
    const knobs = Object.entries(t.settings)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    const reason = t.reason ? ` (${escapeTerminal(t.reason)})` : '';
    lines.push(
      t.dryRun
        ? `tuner ${t.policy} dry run, pid ${t.pid} ${ago(f.at - t.at)}: would set ${knobs}, writes nothing${reason}`
        : `tuner ${t.policy} pid ${t.pid} ${ago(f.at - t.at)}: ${knobs}${reason}`,
    );
  }
  if (f.nodes.length > 0) {
    lines.push(`nodes  ${f.nodes.map((n) => `${n.id}: ${n.ksmPages} pages (${formatBytes(n.bytes)})`).join('   ')}`);
  }
  return lines;
}

/** The per-process table, most profit first; VMs are marked. */
export function processTable(f: Figures, maxRows = Infinity): string {
  const rows = f.processes
    .slice(0, maxRows)
    .map((p) => [p.pid, p.vm ? `${p.name} [vm]` : p.name, formatBytes(p.profitBytes), p.mergingPages, p.zeroPages, p.rmapItems]);
  const table = formatTable(['PID', 'NAME', 'PROFIT', 'MERGING', 'ZERO', 'RMAP_ITEMS'], rows);
  const hidden = f.processes.length - rows.length;
  return hidden > 0 ? `${table}\n… ${hidden} more` : table;
}

/** The one-shot report (stdout is not a terminal). */
export function summaryText(f: Figures): string {
  const body = f.processes.length > 0 ? processTable(f) : 'no process has KSM state';
  return `${headerLines(f).join('\n')}\n\n${body}\n`;
}

/** One full screen for `pagefuse top`, cut to the terminal's size. */
export function topScreen(f: Figures, opts: { columns: number; rows: number; intervalSeconds: number }): string[] {
  const title = `pagefuse top — ${new Date(f.at).toISOString().slice(11, 19)} UTC, every ${opts.intervalSeconds}s — q to quit`;
  const head = [title, ...headerLines(f), ''];
  const room = Math.max(1, opts.rows - head.length - 2);
  const body = f.processes.length > 0 ? processTable(f, room).split('\n') : ['no process has KSM state'];
  return [...head, ...body].slice(0, opts.rows).map((l) => truncateColumns(l, opts.columns));
}
