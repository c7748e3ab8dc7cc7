// KSM's global counters and what they say was saved. Pure: no addon, no file access, so the savings
// model, the policies and any consumer can use it anywhere (test/pure-modules.test.ts proves it).
import { PAGE_SIZE } from '../host/page-size.js';

/** sizeof(struct ksm_rmap_item): what the kernel charges per scanned page in its profit figures. */
export const RMAP_ITEM_BYTES = process.arch.endsWith('64') ? 64 : 32;

/**
 * The read-only files of /sys/kernel/mm/ksm as Ksm.read() finds them, under the kernel's names. A kernel
 * lacks the newer ones; files pagefuse does not know are kept too.
 */
export interface KsmCounters {
  pages_shared?: number;
  pages_sharing?: number;
  pages_unshared?: number;
  pages_volatile?: number;
  full_scans?: number;
  stable_node_chains?: number;
  stable_node_dups?: number;
  general_profit?: number;
  pages_scanned?: number;
  pages_skipped?: number;
  ksm_zero_pages?: number;
  [other: string]: number | string | undefined;
}

/**
 * The counters pagefuse computes with: the five every KSM kernel has (0 when a fake tree lacks them),
 * and the newer ones where the kernel has them (pages_scanned and ksm_zero_pages need 6.6+,
 * general_profit 6.4+).
 */
export interface KnownKsmCounters {
  pages_shared: number;
  pages_sharing: number;
  pages_unshared: number;
  pages_volatile: number;
  full_scans: number;
  pages_scanned?: number;
  ksm_zero_pages?: number;
  stable_node_chains?: number;
  stable_node_dups?: number;
  general_profit?: number;
  pages_skipped?: number;
}

const OPTIONAL = ['pages_scanned', 'ksm_zero_pages', 'stable_node_chains', 'stable_node_dups', 'general_profit', 'pages_skipped'] as const;

function num(v: number | string | undefined): number | undefined {
  return typeof v === 'number' ? v : undefined;
}

/** The known counters of a Ksm.read() result, as numbers. */
export function knownCounters(raw: Readonly<Record<string, number | string | undefined>>): KnownKsmCounters {
  const c: KnownKsmCounters = {
    pages_shared: num(raw.pages_shared) ?? 0,
    pages_sharing: num(raw.pages_sharing) ?? 0,
    pages_unshared: num(raw.pages_unshared) ?? 0,
    pages_volatile: num(raw.pages_volatile) ?? 0,
    full_scans: num(raw.full_scans) ?? 0,
  };
  for (const k of OPTIONAL) {
    const v = num(raw[k]);
    if (v !== undefined) c[k] = v;
  }
  return c;
}

/** Pages KSM saves right now, host-wide: every extra mapping of a KSM page, plus zero pages it placed. */
export function savedPages(c: { pages_sharing?: number | string; ksm_zero_pages?: number | string }): number {
  return (num(c.pages_sharing) ?? 0) + (num(c.ksm_zero_pages) ?? 0);
}

type ProfitCounterName = 'general_profit' | 'pages_shared' | 'pages_sharing' | 'pages_unshared' | 'pages_volatile' | 'ksm_zero_pages';

/**
 * The kernel's general_profit, or the same formula over the counters on kernels before 6.4:
 * (pages_sharing + ksm_zero_pages) × page size − rmap items × sizeof(rmap_item), with the admin guide's
 * rmap items ≈ shared + sharing + unshared + volatile (sysfs does not show ksm_rmap_items).
 */
export function profitFromCounters(counters: { [K in ProfitCounterName]?: number | string | undefined }, pageSize: number = PAGE_SIZE): number {
  if (typeof counters.general_profit === 'number') return counters.general_profit;
  const n = (k: ProfitCounterName): number => num(counters[k]) ?? 0;
  const rmapItems = n('pages_shared') + n('pages_sharing') + n('pages_unshared') + n('pages_volatile');
  return (n('pages_sharing') + n('ksm_zero_pages')) * pageSize - rmapItems * RMAP_ITEM_BYTES;
}
