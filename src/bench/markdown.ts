// The bench's figures as markdown, and the markers in README.md and docs/ they are written between, so
// every figure table in the docs comes from one bench run (`npm run bench -- --write-docs`). A marked
// block is a line `<!-- bench:NAME -->`, the generated lines, and a line `<!-- /bench:NAME -->`.
import type { BenchResult } from './bench.js';
import { benchText, budgetRows, isSkipped, referenceLine, tunerRows } from './bench.js';

/** A markdown table; `|` in cells escaped. */
export function markdownTable(header: string[], rows: (string | number)[][]): string {
  const cell = (c: string | number) => String(c).replace(/\|/g, '\\|');
  return [`| ${header.map(cell).join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
}

/** One line on where the figures come from: date, machine, CPU flags, load average. */
function provenance(r: BenchResult): string {
  const m = r.machine;
  const load = isSkipped(r.tuner) ? '' : `; load average ${r.tuner.load_average[0]} before the tuner section, ${r.tuner.load_average[1]} after`;
  return `From one \`npm run bench${r.quick ? ' -- --quick' : ''}\` run, ${r.date.slice(0, 16).replace('T', ' ')} UTC: ${m.cpus} × ${m.cpu} (${m.cpu_flags.join(' ')}), Linux ${m.kernel}, Node ${m.node}${load}.`;
}

/** The blocks a run can fill, by marker name; a section the run skipped gives none. */
export function benchSections(r: BenchResult): Record<string, string> {
  const out: Record<string, string> = { text: ['```', benchText(r).trimEnd(), '```'].join('\n'), source: provenance(r) };
  if (!isSkipped(r.tuner)) {
    const t = r.tuner;
    const ref = referenceLine(t);
    out.tuner = `${t.workload}.\n\n${markdownTable(...tunerRows(t))}${ref === '' ? '' : `\n\n${ref}.`}`;
    if (t.budgets.length > 0) out.budgets = markdownTable(...budgetRows(t));
  }
  return out;
}

export interface Rewritten {
  text: string;
  /** Marker names filled. */
  filled: string[];
  /** Marker names found with nothing to fill them from this run (left as they were). */
  left: string[];
}

const OPEN = /^<!-- bench:([a-z-]+) -->$/;

/**
 * Replaces what stands between each pair of markers with the section of that name. An opening marker
 * without its closing one is an error (nothing is rewritten), as is a closing one without an opening one.
 */
export function rewriteMarkers(markdown: string, sections: Readonly<Record<string, string>>): Rewritten {
  const lines = markdown.split('\n');
  const out: string[] = [];
  const filled: string[] = [];
  const left: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const m = OPEN.exec(line);
    if (m === null) {
      if (/^<!-- \/bench:/.test(line)) throw new Error(`line ${i + 1}: ${line} without its opening marker`);
      out.push(line);
      continue;
    }
    const name = m[1];
    const close = lines.indexOf(`<!-- /bench:${name} -->`, i + 1);
    if (close < 0) throw new Error(`line ${i + 1}: <!-- bench:${name} --> without <!-- /bench:${name} -->`);
    const body = sections[name];
    out.push(line);
    if (body === undefined) {
      out.push(...lines.slice(i + 1, close));
      left.push(name);
    } else {
      out.push(body);
      filled.push(name);
    }
    out.push(lines[close]);
    i = close;
  }
  return { text: out.join('\n'), filled, left };
}
