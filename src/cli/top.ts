// pagefuse top — a live view of what KSM saves, per host, VM and node; one-shot text when not on a terminal.
import { parse } from './common.js';
import { secondsFlag } from './report-flags.js';
import { hostSource } from '../report/source.js';
import { Sampler } from '../report/sampler.js';
import { summaryText, topScreen } from '../report/text.js';
import type { Figures } from '../report/model.js';

const HELP = `usage: pagefuse top [--interval S]

Live view of what KSM gives back (docs/savings.md): saved and its parts, with KSM's metadata (a host
cost) and the kernel's general_profit beside it; what the latest scan says merging would save by ksmd's
second full scan, and on a second line what comes once ksmd has split, at most one a full scan, the
huge pages whose only match is a zero subpage; sharing ratio, merge rate, ksmd CPU, the tuner's latest
decision, and every process with KSM state or mergeable memory, most saved first (VMs by name).
Keys: q or Ctrl-C quits. When stdout is not a terminal, prints one report (two samples S apart) and exits.

  --interval S   seconds between refreshes (default 1)
`;

// Alternate screen + hidden cursor on entry; both undone on every exit path.
const ENTER = '\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J';
const LEAVE = '\x1b[?25h\x1b[?1049l';

/** Without root, other users' processes (every VM of a root VMM) cannot be read: said under the table. */
const NOT_ROOT = "(not root: other users' processes are not listed; run as root to see every process)";
const notRoot = (): boolean => process.getuid?.() !== 0;

async function oneShot(sampler: Sampler, intervalMs: number): Promise<number> {
  await sampler.sampleNow();
  await new Promise((r) => setTimeout(r, intervalMs));
  process.stdout.write(summaryText(await sampler.sampleNow()) + (notRoot() ? `${NOT_ROOT}\n` : ''));
  return 0;
}

function live(sampler: Sampler, intervalSeconds: number): Promise<number> {
  const out = process.stdout;
  const input = process.stdin;
  return new Promise<number>((resolve) => {
    let last: Figures | null = null;
    let done = false;
    const draw = (): void => {
      if (last === null || done) return;
      const rows = out.rows || 24;
      const lines = topScreen(last, { columns: out.columns || 80, rows, intervalSeconds });
      if (notRoot()) lines.splice(Math.min(lines.length, rows - 1), lines.length, NOT_ROOT.slice(0, out.columns || 80));
      out.write(`\x1b[H${lines.map((l) => `${l}\x1b[K`).join('\n')}\x1b[J`);
    };
    const finish = (code: number): void => {
      if (done) return;
      done = true;
      sampler.stop();
      input.off('data', onKey);
      out.off('resize', draw);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      if (input.isTTY) input.setRawMode(false);
      input.pause();
      out.write(LEAVE, () => resolve(code));
    };
    const onKey = (buf: Buffer): void => {
      const k = buf.toString('utf8');
      if (k === 'q' || k === 'Q' || k === '\x03' || k === '\x04') finish(0);
    };
    const onSignal = (): void => finish(0);
    sampler.on('sample', (f) => {
      last = f;
      draw();
    });
    sampler.on('error', (err) => {
      finish(1);
      process.stderr.write(`pagefuse top: ${err.message.split('\n')[0]}\n`);
    });
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    out.on('resize', draw);
    if (input.isTTY) input.setRawMode(true);
    input.resume();
    input.on('data', onKey);
    out.write(ENTER);
    sampler.start();
  });
}

export async function run(args: string[]): Promise<number> {
  const { values } = parse('top', args, { options: { interval: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const intervalSeconds = secondsFlag('top', 'interval', values.interval, 1);
  const sampler = new Sampler(hostSource(), { intervalMs: intervalSeconds * 1000, capacity: 2 });
  if (!process.stdout.isTTY) return oneShot(sampler, intervalSeconds * 1000);
  return live(sampler, intervalSeconds);
}
