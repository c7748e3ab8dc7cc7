// Page contents for generated workloads: cheap to write (one native fill per page) and distinct
// per key, so tests know exactly which pages are equal.
export const KIND_IMAGE = 1;
export const KIND_UNIQUE = 2;
export const KIND_VOLATILE = 3;

/** A 32-bit mix of the inputs (murmur3's finalizer over a running combination). */
export function mix(...values: number[]): number {
  let h = 0x9e3779b9;
  for (const v of values) {
    h = Math.imul(h ^ (v >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0 || 1;
}

/**
 * Writes page content for (kind, a, b) into `words` (one page as 32-bit words): the whole page
 * carries a pattern derived from the key, and four words at spread offsets carry the key itself, so
 * two pages are equal exactly when their keys are.
 */
export function writePage(words: Uint32Array, kind: number, a: number, b: number): void {
  const h = mix(kind, a, b);
  words.fill(h);
  const n = words.length;
  words[0] = kind;
  words[1] = a >>> 0;
  words[n >>> 1] = b >>> 0;
  words[n - 1] = mix(h, 7);
}
