// What a user sees on a mistake: one line on stderr that says what to write, and the exit status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from './helpers/cli.js';

test('a flag value that starts with a dash: one usage line that says to write --flag=-VALUE, exit 2', () => {
  for (const [args, flag] of [
    [['status', '--top', '-1'], 'top'],
    [['unmerge', '--timeout', '-5'], 'timeout'],
    [['top', '--interval', '-1'], 'interval'],
  ] as const) {
    const r = runCli([...args]);
    assert.equal(r.status, 2, args.join(' '));
    assert.equal(r.stdout, '');
    assert.equal(
      r.stderr,
      `pagefuse ${args[0]}: Option '--${flag}' argument is ambiguous: to specify an option argument starting with a dash use '--${flag}=-XYZ'\n`,
    );
  }
});
