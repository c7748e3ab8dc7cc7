// pagefuse audit and tenant isolation, for real where this machine can show it: merged guest-like
// processes (exposure), two tenants, a stray merge-any process, a running ksmtuned; several NUMA nodes
// through the fake sysfs tree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnMerged, processKsm, Registry, Region, canAdmit, PAGE_SIZE, Tuner, type OvercommitRisk } from '../src/index.js';
import { collectAuditSnapshot } from '../src/safety/collect.js';
import { withKsm, mergeAndWait } from './helpers/ksm.js';
import { runCli } from './helpers/cli.js';
import { readyPid as ready, stopChildren as stop } from './helpers/children.js';

const FILL = fileURLToPath(new URL('./fixtures/fill-pages.mjs', import.meta.url));
const TWO_NODES = fileURLToPath(new URL('./fixtures/sysfs-2node', import.meta.url));
const PAGES = 512;

async function counters(): Promise<{ sharing: number; zero: number }> {
  const read = async (f: string) => Number((await readFile(`/sys/kernel/mm/ksm/${f}`, 'utf8')).trim());
  return { sharing: await read('pages_sharing'), zero: await read('ksm_zero_pages') };
}

type AuditJson = { findings: { id: string; severity: string; message: string }[]; exposure_bytes: number; margin_bytes: number; available_bytes: number; isolation: string };

test('audit on a real merged host: three merged processes in two tenants and one stray, and a ksmtuned', async (t) => {
  const stateDir = mkdtempSync(join(tmpdir(), 'pf-audit-'));
  const binDir = mkdtempSync(join(tmpdir(), 'pf-ksmtuned-'));
  const env = { PAGEFUSE_STATE_DIR: stateDir, PAGEFUSE_ISOLATION: 'host' };
  const registry = new Registry({ stateDir });
  const children: ChildProcess[] = [];
  try {
    await withKsm(t, async (ksm) => {
      const start = (tenant: string | undefined, byte: number) => {
        const c = spawnMerged(process.execPath, [FILL, String(PAGES), String(byte)], {
          stdio: ['pipe', 'pipe', 'inherit'],
          isolation: 'host',
          ...(tenant === undefined ? { registry: false as const } : { tenant, registry }),
        });
        children.push(c);
        return ready(c);
      };
      const acme = await start('acme', 7);
      const globex = await start('globex', 7);
      const stray = await start(undefined, 9);
      // ksmtuned is a shell script: its command name is the script's file name.
      const fake = join(binDir, 'ksmtuned');
      copyFileSync('/bin/sleep', fake);
      chmodSync(fake, 0o755);
      const ksmtuned = spawn(fake, ['600'], { stdio: 'ignore' });
      children.push(ksmtuned);

      await mergeAndWait(ksm);
      for (const pid of [acme, globex, stray]) {
        for (let i = 0; i < 100 && (await processKsm(pid)).mergingPages < PAGES; i++) await sleep(50);
        assert.ok((await processKsm(pid)).mergingPages >= PAGES, `pid ${pid} merged its ${PAGES} filled pages`);
      }
      await ksm.stop(); // merged pages stay merged; the counters hold still

      const before = await counters();
      const r = runCli(['audit', '--json', '--fail-on', 'warning'], { env });
      const after = await counters();
      const out = JSON.parse(r.stdout) as AuditJson;
      const byId = new Map(out.findings.map((f) => [f.id, f]));

      await t.test('--fail-on warning exits 3 and moves no KSM counter', () => {
        assert.equal(r.status, 3, r.stderr);
        assert.deepEqual(before, after);
      });
      await t.test("the exposure is the merged pages' bytes, the margin what is available beyond it", () => {
        assert.equal(out.exposure_bytes, (before.sharing + before.zero) * PAGE_SIZE);
        assert.ok(out.exposure_bytes >= 3 * (PAGES - 1) * PAGE_SIZE);
        assert.equal(out.margin_bytes, out.available_bytes - out.exposure_bytes);
        assert.equal(out.isolation, 'host');
        assert.equal(byId.get('unshare-exposure')?.severity, 'info', 'plenty of memory here');
      });
      await t.test('two tenants are a warning naming each with its pid', () => {
        assert.equal(byId.get('multiple-tenants')?.severity, 'warning');
        assert.match(byId.get('multiple-tenants')!.message, new RegExp(`acme: \\S+ \\(pid ${acme}\\); globex: \\S+ \\(pid ${globex}\\)`));
      });
      await t.test('the merge-any process outside the registry is named, the registered ones are not', () => {
        assert.match(byId.get('unregistered-merge-any')!.message, new RegExp(`: node \\(pid ${stray}\\)`));
        assert.doesNotMatch(byId.get('unregistered-merge-any')!.message, new RegExp(`pid (${acme}|${globex})\\b`));
      });
      await t.test('a running ksmtuned is named by its pid', () => {
        assert.match(byId.get('ksmtuned-running')!.message, new RegExp(`pid ${ksmtuned.pid}`));
      });
      await t.test('on one node there is no merge-across-nodes finding', () => {
        assert.equal(byId.has('merge-across-nodes'), false, 'one node here');
      });
      await t.test('--fail-on critical exits 0 when the worst finding is a warning', () => {
        assert.equal(runCli(['audit', '--fail-on', 'critical'], { env }).status, 0);
      });
      await t.test('seen as two NUMA nodes, merge_across_nodes=1 is flagged with the distances', () => {
        const numa = JSON.parse(runCli(['audit', '--json'], { env: { ...env, PAGEFUSE_SYS_ROOT: TWO_NODES } }).stdout) as AuditJson;
        assert.match(numa.findings.find((f) => f.id === 'merge-across-nodes')!.message, /2 memory nodes.*distance up to \d+/);
      });
      await t.test('under zero-only isolation, content merging and two tenants are critical', () => {
        const zero = runCli(['audit', '--json'], { env: { ...env, PAGEFUSE_ISOLATION: 'zero-only' } });
        assert.equal(zero.status, 3);
        const zeroFindings = (JSON.parse(zero.stdout) as AuditJson).findings;
        assert.match(zeroFindings.find((f) => f.id === 'zero-only-violated' && f.severity === 'critical')!.message, new RegExp(`processes are mergeable: .*\\(pid ${stray}\\)`));
        assert.equal(zeroFindings.find((f) => f.id === 'multiple-tenants')?.severity, 'critical');
      });
      await t.test('canAdmit on the live host admits exactly what fits beside the exposure', async () => {
        // The exposure is the merged guests' (ksmd is stopped, it holds still); MemAvailable moves with the
        // rest of the machine, so each answer is checked against its own reading.
        const GiB = 1024 ** 3;
        const fits = await canAdmit(0);
        assert.equal(fits.exposureBytes, (before.sharing + before.zero) * PAGE_SIZE);
        const edge = fits.availableBytes - fits.exposureBytes;
        for (const bytes of [edge - GiB, edge + GiB]) {
          const a = await canAdmit(bytes);
          assert.equal(a.exposureBytes, fits.exposureBytes);
          assert.equal(a.admit, bytes + a.exposureBytes <= a.availableBytes, a.reason);
          assert.equal(a.admit, bytes === edge - GiB);
        }
      });
      await t.test("the tuner's overcommit guard puts the exposure at risk under a 1 PiB threshold and not under 0, firing once on entering", async () => {
        // A threshold of what canAdmit read as available was flaky: MemAvailable of a busy machine rises by
        // more than the 6 MiB exposure between two readings.
        const exposure = (before.sharing + before.zero) * PAGE_SIZE;
        for (const [threshold, atRisk] of [[2 ** 50, true], [0, false]] as const) {
          const tuner = new Tuner({ policy: 'ksmtuned', dryRun: true, isolation: 'host', registry, riskMarginBytes: threshold });
          const events: OvercommitRisk[] = [];
          tuner.on('risk', (e) => events.push(e));
          try {
            await tuner.start();
            const d = await tuner.retune();
            assert.equal(d?.risk.exposureBytes, exposure, 'the exposure of the merged guests');
            assert.equal(d?.risk.atRisk, atRisk);
            assert.equal(d?.risk.marginBytes, d!.risk.availableBytes - d!.risk.exposureBytes);
            assert.deepEqual(events.map((e) => e.atRisk), atRisk ? [true] : [], 'risk fires on entering the zone only');
          } finally {
            await tuner.stop();
          }
        }
      });
      await t.test('a dry-run tuner changes no KSM counter', async () => {
        assert.deepEqual(await counters(), before, 'a dry-run tuner changes nothing');
      });
    });
  } finally {
    await stop(children);
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(binDir, { recursive: true, force: true });
  }
});

test('tenant isolation: one tenant merged, then exec and spawnMerged under each isolation mode', async (t) => {
  const stateDir = mkdtempSync(join(tmpdir(), 'pf-tenant-'));
  const registry = new Registry({ stateDir });
  const env = { PAGEFUSE_STATE_DIR: stateDir };
  const acme = spawnMerged(process.execPath, [FILL, '1', '1'], { stdio: ['pipe', 'pipe', 'inherit'], tenant: 'acme', isolation: 'tenant', registry });
  try {
    const pid = await ready(acme);
    await t.test('a merged child is registered with its tenant', () => {
      assert.deepEqual(registry.list().map((r) => [r.pid, r.tenant, r.merge, r.via]), [[pid, 'acme', true, 'spawn']]);
    });

    await t.test('a second tenant is refused under tenant isolation, by exec and by spawnMerged', () => {
      const refused = runCli(['exec', '--merge', '--tenant', 'globex', '--', 'true'], { env: { ...env, PAGEFUSE_ISOLATION: 'tenant' } });
      assert.equal(refused.status, 125);
      assert.equal(refused.stderr, `pagefuse exec: isolation is tenant: tenant 'acme' already has mergeable VMs (pid ${pid}); refusing to make tenant 'globex' mergeable on the same host (--force, or force: true in the API, overrides)\n`);
      assert.throws(() => spawnMerged('true', [], { tenant: 'globex', isolation: 'tenant', registry }), { code: 'ERR_ISOLATION' });
    });

    await t.test('the same tenant is allowed under tenant isolation', () => {
      assert.equal(runCli(['exec', '--merge', '--tenant', 'acme', '--', 'true'], { env: { ...env, PAGEFUSE_ISOLATION: 'tenant' } }).status, 0);
    });

    await t.test('--force allows a second tenant under tenant isolation', () => {
      assert.equal(runCli(['exec', '--merge', '--tenant', 'globex', '--force', '--', 'true'], { env: { ...env, PAGEFUSE_ISOLATION: 'tenant' } }).status, 0);
    });

    await t.test('a second tenant is allowed under host isolation', () => {
      assert.equal(runCli(['exec', '--merge', '--tenant', 'globex', '--', 'true'], { env: { ...env, PAGEFUSE_ISOLATION: 'host' } }).status, 0);
    });

    await t.test('without --merge no tenant rule applies', () => {
      assert.equal(runCli(['exec', '--tenant', 'globex', '--', 'true'], { env: { ...env, PAGEFUSE_ISOLATION: 'tenant' } }).status, 0);
    });

    await t.test('zero-only refuses content merging, forced or not', () => {
      for (const extra of [[], ['--force']]) {
        const z = runCli(['exec', '--merge', ...extra, '--tenant', 'acme', '--', 'true'], { env: { ...env, PAGEFUSE_ISOLATION: 'zero-only' } });
        assert.equal(z.status, 125);
        assert.match(z.stderr, /^pagefuse exec: isolation is zero-only: KSM content merging is off on this host/);
      }
    });

    await t.test("zero-only leaves a plain exec child's merge-any flag off", () => {
      const plain = runCli(['exec', '--', 'sh', '-c', 'grep ksm_merge_any /proc/self/ksm_stat'], { env: { ...env, PAGEFUSE_ISOLATION: 'zero-only' } });
      assert.equal(plain.stdout, 'ksm_merge_any: no\n');
    });

    await t.test('exec runs that exited are no longer registered', () => {
      assert.deepEqual(registry.list().map((r) => r.pid), [pid]);
    });
  } finally {
    await stop([acme]);
    rmSync(stateDir, { recursive: true, force: true });
  }
  assert.equal(registry.list().length, 0, 'an exited child leaves no registration');
});

test('audit names a registered process by its registered name, as status and top do', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'pf-audit-names-'));
  const region = Region.alloc(16 * PAGE_SIZE, { hugepages: 'never' });
  try {
    new Uint8Array(region.buffer).fill(7);
    region.advise('mergeable');
    const registry = new Registry({ stateDir });
    registry.add({ pid: process.pid, name: 'cache1', merge: true, via: 'register' });
    const snapshot = await collectAuditSnapshot({ registry });
    assert.equal(snapshot.processes.find((p) => p.pid === process.pid)?.name, 'cache1');
  } finally {
    region.dispose();
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('audit refuses a bad --fail-on level with one line and exit 2', () => {
  const r = runCli(['audit', '--fail-on', 'loud']);
  assert.equal(r.status, 2);
  assert.equal(r.stderr, "pagefuse audit: --fail-on must be info, warning or critical, got 'loud'\n");
});

test('audit refuses an unknown flag with one line and exit 2', () => {
  const u = runCli(['audit', '--bogus']);
  assert.equal(u.status, 2);
  assert.equal(u.stderr.split('\n').length, 2);
});

test('audit exits 3 when a finding is at or above --fail-on', () => {
  // No KSM under the given sysfs root: one info finding (ksm-absent).
  const r = runCli(['audit', '--fail-on', 'info'], { env: { PAGEFUSE_KSM_SYSFS: join(tmpdir(), 'pagefuse-no-ksm-here') } });
  assert.equal(r.status, 3, r.stderr);
  assert.match(r.stdout, /^INFO {5}ksm-absent: /m);
});

test('audit exits 1, not 3, when it cannot read the host', () => {
  const r = runCli(['audit', '--fail-on', 'info'], { env: { PAGEFUSE_PROC: join(tmpdir(), 'pagefuse-no-proc-here') } });
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^pagefuse audit: cannot read .*meminfo\n$/);
});
