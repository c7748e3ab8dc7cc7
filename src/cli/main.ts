// pagefuse CLI: one file per command under src/cli/, each exporting run(args) → exit code.
import { readFileSync } from 'node:fs';
import { EXIT_FAILURE, EXIT_USAGE, StatusError, UsageError, type CliContext } from './common.js';
import { COMMANDS } from './commands.js';
import { escapeTerminal } from '../report/escape.js';

/** The exit statuses every command keeps to; the README's table is the same. */
export const EXIT_CODES = `exit status:
  0    success (audit: no finding at or above --fail-on)
  1    runtime failure: KSM missing, not root, a process gone, a write refused (audit: it could not read the host)
  2    bad usage: an unknown command or option, a value out of range (the flag is named)
  3    audit: a finding at or above --fail-on (default critical)
  141  stdout was closed ('pagefuse audit | head -1'): the command stopped quietly, as on SIGPIPE
  exec the command's own status, or 125 it was not started (a setting such as merge or NUMA could not
       be applied, or isolation refused it), 126 the command is not executable, 127 it was not found, 128+N it died of signal N
`;

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `usage: pagefuse <command> [options]\n       pagefuse --version\n\ncommands:\n${lines.join('\n')}\n\nRun 'pagefuse <command> --help' (or 'pagefuse help <command>') for a command's options.\nDurations are seconds; 500ms, 30s, 2m and 1h are accepted too.\n\n${EXIT_CODES}`;
}

function version(): string {
  // dist/cli/main.js and src/cli/main.ts both sit two levels under the package root.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return `pagefuse ${pkg.version}\n`;
}

export async function main(argv: string[], context?: CliContext): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    // No command is a usage error: the usage goes where errors go.
    process.stderr.write(usage());
    return EXIT_USAGE;
  }
  const askVersion = name === '--version' || name === '-V';
  const topHelp = name === '--help' || name === '-h' || name === 'help';
  if ((askVersion || topHelp) && rest.length === 0) {
    process.stdout.write(askVersion ? version() : usage());
    return 0;
  }
  // 'pagefuse help tune' is 'pagefuse tune --help'.
  const commandName = topHelp && rest.length === 1 ? rest[0] : name;
  // Own entries only: COMMANDS['constructor'] is Object's.
  const entry = Object.hasOwn(COMMANDS, commandName) ? COMMANDS[commandName] : undefined;
  try {
    if (askVersion || (topHelp && rest.length > 1)) {
      throw new UsageError(`pagefuse: ${name} takes ${topHelp ? 'at most one command' : 'no arguments'}; run 'pagefuse --help'`);
    }
    if (entry === undefined) throw new UsageError(`pagefuse: unknown command '${commandName}'; run 'pagefuse --help'`);
    const command = await entry.load();
    return await command.run(commandName === name ? rest : ['--help'], context);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${escapeTerminal(err.message)}\n`);
      return EXIT_USAGE;
    }
    const e = err as Error & { code?: string };
    // An API error already named after the command ('scan: process 9 does not exist') is not named twice.
    const line = (e?.message ?? String(err)).split('\n')[0].replace(new RegExp(`^${name}: `), '');
    process.stderr.write(`pagefuse ${escapeTerminal(name)}: ${escapeTerminal(line)}\n`); // messages quote /proc names
    if (process.env.PAGEFUSE_DEBUG) process.stderr.write(`${(e?.cause as Error | undefined)?.stack ?? e?.stack ?? ''}\n`);
    return err instanceof StatusError ? err.status : EXIT_FAILURE;
  }
}
