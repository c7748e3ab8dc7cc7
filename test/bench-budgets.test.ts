import { test } from 'node:test';
import assert from 'node:assert/strict';
import { budgetChecks, referenceRow, referenceSlots, type TunerRow } from '../src/bench/tuner.js';

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

test('three reference runs go first, before the first adaptive row and last', () => {
  // Other rows: kernel defaults, ksmtuned, kernel-advisor, adaptive 0.1, 0.25, 1.
  assert.deepEqual(referenceSlots(6, 3, 3), [0, 3, 6]);
});

test('with the adaptive rows alone, the middle reference run goes halfway through them', () => {
  assert.deepEqual(referenceSlots(3, 0, 3), [0, 2, 3]);
});

test('one reference run goes first, two first and last', () => {
  assert.deepEqual([referenceSlots(6, 3, 1), referenceSlots(6, 3, 2)], [[0], [0, 6]]);
});
