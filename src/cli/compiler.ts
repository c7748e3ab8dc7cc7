// How much V8 compiles in the tune daemon. bin.ts loads this before any other module of a `tune`, so that
// nothing is optimized while the command's modules load either.
import { setFlagsFromString } from 'node:v8';

/**
 * The tune daemon's JavaScript stays on V8's baseline tier (Sparkplug): TurboFan is off for its life. Its
 * own work is small and spread thin (a look at /proc a second, a decision every 2 s to a minute; the scans
 * are native), yet TurboFan kept compiling on a background thread minutes into an idle run, and the
 * compiler's own code (3.7 MiB of the node binary) and its output stayed resident. Beside 40 idle VMs
 * (scripts/idle-cost.ts, 300 s side by side, 2026-12-01, the 2-vCPU AMD EPYC VM): RSS 51.3 MiB mean and
 * 51.9 max against 56.6 and 59.9 (smaps: the node binary 37.2 against 40.9 MiB, anonymous memory 6.9
 * against 9.2); CPU alike (0.316 % against 0.283 % in that run, 0.253 against 0.273 and 0.216 against 0.245
 * in two others: the compiler's thread gone, the main thread's code slower). The page-map walk behind the
 * saved figure takes 67-86 ms of CPU for 1.3 GiB against 50-58 (at most every 30 s while ksmd runs).
 * --lite-mode saved 2 MiB more but doubled that walk. Set at run time: V8 reads it at each tier-up decision.
 */
export function baselineCompilerOnly(): void {
  setFlagsFromString('--no-turbofan');
}
