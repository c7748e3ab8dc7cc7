// End to end on real QEMU guests (test/guest/guest.c booted under TCG): VM discovery names them, scan()
// predicts what ksmd will merge before it runs, ksmd reaches that, and the CLI reports it. Booting the
// guests is the cost, so each run boots them once and checks one behaviour per step (a subtest each).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { discoverVms, processKsm, scan, type ScanResult } from '../src/index.js';
import { builtBin, runCliAsync, type CliResult } from './helpers/cli.js';
import { withKsm } from './helpers/ksm.js';
import { qemuSkipReason, startQemuGuests } from './helpers/qemu-guest.js';

const MiB = 1024 * 1024;
const MEM_MIB = 64;
const COMMON = 8192; // 32 MiB common image
const UNIQUE = 2048;
const ZERO = 1024;
const NAMES = ['vm-a', 'vm-b', 'vm-c'];
// Besides what the guest writes, every guest holds the same firmware (SeaBIOS, its tables, option
// ROMs): a few dozen more pages each that are identical across guests.
const FIRMWARE_SLACK = 256;

const bin = builtBin();
const cli = (...args: string[]): Promise<CliResult> => runCliAsync(args, { bin });

async function merged(pids: number[]): Promise<{ merging: number; zero: number }> {
  const stats = await Promise.all(pids.map((pid) => processKsm(pid)));
  return { merging: stats.reduce((a, s) => a + s.mergingPages, 0), zero: stats.reduce((a, s) => a + s.zeroPages, 0) };
}

function requireQemu(t: { skip(reason: string): void }): boolean {
  const reason = qemuSkipReason();
  if (reason === undefined) return true;
  // .ci/run installs QEMU: in CI a missing one is a failure, not a skip.
  if (process.env.CI) throw new Error(`real-guest test cannot run in CI: ${reason}`);
  t.skip(reason);
  return false;
}

for (const useZeroPages of [0, 1] as const) {
  test(`three real QEMU guests, use_zero_pages=${useZeroPages}`, async (t) => {
    if (!requireQemu(t)) return;
    const asked = Date.now();
    await withKsm(
      t,
      async (ksm) => {
        const started = Date.now();
        t.diagnostic(`KSM lock held after ${started - asked} ms`);
        const g = await startQemuGuests({ names: NAMES, memMiB: MEM_MIB, commonPages: COMMON, uniquePages: UNIQUE, zeroPages: ZERO });
        try {
          t.diagnostic(`${NAMES.length} guests filled in ${Date.now() - started} ms: ${g.filled.join(' | ')}`);
          for (const [i, line] of g.filled.entries()) {
            assert.equal(line, `filled common=${COMMON} unique=${UNIQUE} zero=${ZERO} seed=${i + 1}`);
          }

          await t.test('discovery names each QEMU by its -name guest=… with the memory -m gave it', async () => {
            const vms = await discoverVms();
            const ours = g.pids.map((pid) => vms.find((v) => v.pid === pid));
            assert.deepEqual(
              ours.map((v) => v && [v.vmm, v.name, v.memoryBytes]),
              NAMES.map((name) => ['qemu', name, MEM_MIB * MiB]),
            );
            for (const v of ours) assert.ok(v!.rssBytes >= (COMMON + UNIQUE + ZERO) * 4096, `${v!.name}: guest RAM is resident`);
          });

          // The estimate, before ksmd runs (withKsm left it stopped with everything unmerged).
          const targets = g.pids.map((pid) => ({ pid }));
          let r: ScanResult | undefined;
          await t.test('scan() of the guests before ksmd runs sees every written page, the zero pages and the common image between every pair', async () => {
            const first = await scan(targets);
            await sleep(200);
            r = await scan(targets, { previous: first });
            assert.equal(r.useZeroPages, useZeroPages === 1, 'the live knob is read');
            assert.equal(r.volatilePages, 0, 'halted guests keep their memory');
            for (const [i, target] of r.targets.entries()) {
              assert.ok(target.uniquePages >= COMMON + UNIQUE, `${NAMES[i]}: every written page is scanned (${target.uniquePages} contents)`);
              assert.ok(target.zeroPages >= ZERO, `${NAMES[i]}: the zero pages are seen (${target.zeroPages})`);
              assert.ok(target.mergingPages >= COMMON && target.mergingPages < COMMON + FIRMWARE_SLACK, `${NAMES[i]}: ${target.mergingPages} merging pages predicted`);
              for (const [j, shared] of r.sharing[i].entries()) {
                if (i === j) continue;
                // The common image between every pair, plus the firmware they all carry.
                assert.ok(shared >= COMMON && shared < COMMON + FIRMWARE_SLACK, `sharing[${i}][${j}] = ${shared}`);
              }
            }
          });
          if (r === undefined) return;
          const estimate = r;
          const predicted = estimate.mergingPages + estimate.zeroMergedPages;
          t.diagnostic(
            `scan: ${estimate.pages} pages, ${estimate.zeroPages} zero (${estimate.targets.reduce((a, x) => a + x.thpZeroPages, 0)} inside THPs, left out), ` +
              `predicted merging ${estimate.mergingPages} + zero ${estimate.zeroMergedPages} = ${predicted}; sharing ${JSON.stringify(estimate.sharing)}`,
          );

          if (useZeroPages === 0) {
            await t.test('pagefuse scan --vms finds the guests by name with the same prediction', async () => {
              const vmScan = await cli('scan', '--vms', '--json');
              assert.equal(vmScan.status, 0, vmScan.stderr);
              const out = JSON.parse(vmScan.stdout) as { targets: { pid: number; name: string; merging_pages: number; ksm_merging_pages: number }[] };
              for (const [i, pid] of g.pids.entries()) {
                const target = out.targets.find((x) => x.pid === pid);
                assert.ok(target !== undefined, `scan --vms finds QEMU ${pid}`);
                assert.equal(target.name, NAMES[i], 'named by -name guest=…');
                assert.equal(target.merging_pages, estimate.targets[i].mergingPages);
                assert.equal(target.ksm_merging_pages, 0, 'ksmd has not run yet');
              }
            });
          }

          // ksmd, driven fast, until three full scans in a row change nothing (a page merges on its
          // third pass at the earliest: checksum, unstable tree, merge; smart_scan retries some later).
          await ksm.start();
          let last = -1;
          let now = { merging: 0, zero: 0 };
          for (let i = 0; i < 30; i++) {
            await ksm.waitForFullScans(3, { timeoutMs: 30_000 });
            now = await merged(g.pids);
            if (now.merging + now.zero === last && last > 0) break;
            last = now.merging + now.zero;
          }
          const kernel = now.merging + now.zero;
          const error = Math.abs(predicted - kernel) / kernel;
          t.diagnostic(
            `ksmd: merging ${now.merging} + zero ${now.zero} = ${kernel}; predicted ${predicted} (error ${(error * 100).toFixed(3)} %)`,
          );
          await t.test('ksmd merges what scan() predicted, within 3 %', () => {
            assert.ok(error <= 0.03, `predicted ${predicted}, ksmd ${kernel}`);
          });
          await t.test('every copy of the common image maps a KSM page', () => {
            // At least guests × common (pages_sharing gains (guests − 1) × common of them).
            assert.ok(now.merging >= NAMES.length * COMMON, `merging ${now.merging} ≥ ${NAMES.length} × ${COMMON}`);
          });
          await t.test('a scan of the merged guests unmerges nothing and still predicts what ksmd holds, within 3 %', async () => {
            // Shared pages are read through /proc/<pid>/mem, without a pin.
            const again = await scan(targets);
            const untouched = await merged(g.pids);
            assert.deepEqual(untouched, now, 'a scan of merged memory unmerges nothing');
            const predictedAgain = again.mergingPages + again.zeroMergedPages;
            t.diagnostic(
              `scan of the merged guests: predicted ${predictedAgain}, ksmd holds ${untouched.merging + untouched.zero}; ` +
                `read at ${(again.bytesPerSecond / 1e9).toFixed(2)} GB/s (unmerged: ${(estimate.bytesPerSecond / 1e9).toFixed(2)} GB/s)`,
            );
            assert.ok(Math.abs(predictedAgain - kernel) / kernel <= 0.03, `after merging: predicted ${predictedAgain}, ksmd ${kernel}`);
          });
          await t.test('discovery shows each guest\'s merged pages', async () => {
            const after = await discoverVms();
            for (const pid of g.pids) {
              const vm = after.find((v) => v.pid === pid);
              assert.ok((vm?.ksm?.mergingPages ?? 0) >= COMMON, `discovery shows ${vm?.name}'s merged pages`);
            }
          });

          if (useZeroPages === 1) return;
          await t.test('pagefuse status lists the guests with the pages ksmd merged', async () => {
            const perPid = new Map(await Promise.all(g.pids.map(async (pid) => [pid, await processKsm(pid)] as const)));
            const status = await cli('status', '--json', '--top', '1000');
            assert.equal(status.status, 0, status.stderr);
            const listed = JSON.parse(status.stdout) as { processes: { pid: number; merging_pages: number }[] };
            for (const pid of g.pids) {
              const p = listed.processes.find((x) => x.pid === pid);
              assert.ok(p !== undefined, `status lists QEMU ${pid}: ${JSON.stringify(listed.processes.map((x) => [x.pid, x.merging_pages]))}`);
              assert.equal(p.merging_pages, perPid.get(pid)!.mergingPages, 'merging pages are ksm_stat\'s');
            }
          });
        } finally {
          await g.stop();
        }
      },
      { settings: { use_zero_pages: useZeroPages } },
    );
  });
}
