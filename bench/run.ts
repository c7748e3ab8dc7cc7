// npm run bench [-- --quick] [-- --json] [-- --write-docs] [-- --force]: every section of src/bench in one run, as
// `pagefuse bench` runs them (hashing against the native read baseline, the scan estimate against ksmd,
// the tuner policies). Holds the machine-wide KSM lock (src/host/ksm-lock.ts) so no KSM test or other
// bench drives ksmd meanwhile. --write-docs rewrites the blocks between `<!-- bench:NAME -->` markers in
// README.md and docs/*.md with this run's figures (src/bench/markdown.ts), so the docs show one run.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchText, runBench } from '../src/bench/bench.js';
import { benchSections, rewriteMarkers } from '../src/bench/markdown.js';
import { lockKsm } from '../src/host/ksm-lock.js';

const known = new Set(['--quick', '--json', '--write-docs', '--force']);
const unknown = process.argv.slice(2).filter((a) => !known.has(a));
if (unknown.length > 0) {
  process.stderr.write(`bench/run.ts: unknown option ${unknown[0]} (takes --quick, --json, --write-docs, --force)\n`);
  process.exit(2);
}
const quick = process.argv.includes('--quick');
const json = process.argv.includes('--json');
const writeDocs = process.argv.includes('--write-docs');
// --force: drive ksmd even while VMs run on this host, as `pagefuse bench --force`.
const force = process.argv.includes('--force');
const repo = fileURLToPath(new URL('..', import.meta.url));
const docs = ['README.md', ...readdirSync(join(repo, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join('docs', f))];

const release = await lockKsm();
try {
  const result = await runBench({ quick, force, log: (line) => process.stderr.write(`${line}\n`) });
  process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : benchText(result));
  const skipped = (['hashing', 'estimate', 'tuner'] as const).filter((k) => 'skipped' in result[k]);
  if (writeDocs && skipped.length > 0) {
    // The docs show one whole run: a run with a section skipped would leave its tables from another one.
    process.stderr.write(`bench: --write-docs: not writing the docs, this run skipped ${skipped.join(', ')}\n`);
    process.exitCode = 1;
  } else if (writeDocs) {
    const sections = benchSections(result);
    for (const file of docs) {
      const path = join(repo, file);
      const before = readFileSync(path, 'utf8');
      const r = rewriteMarkers(before, sections);
      if (r.filled.length > 0 && r.text !== before) writeFileSync(path, r.text);
      if (r.filled.length + r.left.length > 0) {
        process.stderr.write(`bench: ${file}: rewrote ${r.filled.join(', ') || 'nothing'}${r.left.length > 0 ? `; left ${r.left.join(', ')} (not in this run)` : ''}\n`);
      }
    }
  }
} finally {
  release();
}
