// Exact and fast mode count the same whatever kernel set hashes the pages (AES or XXH3, any width):
// the page hash decides only which pages are byte-compared.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('./helpers/scan-counts.ts', import.meta.url));

type Counts = { kernel: string; counts: Record<string, unknown> };
const runs = new Map<string, Counts>();
function countsUnder(kernels: string): Counts {
  const seen = runs.get(kernels);
  if (seen) return seen;
  const out = execFileSync(process.execPath, ['--import', 'tsx', SCRIPT], {
    env: { ...process.env, PAGEFUSE_HASH_KERNELS: kernels },
    encoding: 'utf8',
    timeout: 60_000,
  });
  const parsed = JSON.parse(out) as Counts;
  runs.set(kernels, parsed);
  return parsed;
}

test('exact and fast mode give the same counts with every kernel set this CPU runs', () => {
  const reference = countsUnder('sse2+xxh3');
  assert.equal(reference.kernel, 'sse2+xxh3');
  const seen = new Set<string>([reference.kernel]);
  for (const set of ['avx512+vaes', 'avx512+xxh3', 'avx2+vaes', 'avx2+aes', 'avx2+xxh3', 'sse2+aes']) {
    const r = countsUnder(set);
    if (seen.has(r.kernel)) continue; // this CPU lacks the set: the best one it has ran instead
    seen.add(r.kernel);
    assert.deepEqual(r.counts, reference.counts, `${r.kernel} against sse2+xxh3`);
  }
});

test('PAGEFUSE_HASH_KERNELS naming an instruction set picks a set of that width', () => {
  assert.match(countsUnder('sse2').kernel, /^sse2\+(aes|xxh3)$/);
});

test('at AVX2 and SSE2 width the AES hash comes before XXH3 where the CPU has AES (XXH3 is the slower there)', () => {
  const flags = new Set((/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').trim().split(/\s+/));
  const aes = flags.has('aes');
  const avx2 = !flags.has('avx2') ? /^sse2\+/ : flags.has('vaes') && aes ? /^avx2\+vaes$/ : aes ? /^avx2\+aes$/ : /^avx2\+xxh3$/;
  assert.match(countsUnder('avx2').kernel, avx2);
  assert.equal(countsUnder('sse2').kernel, aes ? 'sse2+aes' : 'sse2+xxh3');
});

test('an exact scan of several targets counts the same on two hashing threads as on one', () => {
  const { counts } = countsUnder('sse2+xxh3');
  assert.deepEqual(counts.exactThreads, counts.exact);
});

test('a fast scan of several targets counts the same on two hashing threads as on one', () => {
  const { counts } = countsUnder('sse2+xxh3');
  assert.deepEqual(counts.fastThreads, counts.fast);
});
