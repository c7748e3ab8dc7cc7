// pagefuse unmerge: run=2, every KSM page in the system is split again.
import { Ksm, ksmOptionsFromEnv } from '../ksm/ksm.js';
import { EXIT_OK, durationFlag, parse } from './common.js';

const HELP = `usage: pagefuse unmerge [--timeout S]

Stops ksmd and splits every KSM page in the system (run=2, as root), waiting until pages_shared and
pages_sharing read 0. Needs as much free memory as KSM was saving. ksmd stays stopped (run=2) until
'pagefuse start'; memory registered as mergeable stays registered.

  --timeout S    how long to wait (default 60s; 500ms, 2m… accepted)
`;

export async function run(args: string[]): Promise<number> {
  const { values } = parse('unmerge', args, {
    options: { timeout: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return EXIT_OK;
  }
  const timeoutS = durationFlag('unmerge', 'timeout', values.timeout, { min: 0, max: 86_400 });
  const timeoutMs = timeoutS === undefined ? undefined : timeoutS * 1000;
  const ksm = new Ksm(ksmOptionsFromEnv());
  const before = await ksm.read();
  await ksm.unmergeAll(timeoutMs === undefined ? {} : { timeoutMs });
  const sharing = before.counters.pages_sharing ?? 0;
  process.stdout.write(`unmerged every KSM page (pages_sharing was ${sharing}); ksmd stays stopped (run=2) until 'pagefuse start'\n`);
  return EXIT_OK;
}
