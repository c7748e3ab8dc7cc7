// Each process's zero-page baseline (docs/savings.md, "How the THP-split part is measured"), kept beside
// the other state of pagefuse's daemons (/run/pagefuse/zero-baselines.json for root): whoever reads the
// host while KSM has merged none of a process's pages records how many of its pages already map the zero
// page, so a later one-shot `status`, or a `serve`/`top`/`tune` started after merging, counts only the
// mappings beyond it. A process is named by its pid and start time (a reused pid is another process).
// The file is read as untrusted: anything that is not a well-formed entry is ignored, and nothing is read from
// (or written to) a directory another user owns or can write (checkStateDir).
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { checkStateDir, ensureStateDir, writeFileAtomic } from '../host/atomic.js';
import { defaultStateDir } from '../safety/registry.js';

export const ZERO_BASELINES_FILE = 'zero-baselines.json';

/** A process's zero-page mappings while KSM had merged none of its pages. */
export interface ZeroBaseline {
  /** Its start time (/proc/<pid>/stat field 22): with the pid, it names one process. */
  start: number;
  zeroMappedPages: number;
}

/** Where the baselines are kept: PAGEFUSE_STATE_DIR, else /run/pagefuse for root (defaultStateDir()). */
export function zeroBaselinesPath(): string {
  return join(defaultStateDir(), ZERO_BASELINES_FILE);
}

const count = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** The baselines in `path` by pid; an empty map when the file is missing, not ours to read, or in a directory not to trust. */
export async function readZeroBaselines(path: string): Promise<Map<number, ZeroBaseline>> {
  const out = new Map<number, ZeroBaseline>();
  let parsed: unknown;
  try {
    if (!(await checkStateDir(dirname(path)))) return out;
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch {
    return out;
  }
  const processes = (parsed as { processes?: unknown } | null)?.processes;
  if (typeof processes !== 'object' || processes === null || Array.isArray(processes)) return out;
  for (const [key, v] of Object.entries(processes)) {
    const pid = Number(key);
    const e = v as Partial<ZeroBaseline> | null;
    if (!/^[1-9]\d{0,9}$/.test(key) || !Number.isSafeInteger(pid) || typeof e !== 'object' || e === null) continue;
    if (count(e.start) && count(e.zeroMappedPages)) out.set(pid, { start: e.start, zeroMappedPages: e.zeroMappedPages });
  }
  return out;
}

/**
 * Writes `mine` into `path` over what is there (others' entries kept), dropping entries of processes
 * that no longer run as the same process (`current(pid)` gives the running one's start time). Written
 * whole or not at all; a failure (no root, read-only state dir) is returned, never thrown: the
 * baselines are a help to later readers, not something a reading may fail on.
 */
export async function writeZeroBaselines(
  path: string,
  mine: ReadonlyMap<number, ZeroBaseline>,
  current: (pid: number) => Promise<number | undefined>,
): Promise<Error | undefined> {
  const merged = await readZeroBaselines(path);
  for (const [pid, b] of mine) merged.set(pid, b);
  const processes: Record<string, ZeroBaseline> = {};
  for (const [pid, b] of [...merged].sort((x, y) => x[0] - y[0])) {
    if ((await current(pid)) === b.start) processes[String(pid)] = b;
  }
  try {
    await ensureStateDir(dirname(path));
    await writeFileAtomic(path, `${JSON.stringify({ processes })}\n`);
    return undefined;
  } catch (err) {
    return err as Error;
  }
}
