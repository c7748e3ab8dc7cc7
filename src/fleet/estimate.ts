// How far a hash-mod-M estimate can be from the truth. A distinct content is in the sample when its
// keyed value is 0 modulo M, as if by a coin of probability 1/M thrown once per content (the key
// makes the values pseudo-random), so the number X of sampled contents two sketches share is
// Binomial(n, 1/M) for n shared contents. The estimate is M·X; the bound is M times the half-width
// of the score interval for X at z standard deviations, with the finite-population factor 1 − 1/M
// (so M = 1, a full census, has no error). See docs/fleet.md.

/** z of the bounds the planner states: 3 standard deviations, 99.7 % two-sided. */
export const DEFAULT_Z = 3;

export interface Estimate {
  /** Pages (distinct contents), M·X. */
  pages: number;
  /** The truth is within pages ± bound at the chosen z. */
  bound: number;
}

/** An estimate of n from X sampled values at modulus M. */
export function estimateFromSample(x: number, modulus: number, z = DEFAULT_Z): Estimate {
  const f = 1 - 1 / modulus;
  return { pages: modulus * x, bound: Math.ceil(modulus * (z * Math.sqrt((x + (z * z) / 4) * f) + ((z * z) / 2) * f)) };
}

/**
 * The gain of moving a VM: `plus` sampled contents it would share only at the target, `minus` it
 * shares only where it is (contents shared at both cancel exactly and carry no noise). The truth
 * is M·(n₊ − n₋) with independent Binomial(n, 1/M) counts, so the bound is the score half-width
 * for plus + minus.
 */
export function gainFromSamples(plus: number, minus: number, modulus: number, z = DEFAULT_Z): Estimate {
  return { pages: modulus * (plus - minus), bound: estimateFromSample(plus + minus, modulus, z).bound };
}
