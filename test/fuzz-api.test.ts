// Property-based tests (fast-check) of the public API with generated arguments: Region.alloc/advise/bind,
// Ksm.configure against a fake sysfs root, processKsm, scan targets and options, the Tuner's options and
// register, spawnMerged's options, and the CLI's flag helpers. Each case ends in a result or in an Error with a string `code`;
// none in another exception or a native abort, and the host's real KSM knobs are the same before and after
// (read under the machine-wide KSM test lock, so no other test moves them meanwhile).
// Runs per property: PAGEFUSE_FUZZ_RUNS (default 1000; the costlier properties run a fifth of that).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Ksm, Region, processKsm, Registry, TUNABLES } from '../src/index.js';
import { scan } from '../src/scan/scan.js';
import { Tuner } from '../src/tune/tuner.js';
import { spawnMerged } from '../src/launch/spawn.js';
import { intFlag, parse } from '../src/cli/common.js';
import { parseListen } from '../src/cli/serve.js';
import { lockKsm } from './helpers/lock.js';
import { FUZZ_RUNS, assertCodedError, countCases } from './helpers/fuzz.js';

const params = { numRuns: FUZZ_RUNS };
const fewer = { numRuns: Math.max(1, Math.round(FUZZ_RUNS / 5)) };
const SYSFS = '/sys/kernel/mm/ksm';
const DIR = mkdtempSync(join(tmpdir(), 'pagefuse-fuzz-api-'));

/** Every writable knob of the real sysfs, as text. */
function realKnobs(): Record<string, string> {
  const out: Record<string, string> = {};
  let names: string[] = [];
  try {
    names = readdirSync(SYSFS);
  } catch {
    return out; // no KSM here: nothing that could change
  }
  for (const name of names) {
    const path = join(SYSFS, name);
    if ((statSync(path).mode & 0o200) !== 0) out[name] = readFileSync(path, 'utf8');
  }
  return out;
}

let release: () => void = () => undefined;
let knobsBefore: Record<string, string> = {};
before(async () => {
  release = await lockKsm();
  knobsBefore = realKnobs();
});
after(() => {
  try {
    assert.deepEqual(realKnobs(), knobsBefore, 'a generated case changed a real KSM knob');
  } finally {
    release();
    rmSync(DIR, { recursive: true, force: true });
  }
});

/** Ends in a value or a coded error. */
async function settles(f: () => unknown): Promise<void> {
  countCases();
  try {
    await f();
  } catch (err) {
    assertCodedError(err);
  }
}

const weirdNumber = fc.oneof(
  fc.integer({ min: -5, max: 1 << 20 }),
  fc.constantFrom(0, -1, 0.5, Number.NaN, Infinity, -Infinity, 2 ** 53, 2 ** 64, 4096, 4095, 4097),
);
const weird = fc.oneof(weirdNumber, fc.string({ maxLength: 8 }), fc.constantFrom(null, undefined, true, {}, [], [0], [-1, 70000])) as fc.Arbitrary<unknown>;

test('Region.alloc, advise, bind and dispose settle for any arguments', async () => {
  await fc.assert(
    fc.asyncProperty(
      weirdNumber,
      fc.record({ mergeable: weird, hugepages: fc.oneof(fc.constantFrom('default', 'never', 'always'), weird), node: weird, policy: fc.oneof(fc.constantFrom('bind', 'preferred', 'interleave'), weird) }, { requiredKeys: [] }),
      fc.oneof(fc.constantFrom('mergeable', 'unmergeable', 'hugepage', 'nohugepage', 'dontneed', 'cold', 'pageout'), fc.string({ maxLength: 10 })),
      fc.record({ offset: weird, length: weird }, { requiredKeys: [] }),
      weird,
      async (bytes, options, advice, range, nodes) => {
        let region: Region | undefined;
        await settles(() => {
          region = Region.alloc(bytes as number, options as never);
        });
        if (region === undefined) return;
        try {
          await settles(() => region!.advise(advice as never, range as never));
          await settles(() => region!.bind(nodes as never));
        } finally {
          region.dispose();
        }
        await settles(() => region!.advise('mergeable'));
      },
    ),
    fewer,
  );
});

const FAKE_FILES: Record<string, string> = {
  run: '0', pages_to_scan: '100', sleep_millisecs: '20', merge_across_nodes: '1', max_page_sharing: '256', use_zero_pages: '0',
  smart_scan: '1', stable_node_chains_prune_millisecs: '2000', advisor_mode: '[none] scan-time', advisor_max_cpu: '70',
  advisor_min_pages_to_scan: '500', advisor_max_pages_to_scan: '30000', advisor_target_scan_time: '200',
  full_scans: '1', pages_shared: '0', pages_sharing: '0', pages_unshared: '0', pages_volatile: '0', general_profit: '0', ksm_zero_pages: '0',
};

test('Ksm.configure against a fake sysfs root settles for any settings, and leaves every file a number or a mode', async () => {
  const root = join(DIR, 'sysfs');
  mkdirSync(root);
  for (const [k, v] of Object.entries(FAKE_FILES)) writeFileSync(join(root, k), `${v}\n`);
  const ksm = new Ksm({ sysfsRoot: root });
  const keys = [...Object.keys(TUNABLES), 'pages_shared', 'nope', '__proto__'];
  await fc.assert(
    fc.asyncProperty(fc.dictionary(fc.constantFrom(...keys), weird, { maxKeys: 4 }), async (settings) => {
      await settles(() => ksm.configure(settings as never, { timeoutMs: 50 } as never));
      for (const k of Object.keys(FAKE_FILES)) assert.match(readFileSync(join(root, k), 'utf8'), /^(-?\d+|\[?[a-z-]+\]?( \[?[a-z-]+\]?)*)\n?$/, k);
    }),
    fewer,
  );
});

test('processKsm settles for any pid', async () => {
  await fc.assert(fc.asyncProperty(fc.oneof(weird, fc.constant('self'), fc.integer({ min: 1, max: 4194304 })), (pid) => settles(() => processKsm(pid as never))), params);
});

test('scan settles for any target and options', async () => {
  const buf = new Uint8Array(4096 * 4).fill(1);
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(fc.constant(buf as unknown), fc.constant(buf.buffer as unknown), fc.record({ pid: weird, mergeableOnly: weird }, { requiredKeys: [] }), weird),
      fc.record({ mode: fc.oneof(fc.constantFrom('exact', 'fast', 'sampled'), weird), threads: weird, sampleRate: weird, seed: weird }, { requiredKeys: [] }),
      (target, options) => settles(() => scan(target as never, options as never)),
    ),
    fewer,
  );
});

test('new Tuner and register settle for any options, and register records nothing in the host registry', async () => {
  const registry = new Registry({ stateDir: join(DIR, 'registry') });
  await fc.assert(
    fc.asyncProperty(
      fc.record({ policy: fc.oneof(fc.constantFrom('adaptive', 'ksmtuned', 'kernel-advisor'), weird), cpuBudget: weird, intervalMs: weird, dryRun: weird, pollMs: weird, isolation: fc.oneof(fc.constantFrom('host', 'tenant', 'zero-only'), weird) }, { requiredKeys: [] }),
      weird,
      fc.record({ tenant: weird, name: weird, force: weird }, { requiredKeys: [] }),
      async (options, pid, registerOptions) => {
        let tuner: Tuner | undefined;
        await settles(() => {
          tuner = new Tuner({ ...(options as object), registry, ksm: new Ksm({ sysfsRoot: join(DIR, 'no-ksm') }) } as never);
        });
        if (tuner !== undefined) await settles(() => tuner!.register(pid as never, registerOptions as never));
      },
    ),
    params,
  );
});

test('spawnMerged settles for any command, arguments and options: a child that exits (its errors coded) or a coded error, and the registry left empty', async () => {
  const registry = new Registry({ stateDir: join(DIR, 'spawn-registry') });
  const defined = weird.filter((v) => v !== undefined);
  const numaValue = fc.oneof(fc.constantFrom('0', '0-1', '1', 'all', ''), weird);
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(fc.constantFrom('true', '/bin/true', '/nonexistent/vmm', '/etc/hostname', 'x\0y'), weird),
      fc.oneof(fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 }), weird),
      fc.record(
        {
          node: fc.oneof(fc.constant(0), weird),
          numa: fc.oneof(fc.record({ membind: numaValue, preferred: fc.oneof(fc.constant(0), weird), interleave: numaValue, cpunodebind: numaValue }, { requiredKeys: [] }), weird),
          mergeAny: fc.oneof(fc.boolean(), weird),
          tenant: fc.oneof(fc.constantFrom('t1', 'vm.a@b'), weird),
          name: fc.oneof(fc.string({ maxLength: 8 }), weird),
          isolation: fc.oneof(fc.constantFrom('host', 'tenant', 'zero-only'), weird),
          force: weird,
          // Never the host's registry (undefined): the cases must not show up beside real VMs.
          registry: fc.oneof(fc.constant(registry as unknown), fc.constant(false), defined),
          cwd: fc.oneof(fc.constantFrom(DIR, '/nonexistent'), weird),
          env: fc.oneof(fc.constant({ PATH: process.env.PATH }), weird),
          shell: weird,
        },
        { requiredKeys: ['registry'] },
      ),
      async (cmd, args, options) => {
        countCases();
        let child: ReturnType<typeof spawnMerged>;
        try {
          child = spawnMerged(cmd as never, args as never, { ...(options as object), stdio: 'ignore' } as never);
        } catch (err) {
          assertCodedError(err);
          return;
        }
        await new Promise<void>((resolve) => {
          child.once('error', (err) => {
            assertCodedError(err);
            resolve();
          });
          child.once('exit', () => resolve());
        });
        assert.deepEqual(registry.list().map((r) => r.pid), [], 'an exited child is no longer registered');
      },
    ),
    fewer,
  );
});

test('the CLI flag layer: parse, intFlag and parseListen end in values or UsageErrors (code ERR_USAGE)', () => {
  const options = { json: { type: 'boolean' as const }, top: { type: 'string' as const }, listen: { type: 'string' as const }, help: { type: 'boolean' as const, short: 'h' } };
  const token = fc.oneof(fc.constantFrom('--json', '--top', '--listen', '-h', '--', '--top=-1', '--nope', '-x', '--json=1'), fc.string({ maxLength: 10 }));
  fc.assert(
    fc.property(fc.array(token, { maxLength: 6 }), fc.string({ maxLength: 12 }), fc.string({ maxLength: 24 }), (args, n, listen) => {
      countCases();
      for (const f of [() => parse('status', args, { options }), () => intFlag('status', 'top', n, 0, 1000), () => parseListen(listen)]) {
        try {
          f();
        } catch (err) {
          assert.equal((err as Error).name, 'UsageError', (err as Error).stack);
          assert.equal((err as Error & { code?: unknown }).code, 'ERR_USAGE');
          assert.ok(!(err as Error).message.includes('\n'), 'one line');
        }
      }
    }),
    params,
  );
});
