import { test } from 'node:test';
import assert from 'node:assert/strict';
import { referenceLine } from '../src/bench/bench.js';
import { bracketingReference, budgetChecks, referenceRow, referenceSlots, type TunerRow } from '../src/bench/tuner.js';

const row = (policy: string, budget: number | null, o: Partial<TunerRow>): TunerRow => ({
  policy,
  budget,
  seconds_to_95: 2,
  ksmd_cpu_seconds: 1,
  ksmd_cpu_average: 0.5,
  ksmd_started_seconds: 0,
  ksmd_run_cpu_average: 0.5,
  ksmd_wait_seconds: 0,
  merging_pages: 95,
  predicted_merging_pages: 100,
  saved_bytes: 0,
  saved_parts_pages: { ksmPages: 0, ksmZeroPages: 0, thpSplitZeroPages: 0 },
  achievable_bytes: 0,
  ...o,
});

test("budget checks judge ksmd's average CPU from the tuner's first run=1, and give the one from its start beside it", () => {
  // Unthrottled: 1.5 CPU-s in 1.5 s. At budget 1 the tuner scanned for 0.2 s, then ksmd ran 1.6 CPU-s in 1.7 s.
  const rows = [
    row('unthrottled ksmd (20000 pages / 0 ms)', null, { seconds_to_95: 1.5, ksmd_cpu_seconds: 1.5, ksmd_cpu_average: 1, ksmd_run_cpu_average: 1 }),
    row('adaptive (1 CPU)', 1, { seconds_to_95: 1.9, ksmd_cpu_seconds: 1.6, ksmd_cpu_average: 0.842, ksmd_started_seconds: 0.2, ksmd_run_cpu_average: 0.941 }),
  ];
  assert.deepEqual(budgetChecks(rows), [
    {
      policy: 'adaptive (1 CPU)',
      budget: 1,
      budget_error_percent: -5.9,
      budget_error_percent_from_start: -15.8,
      reference: { seconds_to_95: 1.5, ksmd_cpu_seconds: 1.5 },
      bound_seconds: 1.8,
      within_budget: true,
      within_bound: false,
      vs_unthrottled: 1.27,
      cpu_vs_unthrottled: 1.07,
    },
  ]);
});

test('the unthrottled reference shown and judged against is the run of median ksmd CPU-seconds', () => {
  const runs = [1.73, 1.26, 1.59].map((cpu) => row('unthrottled ksmd (20000 pages / 0 ms)', null, { ksmd_cpu_seconds: cpu }));
  assert.equal(referenceRow(runs).ksmd_cpu_seconds, 1.59);
});

test('of an even number of reference runs the lower middle is kept: the stricter time bound', () => {
  const runs = [1.73, 1.26].map((cpu) => row('unthrottled ksmd (20000 pages / 0 ms)', null, { ksmd_cpu_seconds: cpu }));
  assert.equal(referenceRow(runs).ksmd_cpu_seconds, 1.26);
});

test('bracketing reference runs go first, right before each adaptive row and after the last row', () => {
  // Other rows: kernel defaults, ksmtuned, kernel-advisor, adaptive 0.1, 0.25, 1.
  assert.deepEqual(referenceSlots(6, [3, 4, 5], true), [0, 3, 4, 5, 6]);
});

test('with the adaptive rows alone, the first reference run is also the one before the first of them', () => {
  assert.deepEqual(referenceSlots(3, [0, 1, 2], true), [0, 1, 2, 3]);
});

test('without bracketing (--quick) the reference runs once, first', () => {
  assert.deepEqual(referenceSlots(6, [3, 4, 5], false), [0]);
});

test('a row is held to the mean of the reference runs just before and just after it', () => {
  const runs = [
    { slot: 0, ksmd_cpu_seconds: 1.5, seconds_to_95: 1.51 },
    { slot: 5, ksmd_cpu_seconds: 1.6, seconds_to_95: 1.62 },
    { slot: 6, ksmd_cpu_seconds: 2.3, seconds_to_95: 2.32 },
  ];
  assert.deepEqual(bracketingReference(runs, 5), { ksmd_cpu_seconds: 1.95, seconds_to_95: 1.97 });
});

test("the time to 95 % of a bracketing pair is unknown when either run did not reach it", () => {
  const runs = [
    { slot: 0, ksmd_cpu_seconds: 1.5, seconds_to_95: null },
    { slot: 1, ksmd_cpu_seconds: 1.7, seconds_to_95: 1.7 },
  ];
  assert.deepEqual(bracketingReference(runs, 0), { ksmd_cpu_seconds: 1.6, seconds_to_95: null });
});

test('a budget check takes its bound from the reference given for its row, not the median run', () => {
  // The median run took 1.5 CPU-s; the runs beside the 1 CPU row took 2.0 on average: ksmd was slower then.
  const rows = [
    row('unthrottled ksmd (20000 pages / 0 ms)', null, { seconds_to_95: 1.5, ksmd_cpu_seconds: 1.5 }),
    row('adaptive (1 CPU)', 1, { seconds_to_95: 2.3, ksmd_cpu_seconds: 2.0, ksmd_run_cpu_average: 0.97 }),
  ];
  const [check] = budgetChecks(rows, new Map([['adaptive (1 CPU)', { seconds_to_95: 2.0, ksmd_cpu_seconds: 2.0 }]]));
  assert.deepEqual(
    [check?.bound_seconds, check?.within_bound, check?.vs_unthrottled, check?.cpu_vs_unthrottled],
    [2.4, true, 1.15, 1],
  );
});

test('the reference line names where each run of the reference ran', () => {
  const rows = [
    row('unthrottled ksmd (20000 pages / 0 ms)', null, {}),
    row('kernel defaults (100 pages / 20 ms)', null, {}),
    row('adaptive (1 CPU, min 64 MiB)', 1, {}),
  ];
  const unthrottled_runs = [
    { slot: 0, ksmd_cpu_seconds: 1.5, seconds_to_95: 1.51 },
    { slot: 1, ksmd_cpu_seconds: 1.6, seconds_to_95: null },
    { slot: 2, ksmd_cpu_seconds: 2.3, seconds_to_95: 2.32 },
  ];
  assert.equal(
    referenceLine({ workload: '', unthrottled_runs, load_average: [0, 0], rows, budgets: [] }),
    'Unthrottled reference, 3 runs: first: 1.5 CPU-s (95 % in 1.51 s), before adaptive 1: 1.6 CPU-s (not at 95 %), last: 2.3 CPU-s (95 % in 2.32 s). ' +
      'The row above is the run of median CPU; each adaptive row is held to the mean of the runs just before and after it',
  );
});
