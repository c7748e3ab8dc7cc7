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

const HELP = `usage: pagefuse bench [--quick] [--json] [--html FILE] [--force]

Measures, in one run on this host:
  - page hashing: pagefuse's exact and fast scans against the fastest native read of the same memory
    (widest vector loads, best of 1/2/4/8 streams; one thread, and the default thread count),
    node:crypto sha1 per page, and @node-rs/xxhash per page when it is installed; with the CPU flags;
  - the scan estimate against what ksmd actually merges on generated guests (root only);
  - the tuner policies side by side on a generated workload (root only).
Without root, or while VMs run on this host, the KSM parts are skipped with the reason and the rest
runs. They set ksmd's run, pages_to_scan, sleep_millisecs, advisor_mode and use_zero_pages while they
run, and put back the values found when they end (on SIGINT, SIGTERM and SIGHUP too); the values are
printed on stderr first.

  --quick       small sizes: about a minute (the full run takes about 11 minutes on a 2-CPU host, most
                of it the tuner policies, each run until 95 % has merged or for at most 300 s;
                kernel-advisor does not reach 95 % on this workload, so its row alone takes 300 s)
  --json        print the figures as JSON (snake_case) instead of tables
  --html FILE   also write a self-contained page with charts (written whole or not at all)
  --force       drive ksmd even while VMs are running (their merging pace changes meanwhile)
`;

export async function run(args: string[]): Promise<number> {
  const { values } = parse('bench', args, {
    options: { quick: { type: 'boolean' }, json: { type: 'boolean' }, html: { type: 'string' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
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
    result = await runBench({ quick: values.quick === true, force: values.force === true, log: (line) => process.stderr.write(`${line}\n`) });
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
