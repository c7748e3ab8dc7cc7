// pagefuse set KEY=VALUE… [--unmerge-first]: write KSM knobs, all or nothing.
import { Ksm, ksmOptionsFromEnv } from '../ksm/ksm.js';
import { InvalidSettingError, TUNABLE_NAMES, parseSetting, type KsmSettingsInput } from '../ksm/knobs.js';
import { KnobGuard, recoverKnobs } from '../ksm/snapshot.js';
import { EXIT_OK, UsageError, parse, durationFlag } from './common.js';

const HELP = `usage: pagefuse set KEY=VALUE… [--unmerge-first] [--timeout S]

Writes KSM knobs (/sys/kernel/mm/ksm, as root) with the kernel's names, e.g.
  pagefuse set pages_to_scan=2000 sleep_millisecs=10
Every value is checked before anything is written; if the kernel refuses one, the knobs already written
are put back. merge_across_nodes and max_page_sharing can only change while no page is shared:
--unmerge-first unmerges everything (run=2), writes, and puts run back; run is recorded first, so if
set dies in between, the next set or tune (or 'pagefuse tune --restore') puts it back. Knobs a tuner
that died had found are put back before anything is written (said on stderr).

knobs: ${TUNABLE_NAMES.join(', ')}

  --unmerge-first   allow merge_across_nodes / max_page_sharing changes while pages are shared
  --timeout S       how long to wait for the unmerge (default 60s; 500ms, 2m… accepted)
`;

/** KEY=VALUE words → settings, refusing anything malformed as a usage error (exit 2, nothing written). */
export function parseAssignments(words: string[]): KsmSettingsInput {
  if (words.length === 0) throw new UsageError("pagefuse set: give at least one KEY=VALUE (see 'pagefuse set --help')");
  const settings: Record<string, unknown> = {};
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq <= 0) throw new UsageError(`pagefuse set: expected KEY=VALUE, got '${word}'`);
    const key = word.slice(0, eq);
    if (Object.hasOwn(settings, key)) throw new UsageError(`pagefuse set: ${key} is given twice`);
    try {
      settings[key] = parseSetting(key, word.slice(eq + 1));
    } catch (err) {
      if (err instanceof InvalidSettingError) throw new UsageError(`pagefuse set: ${err.message}`);
      throw err;
    }
  }
  return settings as KsmSettingsInput;
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse('set', args, {
    options: {
      'unmerge-first': { type: 'boolean' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return EXIT_OK;
  }
  const settings = parseAssignments(positionals);
  const timeoutS = durationFlag('set', 'timeout', values.timeout, { min: 0, max: 86_400 });
  const timeoutMs = timeoutS === undefined ? undefined : timeoutS * 1000;
  const ksm = new Ksm(ksmOptionsFromEnv());
  const unmergeFirst = values['unmerge-first'] === true;
  if (timeoutS !== undefined && !unmergeFirst) throw new UsageError('pagefuse set: --timeout is how long --unmerge-first waits for the unmerge: give both, or neither');
  // A dead writer's record first: otherwise a later start would put its knobs back over these.
  const recovered = unmergeFirst ? [] : recoverKnobs({ sysfsRoot: ksm.sysfsRoot });
  // The run switch of --unmerge-first is recorded before run=2 is written.
  const guard = unmergeFirst ? KnobGuard.begin('set', { sysfsRoot: ksm.sysfsRoot, only: ['run'] }) : undefined;
  for (const r of [...recovered, ...(guard?.recovered ?? [])]) {
    const knobs = r.written.map(([k, v]) => `${k}=${v}`).join(' ');
    process.stderr.write(`pagefuse set: first put back the knobs a ${r.owner} that died (pid ${r.pid}) had found: ${knobs}\n`);
  }
  let after;
  try {
    after = await ksm.configure(settings, {
      unmergeFirst,
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
    });
  } catch (err) {
    // Checks that need the running kernel (a knob it lacks, the advisor rule) are usage errors too.
    if (err instanceof InvalidSettingError) throw new UsageError(`pagefuse set: ${err.message}`);
    throw err;
  } finally {
    // configure() put run back itself, on success and on failure.
    guard?.release();
  }
  const shown = Object.keys(settings).map((k) => `${k}=${after[k]}`);
  process.stdout.write(`${shown.join(' ')}\n`);
  return EXIT_OK;
}
