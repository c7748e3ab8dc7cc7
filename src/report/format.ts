// Plain-text formatting shared by the text outputs, the HTML report, the bench tables and the CLI.
import { displayWidth, escapeTerminal, padEndColumns, padStartColumns } from './escape.js';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(bytes: number): string {
  let v = Math.abs(bytes);
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  const s = u === 0 ? String(v) : v.toFixed(v >= 100 ? 0 : 1);
  return `${bytes < 0 ? '-' : ''}${s} ${UNITS[u]}`;
}

/**
 * Left-aligned first column, right-aligned others. Every cell is escaped for the terminal (names come from
 * /proc and VMM argv) and measured in terminal columns, so wide characters keep the columns straight.
 */
export function formatTable(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows].map((r) => r.map((c) => escapeTerminal(String(c))));
  const widths = header.map((_, i) => Math.max(...cells.map((r) => displayWidth(r[i] ?? ''))));
  return cells
    .map((r) => r.map((c, i) => (i === 0 ? padEndColumns(c, widths[i]) : padStartColumns(c, widths[i]))).join('  ').trimEnd())
    .join('\n');
}
