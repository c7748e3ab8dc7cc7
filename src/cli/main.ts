// pagefuse CLI: one file per command under src/cli/, each exporting run(args) → exit code.
import { EXIT_FAILURE, EXIT_USAGE, UsageError } from './common.js';
import { COMMANDS } from './commands.js';
import { escapeTerminal } from '../report/escape.js';

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `usage: pagefuse <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun 'pagefuse <command> --help' for a command's options.\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    // No command is a usage error: the usage goes where errors go.
    process.stderr.write(usage());
    return EXIT_USAGE;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return 0;
  }
  const entry = COMMANDS[name];
  try {
    if (entry === undefined) throw new UsageError(`pagefuse: unknown command '${name}'; run 'pagefuse --help'`);
    const command = await entry.load();
    return await command.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${escapeTerminal(err.message)}\n`);
      return EXIT_USAGE;
    }
    const e = err as Error & { code?: string };
    // An API error already named after the command ('scan: process 9 does not exist') is not named twice.
    const line = (e?.message ?? String(err)).split('\n')[0].replace(new RegExp(`^${name}: `), '');
    process.stderr.write(`pagefuse ${escapeTerminal(name)}: ${escapeTerminal(line)}\n`); // messages quote /proc names
    if (process.env.PAGEFUSE_DEBUG) process.stderr.write(`${e?.stack ?? ''}\n`);
    return EXIT_FAILURE;
  }
}
