// What the property-based tests (test/fuzz-*.test.ts) share: how many runs, what a typed error is, and a
// count of the generated cases, reported at the end of each file (`# fuzz cases: N`).
import assert from 'node:assert/strict';
import { after } from 'node:test';

/** Runs per property: PAGEFUSE_FUZZ_RUNS, default 1000. */
export const FUZZ_RUNS = Math.max(1, Number(process.env.PAGEFUSE_FUZZ_RUNS ?? 1000) || 1000);

let cases = 0;
export function countCases(): void {
  cases++;
}
after(() => process.stdout.write(`fuzz cases: ${cases}\n`));

/** A failure the caller can act on: an Error with a string `code` (never a bare TypeError from deep inside). */
export function assertCodedError(err: unknown): void {
  assert.ok(err instanceof Error, `not an Error: ${String(err)}`);
  const code = (err as Error & { code?: unknown }).code;
  assert.equal(typeof code, 'string', `no string code on: ${(err as Error).stack}`);
}
