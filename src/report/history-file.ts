// The history file: snapshots over time plus the tuner's decisions, which `pagefuse report --from` draws.
// snake_case with the kernel's own names, like every JSON pagefuse writes. The tuner daemon (or anyone
// holding a Sampler) writes it with writeHistoryFile.
import type { SharingMatrix, Snapshot, DecisionRecord, WouldSave } from './model.js';
import type { KnownKsmCounters } from '../ksm/counters.js';
import type { KsmSettings } from '../ksm/knobs.js';
import { writeFileAtomic } from '../host/atomic.js';
import { PagefuseError } from '../errors.js';
import { readRegularFile } from '../host/regular-file.js';

export interface HistoryJson {
  version: 1;
  samples: {
    t: number;
    page_size: number;
    settings: KsmSettings;
    counters: KnownKsmCounters;
    ksmd_cpu_seconds?: number;
    processes: {
      pid: number;
      name: string;
      vm: boolean;
      merging_pages: number;
      zero_pages: number;
      rmap_items: number;
      profit_bytes: number;
      // What the savings model takes when the reader had them (root): without them a report drawn from the
      // file gave an exited VM's merged pages to the VMs left, and no PSS or huge page splits.
      pss_bytes?: number;
      zero_mapped_pages?: number;
      sharing_weight?: number;
      thp_split_upper_bound?: true;
    }[];
    nodes?: { id: number; ksm_pages: number }[];
    /** The sampler saw every process of the host (Snapshot.wholeHost). */
    whole_host?: true;
  }[];
  decisions: {
    t: number;
    policy: string;
    settings: Partial<Record<string, number>>;
    reason: string;
    /** The tuner's would-save figure at this decision, and what it leaves to slow huge page splits (docs/savings.md). */
    estimated_bytes?: number;
    thp_slow_split_pages?: number;
    thp_slow_split_zero_bytes?: number;
  }[];
  sharing?: { labels: string[]; pages: number[][] };
}

export interface HistoryRecord {
  snapshots: Snapshot[];
  decisions: DecisionRecord[];
  sharing?: SharingMatrix;
  /** Why there is no sharing matrix, when it is known. */
  sharingNote?: string;
  /** The would-save estimate of the duplicate scan that made the sharing matrix (docs/savings.md). */
  estimate?: WouldSave;
}

export function toHistoryJson(h: HistoryRecord): HistoryJson {
  const out: HistoryJson = {
    version: 1,
    samples: h.snapshots.map((s) => {
      const sample: HistoryJson['samples'][number] = {
        t: s.at,
        page_size: s.pageSize,
        settings: s.settings,
        counters: s.counters,
        processes: s.processes.map((p) => ({
          pid: p.pid,
          name: p.name,
          vm: p.vm === true,
          merging_pages: p.mergingPages,
          zero_pages: p.zeroPages,
          rmap_items: p.rmapItems,
          profit_bytes: p.profitBytes,
          ...(p.pssBytes === undefined ? {} : { pss_bytes: p.pssBytes }),
          ...(p.zeroMappedPages === undefined || p.zeroMappedPages === null ? {} : { zero_mapped_pages: p.zeroMappedPages }),
          ...(p.sharingWeight === undefined || p.sharingWeight === null ? {} : { sharing_weight: p.sharingWeight }),
          ...(p.thpSplitUpperBound === true ? { thp_split_upper_bound: true as const } : {}),
        })),
      };
      if (s.wholeHost === true) sample.whole_host = true;
      if (s.ksmdCpuSeconds !== undefined) sample.ksmd_cpu_seconds = s.ksmdCpuSeconds;
      if (s.nodes !== undefined) sample.nodes = s.nodes.map((n) => ({ id: n.id, ksm_pages: n.ksmPages }));
      return sample;
    }),
    decisions: h.decisions.map((d) => ({
      t: d.at,
      policy: d.policy,
      settings: d.settings,
      reason: d.reason,
      ...(d.estimatedBytes === undefined ? {} : { estimated_bytes: d.estimatedBytes }),
      ...(d.thpSlowSplitPages === undefined || d.thpSlowSplitZeroBytes === undefined
        ? {}
        : { thp_slow_split_pages: d.thpSlowSplitPages, thp_slow_split_zero_bytes: d.thpSlowSplitZeroBytes }),
    })),
  };
  if (h.sharing !== undefined) out.sharing = h.sharing;
  return out;
}

function bad(path: string, why: string): PagefuseError {
  return new PagefuseError('EINVAL', `${path} is not a pagefuse history file: ${why}`, { path });
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

export function fromHistoryJson(v: unknown, path = 'history'): HistoryRecord {
  const j = v as Partial<HistoryJson>;
  if (typeof j !== 'object' || j === null || j.version !== 1) throw bad(path, 'expected {"version": 1, "samples": [...]}');
  if (!Array.isArray(j.samples) || j.samples.length === 0) throw bad(path, 'it has no samples');
  const snapshots = j.samples.map((s, i): Snapshot => {
    const c = s?.counters as Partial<KnownKsmCounters> | undefined;
    if (!isNum(s?.t) || !isNum(s.page_size) || typeof c !== 'object' || c === null || !isNum(c.pages_sharing) || !isNum(c.pages_shared)) {
      throw bad(path, `sample ${i} lacks t, page_size or counters.pages_shared/pages_sharing`);
    }
    const snap: Snapshot = {
      at: s.t,
      pageSize: s.page_size,
      settings: s.settings ?? {},
      counters: { pages_unshared: 0, pages_volatile: 0, full_scans: 0, ...c } as KnownKsmCounters,
      processes: (s.processes ?? []).map((p) => ({
        pid: p.pid,
        name: String(p.name),
        vm: p.vm === true,
        mergingPages: p.merging_pages,
        zeroPages: p.zero_pages,
        rmapItems: p.rmap_items,
        profitBytes: p.profit_bytes,
        ...(isNum(p.pss_bytes) ? { pssBytes: p.pss_bytes } : {}),
        ...(isNum(p.zero_mapped_pages) ? { zeroMappedPages: p.zero_mapped_pages } : {}),
        ...(isNum(p.sharing_weight) ? { sharingWeight: p.sharing_weight } : {}),
        ...(p.thp_split_upper_bound === true ? { thpSplitUpperBound: true } : {}),
      })),
    };
    if (s.whole_host === true) snap.wholeHost = true;
    if (isNum(s.ksmd_cpu_seconds)) snap.ksmdCpuSeconds = s.ksmd_cpu_seconds;
    if (Array.isArray(s.nodes)) snap.nodes = s.nodes.map((n) => ({ id: n.id, ksmPages: n.ksm_pages }));
    return snap;
  });
  snapshots.sort((a, b) => a.at - b.at);
  const decisions = (Array.isArray(j.decisions) ? j.decisions : []).map((d): DecisionRecord => {
    const rec: DecisionRecord = { at: d.t, policy: String(d.policy), settings: d.settings ?? {}, reason: String(d.reason ?? '') };
    if (isNum(d.estimated_bytes)) rec.estimatedBytes = d.estimated_bytes;
    if (isNum(d.thp_slow_split_pages) && isNum(d.thp_slow_split_zero_bytes)) {
      rec.thpSlowSplitPages = d.thp_slow_split_pages;
      rec.thpSlowSplitZeroBytes = d.thp_slow_split_zero_bytes;
    }
    return rec;
  });
  const out: HistoryRecord = { snapshots, decisions };
  const sh = j.sharing;
  if (sh !== undefined) {
    const square = Array.isArray(sh.labels) && Array.isArray(sh.pages) && sh.pages.length === sh.labels.length && sh.pages.every((r) => Array.isArray(r) && r.length === sh.labels.length && r.every(isNum));
    if (!square) throw bad(path, 'sharing must be {labels: [n names], pages: n×n numbers}');
    out.sharing = { labels: sh.labels.map(String), pages: sh.pages };
  }
  return out;
}

export async function readHistoryFile(path: string): Promise<HistoryRecord> {
  const text = await readRegularFile(path, { what: 'the history' });
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    // Not JSON.parse's message: it quotes the file's first bytes, and as root the file may be anyone's (/etc/shadow).
    throw bad(path, 'invalid JSON');
  }
  return fromHistoryJson(v, path);
}

export async function writeHistoryFile(path: string, h: HistoryRecord): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(toHistoryJson(h))}\n`);
}
