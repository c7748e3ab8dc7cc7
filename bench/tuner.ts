// The tuner section of the bench alone (src/bench/tuner.ts): the policies side by side on one generated
// workload, the unthrottled reference row first, each adaptive budget held to its targets. Holds the
// machine-wide KSM lock throughout; every knob is put back (src/ksm/snapshot.ts, through holdKnobs).
//   node --import tsx bench/tuner.ts [--quick] [--json] [--budgets 0.1,0.25,1] [--only unthrottled,adaptive] [--time-scale K] [--wait S] [--sched-other]
// --only keeps the rows whose label starts with one of the names; --time-scale K divides ksmtuned's 60 s
// monitor interval by K (ksmd itself is not scaled, so this favours ksmtuned; default 10 under --quick).
// --sched-other keeps the bench's threads SCHED_OTHER instead of SCHED_BATCH, the policy pagefuse tune runs
// under (src/host/scheduling.ts), to compare the two.
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { lockKsm } from '../src/host/ksm-lock.js';
import { benchTuner } from '../src/bench/tuner.js';
import { machineFigures, tunerTables } from '../src/bench/bench.js';
import { ksmUnavailable } from '../src/bench/estimate.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    json: { type: 'boolean' },
    budgets: { type: 'string' },
    only: { type: 'string' },
    'time-scale': { type: 'string' },
    wait: { type: 'string' },
    'sched-other': { type: 'boolean' },
  },
});
const list = (s: string | undefined) => (s === undefined ? undefined : s.split(',').map((x) => x.trim()).filter((x) => x !== ''));
const budgets = list(values.budgets)?.map(Number);
if (budgets?.some((b) => !(b > 0))) throw new Error(`--budgets takes CPU shares above 0, got ${values.budgets}`);
const timeScale = values['time-scale'] === undefined ? undefined : Number(values['time-scale']);
if (timeScale !== undefined && !(timeScale >= 1)) throw new Error(`--time-scale must be at least 1, got ${values['time-scale']}`);

// Under the lock (a test that starts a tuner holds it), then checked; another tuner running outside the
// lock is waited for, the lock released meanwhile, for up to --wait seconds.
const waitUntil = Date.now() + Number(values.wait ?? 0) * 1000;
let release = await lockKsm();
for (;;) {
  const unavailable = await ksmUnavailable();
  if (unavailable === undefined) break;
  release();
  if (Date.now() >= waitUntil) {
    process.stderr.write(`bench/tuner.ts: ${unavailable}\n`);
    process.exit(1);
  }
  await sleep(5000);
  release = await lockKsm();
}
try {
  const machine = await machineFigures();
  const only = list(values.only);
  const result = await benchTuner({
    quick: values.quick === true,
    log: (line) => process.stderr.write(`${line}\n`),
    ...(budgets === undefined ? {} : { budgets }),
    ...(only === undefined ? {} : { only }),
    ...(timeScale === undefined ? {} : { timeScale }),
    ...(values['sched-other'] === true ? { batch: false } : {}),
  });
  if (values.json) process.stdout.write(`${JSON.stringify({ machine, ...result }, null, 2)}\n`);
  else {
    process.stdout.write(`${machine.cpus} × ${machine.cpu} (${machine.cpu_flags.join(' ')}), Linux ${machine.kernel}\n${result.workload}; load average ${result.load_average[0]} before, ${result.load_average[1]} after\n`);
    process.stdout.write(`${tunerTables(result, '').join('\n')}\n`);
  }
} finally {
  release();
}
