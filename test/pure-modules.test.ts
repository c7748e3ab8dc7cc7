// The counters and profit math, the savings model, the sysfs Ksm class and the tune policies never load
// the native addon: a child process in which every dlopen(3) fails imports and runs them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { PAGE_SIZE as hostPageSize } from '../src/host/page-size.js';
import { native } from '../src/native.js';

const root = fileURLToPath(new URL('..', import.meta.url));
/** Preloaded in the child: any .node file it tries to load fails, as on a host without the binary. */
const BLOCK_DLOPEN = `data:text/javascript,process.dlopen = () => { throw new Error('dlopen blocked by the test'); };`;

function runWithoutAddon(script: string): unknown {
  const out = execFileSync(process.execPath, ['--import', BLOCK_DLOPEN, '--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: root,
    encoding: 'utf8',
  });
  return JSON.parse(out);
}

test('the savings model computes host savings without the addon', () => {
  const script = `import { hostSavings } from './src/report/model.ts';
const counters = { pages_shared: 10, pages_sharing: 30, pages_unshared: 5, pages_volatile: 5, full_scans: 3, ksm_zero_pages: 2 };
process.stdout.write(JSON.stringify(hostSavings(counters, 4096)));`;
  // rmap items ≈ 10 + 30 + 5 + 5 = 50; profit = (30 + 2) × 4096 − 50 × 64.
  // Metadata: the rmap items and 10 stable nodes of 64 B.
  assert.deepEqual(runWithoutAddon(script), {
    saved: { ksmPages: 30, ksmZeroPages: 2, thpSplitZeroPages: 0 },
    savedPages: 32,
    exitedPages: 0,
    savedBytes: 32 * 4096,
    thpSplitKnown: false,
    thpSplitUpperBound: false,
    metadataBytes: 50 * 64 + 10 * 64,
    netBytes: 32 * 4096 - 60 * 64,
    kernelProfitBytes: 32 * 4096 - 50 * 64,
    sharingRatio: 3,
    profitSource: 'computed',
  });
});

test('the Ksm class reads a sysfs tree without the addon', () => {
  const script = `import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { Ksm } from './src/ksm/ksm.ts';
const dir = mkdtempSync(join(tmpdir(), 'pf-pure-'));
for (const [k, v] of Object.entries({ run: 1, pages_to_scan: 100, sleep_millisecs: 20, pages_shared: 2, pages_sharing: 6 })) writeFileSync(join(dir, k), v + '\\n');
const state = await new Ksm({ sysfsRoot: dir }).read();
process.stdout.write(JSON.stringify(state));`;
  assert.deepEqual(runWithoutAddon(script), {
    settings: { pages_to_scan: 100, run: 1, sleep_millisecs: 20 },
    counters: { pages_shared: 2, pages_sharing: 6 },
    profitBytes: 6 * hostPageSize - 8 * 64,
  });
});

test('the three tune policies decide without the addon', () => {
  const script = `import { ksmtuned, initialKsmtunedState } from './src/tune/policies/ksmtuned.ts';
import { adaptive, initialAdaptiveState } from './src/tune/policies/adaptive.ts';
import { kernelAdvisor } from './src/tune/policies/kernel-advisor.ts';
import { defaultConfig } from './src/tune/config.ts';
const GiB = 2 ** 30;
const o = {
  time: 0, pressure: null, vms: [], estimate: null, cpus: 2, pageSize: 4096, ksmdCpuSeconds: 0,
  memory: { memTotal: 16 * GiB, memFree: 8 * GiB, memAvailable: 12 * GiB, buffers: 0, cached: 0, swapTotal: 0, swapFree: 0 },
  knobs: { run: 0, pages_to_scan: 100, sleep_millisecs: 20, advisor_mode: 'none' },
  counters: { pages_shared: 0, pages_sharing: 0, pages_unshared: 0, pages_volatile: 0, full_scans: 0 },
};
const c = defaultConfig();
const a = { cpuBudget: 0.25, minSavingsBytes: c.minSavingsBytes, availablePercent: c.availablePercent, pressureAvg10: c.pressureAvg10 };
const decisions = [
  ksmtuned(o, initialKsmtunedState(), c.ksmtuned).decision,
  adaptive(o, initialAdaptiveState(), a).decision,
  kernelAdvisor(o, initialAdaptiveState(), a).decision,
];
process.stdout.write(JSON.stringify(decisions));`;
  // No VM and 12 of 16 GiB available: each policy keeps ksmd stopped.
  const stop = { knobs: { run: 0 }, rescan: [] };
  assert.deepEqual(runWithoutAddon(script), [stop, stop, stop]);
});

test('importing the package loads no addon; the first Region does, with an error that says what to do', () => {
  const script = `const pf = await import('./src/index.ts');
let error = '';
try { pf.Region.alloc(4096); } catch (err) { error = err.message.split('\\n')[0]; }
process.stdout.write(JSON.stringify({ pageSize: pf.PAGE_SIZE, error }));`;
  const r = runWithoutAddon(script) as { pageSize: number; error: string };
  assert.equal(r.pageSize, hostPageSize);
  // One line: the path tried and why it failed, then what to do.
  assert.match(r.error, /^pagefuse: the native addon could not be loaded \(tried \/\S+\.node: dlopen blocked by the test\); /);
  assert.match(r.error, /build it from source: install g\+\+, make and python3, then 'npm install xxhash-addon@2\.1\.0 --ignore-scripts' .* and 'npm rebuild pagefuse', or in a checkout 'npm install'$/);
});

test("the page size read from the auxiliary vector is the addon's sysconf(_SC_PAGESIZE)", () => {
  assert.equal(hostPageSize, native.pageSize);
});
