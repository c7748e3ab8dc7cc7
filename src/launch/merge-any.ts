// Whole-process merging: prctl(PR_SET_MEMORY_MERGE / PR_GET_MEMORY_MERGE), Linux 6.4+.
import { release } from 'node:os';
import { native } from '../native.js';
import { explain, isSystemError, invalidArgType } from '../errors.js';

function unsupported(err: unknown): Error {
  return explain(
    err,
    `PR_SET_MEMORY_MERGE is not supported by this kernel (${release()}): it needs Linux 6.4 or newer built with CONFIG_KSM`,
    'ENOTSUP',
  );
}

/** Makes every present and future anonymous mapping of this process mergeable (on) or unmerges them all (off). */
export function setMergeAny(on: boolean): void {
  if (typeof on !== 'boolean') throw invalidArgType(`setMergeAny: on must be a boolean`, on);
  try {
    native.setMergeAny(on);
  } catch (err) {
    if (isSystemError(err, 'EINVAL')) throw unsupported(err);
    throw err;
  }
}

/** Whether this process has PR_SET_MEMORY_MERGE set. */
export function getMergeAny(): boolean {
  try {
    return native.getMergeAny();
  } catch (err) {
    if (isSystemError(err, 'EINVAL')) throw unsupported(err);
    throw err;
  }
}
