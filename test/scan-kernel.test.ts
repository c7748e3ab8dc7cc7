// The estimate against the kernel: what scan() predicts before ksmd runs, and what ksmd reaches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { processKsm, scan } from '../src/index.js';
import { Workload } from '../src/workload/workload.js';
import { withKsm } from './helpers/ksm.js';

async function merged(pids: number[]): Promise<{ merging: number; zero: number }> {
  const stats = await Promise.all(pids.map((pid) => processKsm(pid)));
  return {
    merging: stats.reduce((a, s) => a + s.mergingPages, 0),
    zero: stats.reduce((a, s) => a + s.zeroPages, 0),
  };
}

for (const useZeroPages of [0, 1] as const) {
  test(`predicted merged pages agree with ksmd after convergence within 3 % (use_zero_pages=${useZeroPages})`, async (t) => {
    await withKsm(
      t,
      async (ksm) => {
        const w = await Workload.start({
          processes: 4,
          imagePages: 4096,
          zeroPages: 512,
          uniquePages: 1024,
          volatilePages: 128,
          rewriteIntervalMs: 10,
          seed: 31 + useZeroPages,
        });
        try {
          const targets = w.pids.map((pid) => ({ pid }));
          const first = await scan(targets);
          await sleep(100);
          const r = await scan(targets, { previous: first });
          assert.equal(r.useZeroPages, useZeroPages === 1, 'the live knob is read');
          assert.equal(r.volatilePages, w.expected.volatilePages, 'rewritten pages are seen as volatile');
          assert.equal(r.duplicatePages, w.expected.duplicatePages);
          const predicted = r.mergingPages + r.zeroMergedPages;

          await ksm.start();
          // Converged: two full scans in a row that change nothing.
          let last = -1;
          let now = 0;
          for (let i = 0; i < 30; i++) {
            await ksm.waitForFullScans(1, { timeoutMs: 30_000 });
            const m = await merged(w.pids);
            now = m.merging + m.zero;
            if (now === last && now > 0) break;
            last = now;
          }
          const error = Math.abs(predicted - now) / now;
          t.diagnostic(`predicted ${predicted} pages, ksmd merged ${now} (error ${(error * 100).toFixed(2)} %)`);
          assert.ok(error <= 0.03, `predicted ${predicted}, ksmd ${now}`);
        } finally {
          await w.stop();
        }
      },
      { settings: { use_zero_pages: useZeroPages } },
    );
  });
}
