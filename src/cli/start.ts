// pagefuse start: run=1, ksmd scans.
import { Ksm, ksmOptionsFromEnv } from '../ksm/ksm.js';
import { EXIT_OK, parse } from './common.js';

const HELP = `usage: pagefuse start

Starts ksmd (run=1, as root): it scans the memory registered as mergeable with the current knobs.
`;

export async function run(args: string[]): Promise<number> {
  const { values } = parse('start', args, { options: { help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(HELP);
    return EXIT_OK;
  }
  await new Ksm(ksmOptionsFromEnv()).start();
  process.stdout.write('ksmd started (run=1)\n');
  return EXIT_OK;
}
