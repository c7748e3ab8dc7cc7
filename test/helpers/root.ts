// Tests that need root (reading /proc/kpageflags, starting a child as another user): outside CI they
// skip with the reason; CI runs as root, so there a root test that cannot run is a failure.
import type { TestContext } from 'node:test';

export function requireRoot(t: TestContext, why: string): boolean {
  if (process.getuid?.() === 0) return true;
  if (process.env.CI) throw new Error(`this test needs root (${why}), and CI runs as root: it must not skip there`);
  t.skip(`needs root: ${why}`);
  return false;
}
