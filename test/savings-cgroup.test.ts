// The savings model against the ground truth (docs/savings.md): processes using transparent huge pages
// (a shared image, pages of their own and zero-filled subpages) in a memory cgroup of their own, merged
// by ksmd until nothing more changes. What pagefuse reports as saved, and what the scan predicted before
// merging, must match the fall in the cgroup's usage.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { Workload } from '../src/workload/workload.js';
import { makeMemoryCgroup } from '../src/workload/cgroup.js';
import { scan } from '../src/scan/scan.js';
import { figures, type Figures } from '../src/report/model.js';
import { HostSource } from '../src/report/source.js';
import { withKsm } from './helpers/ksm.js';
import type { Ksm } from '../src/index.js';

/** Waits until ksmd has nothing left to do here: the cgroup and the saved figure hold still over two scans. */
async function converge(ksm: Ksm, read: () => Promise<Figures>, usage: () => number): Promise<Figures> {
  const deadline = Date.now() + 40_000;
  let last = { usage: usage(), saved: (await read()).host.savedPages };
  for (;;) {
    await ksm.waitForFullScans(3, { timeoutMs: 20_000 });
    const f = await read();
    const now = { usage: usage(), saved: f.host.savedPages };
    if (now.saved === last.saved && Math.abs(now.usage - last.usage) < 64 * 1024) return f;
    if (Date.now() > deadline) throw new Error(`ksmd did not settle in 40 s (saved ${last.saved} → ${now.saved} pages)`);
    last = now;
  }
}

const MiB = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;

test('THP workload in a memory cgroup: saved figure, per-VM shares and the scan prediction match the cgroup fall', async (t) => {
  await withKsm(
    t,
    async (ksm) => {
      const cg = makeMemoryCgroup(`pagefuse-savings-${process.pid}`);
      let w: Workload | undefined;
      try {
        // Per process: 3000 image pages (shared by all), 1500 zero pages, 1500 pages of its own, in
        // MADV_HUGEPAGE memory: ksmd splits the huge pages holding image subpages in its first scans, and
        // those holding only zero subpages and own pages one per full scan (use_zero_pages=0: the scan
        // keeps them apart as thpSlowSplit*, docs/savings.md). smart_scan=0 (below) has ksmd retry them
        // every scan, so converge() waits until the last of them has split.
        w = await Workload.start({ processes: 3, imagePages: 3000, zeroPages: 1500, uniquePages: 1500, hugepages: 'always', cgroup: cg.dir, seed: 31 });
        const pids = new Set(w.pids);
        const source = new HostSource({ nodes: async () => undefined, tunerStatePath: '/nonexistent', footprintMaxAgeMs: 0 });
        const read = async (): Promise<Figures> => figures(await source.read());
        await new Promise((r) => setTimeout(r, 500)); // the children's start-up allocations settle
        const predicted = await scan(w.pids.map((pid) => ({ pid })));
        const pssOf = (g: Figures): number => g.processes.filter((p) => pids.has(p.pid)).reduce((a, p) => a + (p.pssBytes ?? 0), 0);
        const pssBefore = pssOf(await read());
        const before = cg.usage();
        const scans0 = Number(await ksm.get('full_scans'));
        await ksm.start();
        const f = await converge(ksm, read, cg.usage);
        const fall = before - cg.usage();
        const scans = Number(await ksm.get('full_scans')) - scans0;
        const ours = f.processes.filter((p) => pids.has(p.pid));
        const reported = ours.reduce((a, p) => a + p.savedBytes, 0);
        const pssFall = pssBefore - pssOf(f);
        const eventual = predicted.estimatedSavedBytes + predicted.thpSlowSplitZeroPages * 4096;
        t.diagnostic(
          `cgroup fall ${MiB(fall)}; saved ${MiB(reported)} = KSM pages ${MiB(f.host.saved.ksmPages * 4096)} + KSM zero ${MiB(f.host.saved.ksmZeroPages * 4096)}` +
            ` + THP-split zero ${MiB(f.host.saved.thpSplitZeroPages * 4096)}; metadata ${MiB(f.host.metadataBytes)}; general_profit ${MiB(f.host.kernelProfitBytes)};` +
            ` predicted ${MiB(predicted.estimatedSavedBytes)} (${predicted.estimate.ksmPages} + ${predicted.estimate.ksmZeroPages} + ${predicted.estimate.thpSplitZeroPages} pages, ${predicted.thpSplitPages} huge pages split)` +
            ` + ${predicted.thpSlowSplitZeroPages} pages of ${predicted.thpSlowSplitPages} huge pages split one a scan = ${MiB(eventual)}; summed PSS fell ${MiB(pssFall)};` +
            ` ${scans} full scans`,
        );
        assert.ok(fall > 40 * 2 ** 20, `the cgroup fell by only ${MiB(fall)}`);
        assert.ok(f.host.saved.thpSplitZeroPages > 0, 'the THP-split part is measured');
        assert.ok(predicted.thpSlowSplitPages > 0, 'the layout holds huge pages of only zero subpages and own pages');

        await t.test('the reported saved figure is within 1 % of the fall in the cgroup usage', () => {
          assert.ok(Math.abs(reported - fall) <= 0.01 * fall, `reported ${MiB(reported)}, cgroup fell ${MiB(fall)}`);
        });
        await t.test('the per-VM shares sum exactly to the host figure', () => {
          assert.equal(f.sharesNote, null);
          assert.equal(
            f.processes.reduce((a, p) => a + p.savedBytes, 0),
            f.host.savedBytes,
          );
        });
        await t.test('ksmd took a full scan or more per huge page of only zero subpages and own pages', () => {
          // What keeps those huge pages out of the estimate (docs/savings.md, "The prediction"): were they
          // split together, convergence would take a few scans whatever their number.
          assert.ok(scans >= predicted.thpSlowSplitPages, `${scans} full scans for ${predicted.thpSlowSplitPages} such huge pages`);
        });
        await t.test('the scan made before merging, with the huge pages ksmd splits one a scan, predicts the fall within 1 %', () => {
          assert.ok(Math.abs(eventual - fall) <= 0.01 * fall, `predicted ${MiB(eventual)}, cgroup fell ${MiB(fall)}`);
        });
      } finally {
        await w?.stop();
        await cg.remove();
      }
    },
    { settings: existsSync('/sys/kernel/mm/ksm/smart_scan') ? { smart_scan: 0 } : {} },
  );
});
