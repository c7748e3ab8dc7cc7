// pagefuse bench — what KSM and pagefuse buy on this host: hashing speed, the scan estimate against
// ksmd, and the tuner policies side by side. Tables on stdout, JSON with --json, a page with --html.
import { access, constants } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parse } from './common.js';
import { benchPage, benchText, runBench } from '../bench/bench.js';
import { hostSource } from '../report/source.js';
import { Sampler } from '../report/sampler.js';
import { writeFileAtomic } from '../host/atomic.js';
import { explain } from '../errors.js';

const HELP = `usage: pagefuse bench [--quick] [--json] [--html FILE]

Measures, in one run on this host:
  - page hashing: pagefuse's exact and fast scans against the fastest native read of the same memory
    (widest vector loads, best of 1/2/4/8 streams; one thread, and the default thread count),
    node:crypto sha1 per page, and @node-rs/xxhash per page when it is installed; with the CPU flags;
  - the scan estimate against what ksmd actually merges on generated guests (root only);
  - the tuner policies side by side on a generated workload (root only).
Without root the KSM parts are skipped with the reason, and the rest runs.

  --quick       small sizes: about a minute
  --json        print the figures as JSON (snake_case) instead of tables
  --html FILE   also write a self-contained page with charts (written whole or not at all)
`;

export async function run(args: string[]): Promise<number> {
  const { values } = parse('bench', args, {
    options: { quick: { type: 'boolean' }, json: { type: 'boolean' }, html: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const html = values.html;
  if (html !== undefined) {
    // Fail now rather than after the run.
    const dir = dirname(resolve(html));
    await access(dir, constants.W_OK).catch((err: unknown) => {
      throw explain(err, `cannot write ${html}: ${(err as NodeJS.ErrnoException).code ?? 'error'} on ${dir}`);
    });
  }
  // Progress lines must never kill the run (and skip restoring ksmd's knobs) when stderr's reader goes away.
  process.stderr.on('error', () => undefined);
  const sampler = html === undefined ? undefined : new Sampler(hostSource(), { intervalMs: 250, capacity: 4000 });
  sampler?.start();
  let result;
  try {
    result = await runBench({ quick: values.quick === true, log: (line) => process.stderr.write(`${line}\n`) });
  } finally {
    sampler?.stop();
  }
  process.stdout.write(values.json ? `${JSON.stringify(result, null, 2)}\n` : benchText(result));
  if (html !== undefined && sampler !== undefined) {
    await writeFileAtomic(html, benchPage(result, sampler.history.toArray()));
    process.stderr.write(`pagefuse bench: wrote ${html}\n`);
  }
  return 0;
}
