// pagefuse report — a self-contained HTML page of KSM's savings, from the tuner's history or sampled live.
import { release, hostname } from 'node:os';
import { parse, UsageError } from './common.js';
import { secondsFlag } from './report-flags.js';
import { hostSource } from '../report/source.js';
import { Sampler } from '../report/sampler.js';
import { reportHtml } from '../report/html.js';
import { readHistoryFile, writeHistoryFile, type HistoryRecord } from '../report/history-file.js';
import { assertWritableTarget, writeFileAtomic } from '../host/atomic.js';
import { processSharing } from '../report/sharing.js';
import { tunerInForce } from '../report/tuner-state.js';

const HELP = `usage: pagefuse report --html FILE [--from HISTORY.json | --duration S [--interval S] [--save HISTORY.json]]

Writes one self-contained HTML page (inline CSS and SVG, nothing fetched): savings and ksmd CPU over time,
the tuner's decisions, the per-VM table, KSM pages per NUMA node and the sharing heat map.

  --html FILE      the page to write (written whole or not at all)
  --from FILE      draw a history file (samples and tuner decisions, as the tuner daemon writes it)
  --duration S     without --from: sample this host live for S seconds first (default 5)
  --interval S     seconds between live samples (default 0.5)
  --save FILE      also write the live samples as a history file, for a later --from
`;

async function sampleLive(durationS: number, intervalS: number): Promise<HistoryRecord> {
  const sampler = new Sampler(hostSource(), { intervalMs: intervalS * 1000, capacity: Math.ceil(durationS / intervalS) + 2 });
  const end = Date.now() + durationS * 1000;
  await sampler.sampleNow();
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, Math.min(intervalS * 1000, Math.max(0, end - Date.now()))));
    await sampler.sampleNow();
  }
  const snapshots = sampler.history.toArray();
  // Only decisions in force: none of a dry run's, none of a tuner that has exited.
  const decisions = snapshots.flatMap((s, i) => (tunerInForce(s.tuner) && s.tuner.at !== snapshots[i - 1]?.tuner?.at ? [s.tuner] : []));
  const sharing = await processSharing(snapshots[snapshots.length - 1].processes);
  if ('why' in sharing) return { snapshots, decisions, sharingNote: sharing.why };
  const { estimate, ...matrix } = sharing;
  return { snapshots, decisions, sharing: matrix, estimate };
}

export async function run(args: string[]): Promise<number> {
  const { values } = parse('report', args, {
    options: {
      html: { type: 'string' },
      from: { type: 'string' },
      duration: { type: 'string' },
      interval: { type: 'string' },
      save: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.html === undefined || values.html === '') throw new UsageError('pagefuse report: --html FILE is required');
  if (values.from !== undefined && (values.duration !== undefined || values.interval !== undefined || values.save !== undefined)) {
    throw new UsageError('pagefuse report: --from draws a saved history; --duration, --interval and --save are for live sampling');
  }
  const duration = secondsFlag('report', 'duration', values.duration, 5, 3600);
  const interval = secondsFlag('report', 'interval', values.interval, 0.5, 3600);
  if (values.save !== undefined && values.save === values.html) throw new UsageError('pagefuse report: --save and --html name the same file');
  // Before sampling for --duration: a target it cannot replace is refused now, not after the wait.
  for (const path of [values.html, values.save]) if (path !== undefined) await assertWritableTarget(path);
  let history: HistoryRecord;
  let source: string;
  if (values.from !== undefined) {
    history = await readHistoryFile(values.from);
    source = `history ${values.from}`;
  } else {
    history = await sampleLive(duration, interval);
    source = `sampled live for ${duration} s every ${interval} s`;
    if (values.save !== undefined) await writeHistoryFile(values.save, history);
  }
  const html = reportHtml({ source, host: `${hostname()}, Linux ${release()}`, history });
  await writeFileAtomic(values.html, html);
  process.stdout.write(`pagefuse report: wrote ${values.html} (${history.snapshots.length} samples)\n`);
  return 0;
}
