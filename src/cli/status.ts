// pagefuse status: ksmd's knobs and counters, what it saves, and the processes that have KSM pages.
import { Ksm, ksmOptionsFromEnv, type KsmState } from '../ksm/ksm.js';
import { listKsmProcesses, type KsmProcessEntry } from '../ksm/process.js';
import { EXIT_FAILURE, EXIT_OK, formatBytes, formatTable, intFlag, parse, printJson } from './common.js';

const HELP = `usage: pagefuse status [--json] [--top N]

Shows KSM's settings (sysfs knobs), its counters, the bytes it saves net of its own metadata (the
kernel's general_profit), the sharing ratio (pages_sharing / pages_shared), and the processes with KSM
pages, largest profit first. Works without root; other users' processes then need root to be listed.

  --json     machine-readable output (snake_case, the kernel's names)
  --top N    list at most N processes (default 20; 0 lists none)
`;

const RUN_STATES: Record<number, string> = {
  0: 'stopped (run=0; merged pages stay merged)',
  1: 'running (run=1)',
  2: 'stopped and unmerged (run=2)',
};

function sharingRatio(state: KsmState): number | null {
  const { pages_shared: shared, pages_sharing: sharing } = state.counters;
  return typeof shared === 'number' && typeof sharing === 'number' && shared > 0 ? sharing / shared : null;
}

function processJson(p: KsmProcessEntry) {
  return {
    pid: p.pid,
    name: p.name,
    merging_pages: p.mergingPages,
    zero_pages: p.zeroPages,
    rmap_items: p.rmapItems,
    profit_bytes: p.profitBytes,
    merge_any: p.mergeAny,
    mergeable: p.mergeable,
  };
}

function keyValues(o: Record<string, unknown>): string {
  return Object.entries(o)
    .map(([k, v]) => `  ${k.padEnd(36)} ${String(v)}`)
    .join('\n');
}

export async function run(args: string[]): Promise<number> {
  const { values } = parse('status', args, {
    options: { json: { type: 'boolean' }, top: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return EXIT_OK;
  }
  const top = intFlag('status', 'top', values.top, 0, 1_000_000) ?? 20;
  const options = ksmOptionsFromEnv();
  const ksm = new Ksm(options);

  if (!(await ksm.available())) {
    const message = `pagefuse status: KSM is not available: ${ksm.sysfsRoot} does not exist (kernel built without CONFIG_KSM)\n`;
    if (values.json) {
      printJson({ ksm: { available: false, settings: {}, counters: {}, profit_bytes: 0 }, processes: [] });
    }
    process.stderr.write(message);
    return EXIT_FAILURE;
  }

  const [state, list] = await Promise.all([ksm.read(), listKsmProcesses(options)]);
  const shown = list.processes.slice(0, top);
  const ratio = sharingRatio(state);

  if (values.json) {
    printJson({
      ksm: {
        available: true,
        settings: state.settings,
        counters: state.counters,
        profit_bytes: state.profitBytes,
        sharing_ratio: ratio,
      },
      processes: shown.map(processJson),
      processes_total: list.processes.length,
      processes_unreadable: list.unreadable,
    });
    return EXIT_OK;
  }

  const run = state.settings.run;
  const lines = [
    `KSM: ${RUN_STATES[run ?? -1] ?? `run=${run}`}`,
    `saved: ${formatBytes(state.profitBytes)} net of KSM's metadata` +
      `${ratio === null ? '' : `; sharing ratio ${ratio.toFixed(2)} (pages_sharing / pages_shared)`}`,
    '',
    'settings:',
    keyValues(state.settings),
    '',
    'counters:',
    keyValues(state.counters),
    '',
  ];
  if (list.processes.length === 0) {
    lines.push('no process has KSM pages');
  } else {
    const more = list.processes.length > shown.length ? ` (top ${shown.length} of ${list.processes.length})` : '';
    lines.push(`processes with KSM pages, largest profit first${more}:`);
    if (shown.length > 0) {
      lines.push(
        formatTable(
          ['PID', 'NAME', 'MERGING', 'ZERO', 'PROFIT'],
          shown.map((p) => [p.pid, p.name, p.mergingPages, p.zeroPages, formatBytes(p.profitBytes)]),
        ),
      );
    }
  }
  if (list.unreadable > 0) {
    lines.push(`(${list.unreadable} processes could not be read: run as root to see every process)`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return EXIT_OK;
}
