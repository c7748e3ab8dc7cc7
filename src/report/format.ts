// Plain-text formatting shared by the text outputs, the HTML report, the bench tables and the CLI.
import { displayWidth, escapeTerminal, padEndColumns, padStartColumns } from './escape.js';

// Bytes in human units: src/units.ts, below every layer, so the policies' reasons use it too.
export { formatBytes } from '../units.js';

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
