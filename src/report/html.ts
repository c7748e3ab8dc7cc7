// The HTML report: one self-contained page (inline CSS and SVG, no script, no fetch) with savings and
// ksmd CPU over time, the per-VM table, KSM pages per node, the tuner's decisions and the sharing heat map.
import { figures, series, tunerWouldSave, type Figures, type SeriesPoint, type SharingMatrix, type DecisionRecord, type WouldSave } from './model.js';
import type { HistoryRecord } from './history-file.js';
import { formatBytes } from './format.js';
import { escapeHtml } from './escape.js';
import { exitedWords, slowSplitWords, thpSplitBoundNote } from './text.js';

export interface ReportPage {
  title?: string;
  /** Where the data came from, shown under the title ("tuner history /var/lib/…", "sampled live for 5 s"). */
  source: string;
  host?: string;
  history: HistoryRecord;
  /** Extra sections (the bench adds its tables), already HTML. */
  extraHtml?: string;
}


const W = 880;
const H = 320;
const M = { left: 76, right: 64, top: 20, bottom: 40 };

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function clock(ms: number, tenths = false): string {
  return new Date(ms).toISOString().slice(11, tenths ? 21 : 19);
}

/** Savings (left axis, bytes) and ksmd CPU (right axis, %) over time, with the tuner's decisions marked. */
export function chartSvg(points: readonly SeriesPoint[], decisions: readonly DecisionRecord[]): string {
  const t0 = points[0].t;
  const t1 = Math.max(points[points.length - 1].t, t0 + 1);
  const yMin = Math.min(0, ...points.map((p) => p.saved_bytes));
  // Whole pages at least: an axis of bytes never reads "0.25 B".
  const yMax = niceMax(Math.max(4096, ...points.map((p) => p.saved_bytes)));
  const cpuMax = niceMax(Math.max(0.01, ...points.map((p) => p.ksmd_cpu ?? 0)) * 100);
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const x = (t: number): number => M.left + ((t - t0) / (t1 - t0)) * pw;
  const y = (b: number): number => M.top + ph - ((b - yMin) / (yMax - yMin)) * ph;
  const yc = (pct: number): number => M.top + ph - (pct / cpuMax) * ph;
  const f = (n: number): string => n.toFixed(1);

  const profitPath = points.map((p, i) => `${i === 0 ? 'M' : 'L'}${f(x(p.t))},${f(y(p.saved_bytes))}`).join(' ');
  const area = `${profitPath} L${f(x(points[points.length - 1].t))},${f(y(Math.max(0, yMin)))} L${f(x(t0))},${f(y(Math.max(0, yMin)))} Z`;
  const cpuPts = points.filter((p) => p.ksmd_cpu !== null);
  const cpuPath = cpuPts.map((p, i) => `${i === 0 ? 'M' : 'L'}${f(x(p.t))},${f(yc((p.ksmd_cpu ?? 0) * 100))}`).join(' ');

  const grid: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const b = yMin + ((yMax - yMin) * i) / 4;
    const yy = f(y(b));
    grid.push(`<line class="grid" x1="${M.left}" x2="${W - M.right}" y1="${yy}" y2="${yy}"/>`);
    grid.push(`<text class="tick" x="${M.left - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle">${escapeHtml(formatBytes(b))}</text>`);
    grid.push(`<text class="tick tick-cpu" x="${W - M.right + 6}" y="${f(yc((cpuMax * i) / 4))}" dominant-baseline="middle">${((cpuMax * i) / 4).toFixed(cpuMax < 4 ? 2 : 0)} %</text>`);
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    grid.push(`<text class="tick" x="${f(x(t))}" y="${H - M.bottom + 18}" text-anchor="middle">${clock(t, t1 - t0 < 20_000)}</text>`);
  }
  const marks = decisions
    .filter((d) => d.at >= t0 && d.at <= t1)
    .map((d) => {
      const knobs = Object.entries(d.settings).map(([k, v]) => `${k}=${v}`).join(' ');
      const xx = f(x(d.at));
      return `<line class="decision" x1="${xx}" x2="${xx}" y1="${M.top}" y2="${H - M.bottom}"><title>${escapeHtml(`${clock(d.at)} ${d.policy}: ${knobs} ${d.reason}`)}</title></line>`;
    });
  const dots = points.length === 1 ? `<circle class="profit-dot" cx="${f(x(t0))}" cy="${f(y(points[0].saved_bytes))}" r="4"/>` : '';
  return `<svg id="savings-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="KSM savings and ksmd CPU over time">
<rect class="plot" x="${M.left}" y="${M.top}" width="${pw}" height="${ph}"/>
${grid.join('\n')}
<path id="profit-area" class="profit-area" d="${area}"/>
<path id="profit-line" class="profit" d="${profitPath}"/>
${cpuPath === '' ? '' : `<path id="cpu-line" class="cpu-line" d="${cpuPath}"/>`}
${marks.join('\n')}${dots}
<text class="axis" x="14" y="${M.top + ph / 2}" transform="rotate(-90 14 ${M.top + ph / 2})" text-anchor="middle">saved (all parts)</text>
<text class="axis tick-cpu" x="${W - 10}" y="${M.top + ph / 2}" transform="rotate(90 ${W - 10} ${M.top + ph / 2})" text-anchor="middle">ksmd CPU</text>
</svg>`;
}

/** Duplicate pages between targets as a heat map with its numbers and a scale: darker is more. */
export function heatmapSvg(m: SharingMatrix): string {
  const n = m.labels.length;
  const cell = Math.max(36, Math.min(56, Math.floor(560 / Math.max(1, n))));
  const labelW = 150;
  const scaleH = 44;
  const width = labelW + n * cell + 10;
  const height = labelW + n * cell + scaleH;
  const max = Math.max(1, ...m.pages.flatMap((row, i) => row.filter((_, j) => j !== i)));
  const shade = (level: number): string => `hsl(214 80% ${(96 - level * 60).toFixed(1)}%)`;
  const rects: string[] = [];
  for (let i = 0; i < n; i++) {
    rects.push(`<text class="tick" x="${labelW - 6}" y="${labelW + i * cell + cell / 2}" text-anchor="end" dominant-baseline="middle">${escapeHtml(m.labels[i].slice(0, 22))}</text>`);
    const cx = labelW + i * cell + cell / 2;
    rects.push(`<text class="tick" x="${cx}" y="${labelW - 6}" transform="rotate(-60 ${cx} ${labelW - 6})">${escapeHtml(m.labels[i].slice(0, 22))}</text>`);
    for (let j = 0; j < n; j++) {
      const v = m.pages[i][j];
      const level = i === j ? 0 : Math.min(1, v / max);
      const fill = i === j ? '#e5e7eb' : shade(level);
      const what = i === j ? `${m.labels[i]}: ${v} duplicate pages inside itself` : `${m.labels[i]} × ${m.labels[j]}: ${v} duplicate pages (contents both hold)`;
      const x = labelW + j * cell;
      const y = labelW + i * cell;
      rects.push(`<rect class="cell" x="${x}" y="${y}" width="${cell - 1}" height="${cell - 1}" fill="${fill}"><title>${escapeHtml(what)}</title></rect>`);
      rects.push(`<text class="cell-n" x="${x + cell / 2}" y="${y + cell / 2}" text-anchor="middle" dominant-baseline="middle"${level > 0.6 ? ' fill="#fff"' : ''}>${v}</text>`);
    }
  }
  // The scale: 0 to the largest off-diagonal count.
  const sy = labelW + n * cell + 14;
  const steps = 5;
  const sw = Math.max(24, Math.floor((n * cell) / steps));
  for (let k = 0; k < steps; k++) {
    rects.push(`<rect x="${labelW + k * sw}" y="${sy}" width="${sw}" height="10" fill="${shade(k / (steps - 1))}"/>`);
  }
  rects.push(`<text class="tick" x="${labelW}" y="${sy + 24}">0</text>`);
  rects.push(`<text class="tick" x="${labelW + steps * sw}" y="${sy + 24}" text-anchor="end">${max} duplicate pages</text>`);
  return `<svg id="sharing-heatmap" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="duplicate pages between targets">\n${rects.join('\n')}\n</svg>`;
}

function table(header: string[], rows: string[][], id: string): string {
  return `<table id="${id}"><thead><tr>${header.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

/** The would-save tile: the estimate (what ksmd's second full scan reaches), and under it what the slow huge page splits add. */
function wouldSaveCard(w: WouldSave | null): [string, string, string?] {
  if (w === null) return ['would save (last scan)', '-'];
  const k = "would save by ksmd's second full scan";
  if (w.slowSplit === null) return [k, formatBytes(w.bytes), `more ${slowSplitWords.unknown}`];
  if (w.slowSplit.hugePages === 0) return [k, formatBytes(w.bytes)];
  return [k, formatBytes(w.bytes), `${slowSplitWords.onceSplit(w, w.slowSplit)} (${slowSplitWords.zeroSubpages(w.slowSplit)})`];
}

function summary(f: Figures, points: readonly SeriesPoint[], wouldSave: WouldSave | null): string {
  const cpus = points.map((p) => p.ksmd_cpu).filter((c): c is number => c !== null);
  const avgCpu = cpus.length > 0 ? `${((cpus.reduce((a, b) => a + b, 0) / cpus.length) * 100).toFixed(1)} %` : '-';
  const h = f.host;
  const ps = f.pageSize;
  const cards: [string, string, string?][] = [
    ['saved', `${h.thpSplitUpperBound ? '≤ ' : ''}${formatBytes(h.savedBytes)}`],
    ['KSM pages', formatBytes(h.saved.ksmPages * ps), h.exitedPages > 0 ? exitedWords(h.exitedPages, ps) : undefined],
    ['KSM zero pages', formatBytes(h.saved.ksmZeroPages * ps)],
    ['THP-split zero pages', h.thpSplitKnown ? `${h.thpSplitUpperBound ? '≤ ' : ''}${formatBytes(h.saved.thpSplitZeroPages * ps)}` : '? (needs root)'],
    ['KSM metadata (host cost)', formatBytes(h.metadataBytes)],
    ['kernel general_profit', formatBytes(h.kernelProfitBytes)],
    wouldSaveCard(wouldSave),
    ['sharing ratio', h.sharingRatio === null ? '-' : h.sharingRatio.toFixed(2)],
    ['ksmd CPU (mean)', avgCpu],
    ['full scans', String(f.counters.full_scans)],
  ];
  return `<div class="cards">${cards
    .map(([k, v, n]) => `<div class="card"><div class="k">${escapeHtml(k)}</div><div class="v">${escapeHtml(v)}</div>${n === undefined ? '' : `<div class="n">${escapeHtml(n)}</div>`}</div>`)
    .join('')}</div>`;
}

const CSS = `body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:960px;color:#111827;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}.sub{color:#4b5563;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #d1d5db;border-radius:6px;padding:8px 12px;min-width:120px}
.k{color:#6b7280;font-size:12px}.n{color:#4b5563;font-size:12px;max-width:260px}text.cell-n{font-size:10px;fill:#111827}.v{font-size:18px;font-weight:600}
table{border-collapse:collapse;width:100%}th,td{padding:4px 8px;border-bottom:1px solid #e5e7eb;text-align:right}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
svg{display:block}svg text{font:11px system-ui,sans-serif;fill:#374151}.plot{fill:#f9fafb;stroke:#d1d5db}.grid{stroke:#e5e7eb}
.profit{fill:none;stroke:#2563eb;stroke-width:2.5}.profit-area{fill:#2563eb;fill-opacity:.12}.profit-dot{fill:#2563eb}
.cpu-line{fill:none;stroke:#ea580c;stroke-width:2}text.tick-cpu{fill:#c2410c}.decision{stroke:#7c3aed;stroke-dasharray:4 3}
.legend span{display:inline-block;margin-right:16px}.sw{display:inline-block;width:14px;height:3px;vertical-align:middle;margin-right:6px}`;

/** The whole page. */
export function reportHtml(page: ReportPage): string {
  const snaps = page.history.snapshots;
  const last = snaps[snaps.length - 1];
  const f = figures(last, snaps.length > 1 ? snaps[snaps.length - 2] : undefined);
  const points = series(snaps);
  const title = page.title ?? 'pagefuse — KSM savings';
  const ps = f.pageSize;
  const vmRows = f.processes.map((p) => [
    String(p.pid),
    p.vm ? `${p.name} (VM)` : p.name,
    `${p.thpSplitUpperBound ? '≤ ' : ''}${formatBytes(p.savedBytes)}`,
    p.pssBytes === null ? '-' : formatBytes(p.pssBytes),
    formatBytes(p.saved.ksmPages * ps),
    formatBytes(p.saved.ksmZeroPages * ps),
    f.host.thpSplitKnown ? `${p.thpSplitUpperBound ? '≤ ' : ''}${formatBytes(p.saved.thpSplitZeroPages * ps)}` : '?',
    String(p.mergingPages),
    formatBytes(p.metadataBytes),
    formatBytes(p.kernelProfitBytes),
  ]);
  const sharing = page.history.sharing ?? f.sharing;
  const decisions = page.history.decisions;
  const parts = [
    // A history file keeps the tuner's would-save figure with its decisions, not with the samples.
    summary(f, points, page.history.estimate ?? f.wouldSave ?? tunerWouldSave(decisions.findLast((d) => d.estimatedBytes !== undefined))),
    `<h2>Savings and ksmd CPU over time</h2>`,
    `<p class="legend"><span><i class="sw" style="background:#2563eb"></i>saved: KSM pages + KSM zero pages + THP-split zero pages (left)</span><span><i class="sw" style="background:#ea580c"></i>ksmd CPU, % of one CPU (right)</span>${decisions.length > 0 ? '<span><i class="sw" style="background:#7c3aed"></i>tuner decision</span>' : ''}</p>`,
    chartSvg(points, decisions),
    `<h2>Per VM and process</h2>`,
    vmRows.length > 0
      ? `${table(['PID', 'name', 'saved (share)', 'PSS (cost)', 'KSM pages', 'KSM zero pages', 'THP-split zero', 'merging pages', 'metadata', 'kernel profit'], vmRows, 'vm-table')}` +
        `<p class="sub" id="vm-legend">saved (share): what this process got back; a KSM page mapped k times credits (k−1)/k of a page to each mapping, so the rows sum to the host's saved ${escapeHtml(formatBytes(f.host.savedBytes))}` +
        `${f.sharesNote === null ? '' : ` — here they do not: ${escapeHtml(f.sharesNote)}`}. PSS (cost): what it costs now. ` +
        `${f.host.thpSplitUpperBound ? `THP-split zero is an ${escapeHtml(thpSplitBoundNote(f) ?? '')}. ` : ''}` +
        'KSM pages: its share of pages_sharing. KSM zero pages: pages KSM mapped to the zero page. THP-split zero: zero-filled subpages freed when ksmd split its huge pages (root only). ' +
        "metadata: KSM's rmap items for it, kernel memory (a host cost, not in PSS). kernel profit: the kernel's ksm_process_profit, which counts a shared page in every process that maps it (does not sum to the host).</p>"
      : '<p id="vm-table">No process had KSM state or mergeable memory at the last sample.</p>',
  ];
  if (f.nodes.length > 0) {
    parts.push(`<h2>KSM pages per NUMA node</h2>`, table(['node', 'KSM pages', 'bytes'], f.nodes.map((n) => [String(n.id), String(n.ksmPages), formatBytes(n.bytes)]), 'node-table'));
  }
  if (decisions.length > 0) {
    parts.push(
      `<h2>Tuner decisions</h2>`,
      table(
        ['time', 'policy', 'knobs', 'reason'],
        decisions.map((d) => [clock(d.at), d.policy, Object.entries(d.settings).map(([k, v]) => `${k}=${v}`).join(' '), d.reason]),
        'decision-table',
      ),
    );
  }
  parts.push(`<h2>Sharing between VMs</h2>`);
  parts.push(
    sharing !== null && sharing !== undefined && sharing.labels.length > 0
      ? `<p class="sub">Duplicate pages from a duplicate scan: off the diagonal, the distinct page contents both processes hold; on the diagonal (grey), duplicate pages inside one process.</p>${heatmapSvg(sharing)}`
      : `<p id="sharing-none">No sharing matrix: ${escapeHtml(page.history.sharingNote ?? 'this history has none (it comes from a duplicate scan of the VMs)')}.</p>`,
  );
  if (page.extraHtml) parts.push(page.extraHtml);
  const sub = `${page.source}; ${snaps.length} samples from ${new Date(snaps[0].at).toISOString()} to ${new Date(last.at).toISOString()}${page.host ? `; ${page.host}` : ''}`;
  return htmlPage(title, sub, parts.join('\n'));
}

/** A whole self-contained page around body HTML. */
export function htmlPage(title: string, sub: string, body: string): string {
  return [
    `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">`,
    `<title>${escapeHtml(title)}</title><style>${CSS}</style></head><body>`,
    `<h1>${escapeHtml(title)}</h1>`,
    `<p class="sub">${escapeHtml(sub)}</p>`,
    body,
    `</body></html>\n`,
  ].join('\n');
}
