// What every CLI command shares: usage errors, output helpers, exit codes.
import { parseArgs, type ParseArgsConfig } from 'node:util';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A mistake in how the command was called: one line on stderr, exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type Options = NonNullable<ParseArgsConfig['options']>;
type Strict<T> = T & { args: string[]; strict: true };

/** parseArgs with strict checking, turning its errors into one-line UsageErrors. */
export function parse<T extends { options: Options; allowPositionals?: boolean }>(
  command: string,
  args: string[],
  config: T,
): ReturnType<typeof parseArgs<Strict<T>>> {
  try {
    return parseArgs({ ...config, args, strict: true } as Strict<T>);
  } catch (err) {
    const lines = (err as Error).message.split('\n');
    let message = lines[0].replace(/\. To specify a positional.*$/, '');
    // "--top -1": parseArgs's first line alone ("argument is ambiguous.") does not say what to write.
    const dash = lines.find((l) => l.startsWith('To specify an option argument starting with a dash'));
    if (dash !== undefined) message = `${message.replace(/\.$/, '')}: ${dash.charAt(0).toLowerCase()}${dash.slice(1).replace(/\.$/, '')}`;
    throw new UsageError(`pagefuse ${command}: ${message}`);
  }
}

/** Parses a whole number from a flag, or throws a UsageError naming the flag. */
export function intFlag(command: string, flag: string, value: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`pagefuse ${command}: --${flag} must be a whole number from ${min} to ${max}, got '${value}'`);
  }
  return n;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

// The text formatters live with the outputs (report/format.ts); commands import them from here too.
export { formatBytes, formatTable } from '../report/format.js';
