// pagefuse stop: run=0, ksmd stops; merged pages stay merged.
import { Ksm, ksmOptionsFromEnv } from '../ksm/ksm.js';
import { EXIT_OK, parse } from './common.js';

const HELP = `usage: pagefuse stop

Stops ksmd (run=0, as root). Pages already merged stay merged; 'pagefuse unmerge' splits them.
`;

export async function run(args: string[]): Promise<number> {
  const { values } = parse('stop', args, { options: { help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(HELP);
    return EXIT_OK;
  }
  await new Ksm(ksmOptionsFromEnv()).stop();
  process.stdout.write("ksmd stopped (run=0); merged pages stay merged ('pagefuse unmerge' splits them)\n");
  return EXIT_OK;
}
