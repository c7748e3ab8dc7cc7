// Per-process KSM statistics from /proc/<pid>/ksm_stat (6.1+), falling back to ksm_merging_pages (5.19+).
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PAGE_SIZE } from '../host/page-size.js';
import { RMAP_ITEM_BYTES } from './counters.js';
import { PagefuseError, explain, isSystemError, invalidNumber } from '../errors.js';
import { readComm } from '../host/procfs.js';


export interface ProcessKsm {
  pid: number;
  /** Pages of this process ksmd has looked at (one rmap_item each); null before Linux 6.1. */
  rmapItems: number | null;
  /** Pages mapped to the kernel's zero page by KSM (use_zero_pages=1); 0 before 6.6, which did not count them. */
  zeroPages: number;
  /** Pages of this process that map a KSM page. */
  mergingPages: number;
  /** (mergingPages + zeroPages) × page size − rmapItems × rmap_item size, as the kernel computes it; may be negative. */
  profitBytes: number;
  /** PR_SET_MEMORY_MERGE is set; null when the kernel does not say (before 6.14). */
  mergeAny: boolean | null;
  /** Some mapping is registered with KSM; null when the kernel does not say (before 6.14). */
  mergeable: boolean | null;
}

export interface ProcessKsmOptions {
  procRoot?: string;
}

export interface KsmProcessEntry extends ProcessKsm {
  /** The command name (/proc/<pid>/comm). */
  name: string;
}

const NUMBER_FIELDS: Record<string, 'rmapItems' | 'zeroPages' | 'mergingPages' | 'profitBytes'> = {
  ksm_rmap_items: 'rmapItems',
  ksm_zero_pages: 'zeroPages',
  ksm_merging_pages: 'mergingPages',
  ksm_process_profit: 'profitBytes',
};
const FLAG_FIELDS: Record<string, 'mergeAny' | 'mergeable'> = {
  ksm_merge_any: 'mergeAny',
  ksm_mergeable: 'mergeable',
};

/** What a ksm_stat file says, field by field; lines this version does not know are ignored. */
export interface KsmStatFields {
  rmapItems?: number;
  zeroPages?: number;
  mergingPages?: number;
  profitBytes?: number;
  mergeAny?: boolean;
  mergeable?: boolean;
}

/**
 * Parses /proc/<pid>/ksm_stat in every format the kernel has printed: `key value` lines (6.1, 6.4, 6.6,
 * 6.10 moved ksm_zero_pages up) and `key: yes|no` lines (6.14). An empty file (zombie, kernel thread) gives {}.
 */
export function parseKsmStat(text: string): KsmStatFields {
  const out: KsmStatFields = {};
  for (const line of text.split('\n')) {
    const m = /^\s*(\w+):?\s+(\S+)\s*$/.exec(line);
    if (!m) continue;
    const [, key, value] = m;
    if (Object.hasOwn(NUMBER_FIELDS, key) && /^-?\d+$/.test(value)) out[NUMBER_FIELDS[key]] = Number(value);
    else if (Object.hasOwn(FLAG_FIELDS, key) && (value === 'yes' || value === 'no')) out[FLAG_FIELDS[key]] = value === 'yes';
  }
  return out;
}

function checkPid(pid: number | 'self'): void {
  if (pid === 'self') return;
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0 || pid > 2 ** 22) {
    throw invalidNumber(`processKsm: pid must be 'self' or a process id from 1 to ${2 ** 22}`, pid);
  }
}

async function readProc(procRoot: string, pid: number | 'self', file: string): Promise<string | undefined> {
  const path = join(procRoot, String(pid), file);
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if (isSystemError(err, 'ESRCH')) throw gone(pid, err);
    if (isSystemError(err, 'EACCES') || isSystemError(err, 'EPERM')) {
      throw explain(err, `reading ${path} needs root or the same user as process ${pid}`, 'EACCES');
    }
    if (isSystemError(err, 'ENOENT')) {
      if (!(await exists(join(procRoot, String(pid))))) throw gone(pid, err);
      return undefined;
    }
    throw explain(err, `reading ${path} failed: ${(err as Error).message}`);
  }
}

function gone(pid: number | 'self', cause: unknown): PagefuseError {
  return explain(cause, `process ${pid} does not exist (it may have exited)`, 'ESRCH');
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** KSM statistics of one process, or of this one with 'self'. */
export async function processKsm(pid: number | 'self', options: ProcessKsmOptions = {}): Promise<ProcessKsm> {
  checkPid(pid);
  const procRoot = options.procRoot ?? '/proc';
  const stat = await readProc(procRoot, pid, 'ksm_stat');
  const fields: KsmStatFields = stat === undefined ? {} : parseKsmStat(stat);
  if (fields.mergingPages === undefined && stat?.trim() !== '') {
    const merging = await readProc(procRoot, pid, 'ksm_merging_pages');
    if (merging === undefined && stat === undefined) {
      throw new PagefuseError(
        'ENOKSM',
        `this kernel has neither ${join(procRoot, String(pid), 'ksm_stat')} nor ksm_merging_pages: per-process KSM statistics need Linux 5.19+ with CONFIG_KSM`,
      );
    }
    if (merging !== undefined && /^\d+/.test(merging.trim())) fields.mergingPages = Number.parseInt(merging, 10);
  }
  const empty = stat !== undefined && stat.trim() === '';
  const rmapItems = fields.rmapItems ?? (empty ? 0 : null);
  const zeroPages = fields.zeroPages ?? 0;
  const mergingPages = fields.mergingPages ?? 0;
  return {
    pid: pid === 'self' ? process.pid : pid,
    rmapItems,
    zeroPages,
    mergingPages,
    profitBytes: fields.profitBytes ?? (mergingPages + zeroPages) * PAGE_SIZE - (rmapItems ?? 0) * RMAP_ITEM_BYTES,
    mergeAny: fields.mergeAny ?? (empty ? false : null),
    mergeable: fields.mergeable ?? (empty ? false : null),
  };
}

export interface ListOptions extends ProcessKsmOptions {
  /** Also list processes registered with KSM that have no merged page yet. */
  includeRegistered?: boolean;
}

export interface KsmProcessList {
  processes: KsmProcessEntry[];
  /** Processes whose ksm_stat this user may not read (run as root to see them). */
  unreadable: number;
}

const BATCH = 64;

/**
 * Every process with KSM pages (merging or KSM zero pages), largest profit first. Processes that exit
 * meanwhile are left out; so are those this user may not read, counted in `unreadable`.
 */
export async function listKsmProcesses(options: ListOptions = {}): Promise<KsmProcessList> {
  const procRoot = options.procRoot ?? '/proc';
  const pids = (await readdir(procRoot)).filter((n) => /^\d+$/.test(n)).map(Number);
  const found: KsmProcessEntry[] = [];
  let unreadable = 0;
  for (let i = 0; i < pids.length; i += BATCH) {
    await Promise.all(
      pids.slice(i, i + BATCH).map(async (pid) => {
        let ksm: ProcessKsm;
        try {
          ksm = await processKsm(pid, { procRoot });
        } catch (err) {
          const code = (err as PagefuseError).code;
          if (code === 'EACCES') unreadable++;
          if (code === 'ESRCH' || code === 'EACCES') return;
          throw err;
        }
        const registered = (ksm.rmapItems ?? 0) > 0 || ksm.mergeable === true || ksm.mergeAny === true;
        if (ksm.mergingPages + ksm.zeroPages === 0 && !(options.includeRegistered && registered)) return;
        // '' when it exited between the two reads: keep the numbers, without a name.
        const name = (await readComm(procRoot, pid)) ?? '';
        found.push({ ...ksm, name });
      }),
    );
  }
  found.sort((a, b) => b.profitBytes - a.profitBytes || b.mergingPages - a.mergingPages || a.pid - b.pid);
  return { processes: found, unreadable };
}
