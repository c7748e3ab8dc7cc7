// Errors, Node's way (issue 13 item 4): a string code on every validation error with the value it got
// quoted, AbortError with code 'ABORT_ERR' and the signal's reason as cause, an exception thrown in
// onProgress rejecting the scan, and signal checked like any other option.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AbortError,
  Ksm,
  PAGE_SIZE,
  Region,
  Registry,
  Tuner,
  canAdmit,
  processKsm,
  reclaimZeroPages,
  registeredSavings,
  scan,
  setMergeAny,
  spawnMerged,
  type ErrorCode,
} from '../src/index.js';

const ARG_CODES: ReadonlySet<ErrorCode> = new Set(['ERR_INVALID_ARG_TYPE', 'ERR_INVALID_ARG_VALUE', 'ERR_OUT_OF_RANGE']);

async function thrown(f: () => unknown): Promise<Error & { code?: unknown }> {
  try {
    await f();
  } catch (err) {
    return err as Error & { code?: unknown };
  }
  assert.fail('expected an error');
}

function tempRegistry(): { registry: Registry; dispose(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-errors-'));
  return { registry: new Registry({ stateDir: dir }), dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

test("a pid given as the string '8688' is an ERR_INVALID_ARG_TYPE TypeError that says it got the string", async () => {
  const { registry, dispose } = tempRegistry();
  try {
    const tuner = new Tuner({ registry, isolation: 'host' });
    const err = await thrown(() => tuner.register('8688' as unknown as number));
    assert.equal(err.name, 'TypeError');
    assert.equal(err.code, 'ERR_INVALID_ARG_TYPE');
    assert.match(err.message, /got the string "8688"$/);
  } finally {
    dispose();
  }
});

test('every validation error of the public API carries a Node code and names the value it got', async () => {
  const bad: [string, () => unknown, RegExp][] = [
    ['Region.alloc bytes', () => Region.alloc(-1), /got -1$/],
    ['Region.alloc hugepages', () => Region.alloc(PAGE_SIZE, { hugepages: 'x' as 'never' }), /got the string "x"$/],
    ['scan mode', () => scan(new Uint8Array(PAGE_SIZE), { mode: 'slow' as 'exact' }), /got the string "slow"$/],
    ['scan threads', () => scan(new Uint8Array(PAGE_SIZE), { threads: 0 }), /got 0$/],
    ['scan pid', () => scan({ pid: '12' as unknown as number }), /got the string "12"$/],
    ['scan target', () => scan(42 as never), /got 42$/],
    ['scan pid past the kernel\'s', () => scan({ pid: 99999999 }), /^scan: target 0: pid must be a process id from 1 to 4194304.*got 99999999$/],
    ['processKsm pid', () => processKsm(-3), /got -3$/],
    ['setMergeAny', () => setMergeAny('on' as unknown as boolean), /got the string "on"$/],
    ['Tuner intervalMs', () => new Tuner({ intervalMs: -5 }), /got -5$/],
    ['Tuner options', () => new Tuner(7 as never), /got 7$/],
    ['Tuner pollMs', () => new Tuner({ pollMs: 0 }), /got 0$/],
    ['Tuner intervalMs past the timers\' range', () => new Tuner({ intervalMs: 2 ** 31 }), /got 2147483648$/],
    ['Tuner dryRun', () => new Tuner({ dryRun: 'yes' as never }), /got the string "yes"$/],
    ['Tuner isolation', () => new Tuner({ isolation: 'nope' as never }), /got the string "nope"$/],
    ['Tuner lock', () => new Tuner({ lock: '/tmp/x' as never }), /got the string "\/tmp\/x"$/],
    ['canAdmit bytes', () => canAdmit(-1), /got -1$/],
    ['registeredSavings options', () => registeredSavings('x' as never), /got the string "x"$/],
    ['spawnMerged cmd', () => spawnMerged(''), /got the string ""$/],
    ['Ksm.waitForFullScans n', () => new Ksm({ sysfsRoot: '/nonexistent' }).waitForFullScans(-1), /got -1$/],
    ['tenant', () => new Registry({ stateDir: '/nonexistent' }).add({ pid: process.pid, merge: true, via: 'register', tenant: 'a b' }), /got the string "a b"$/],
  ];
  for (const [what, f, message] of bad) {
    const err = await thrown(f);
    assert.ok(ARG_CODES.has(err.code as ErrorCode), `${what}: code ${String(err.code)} (${err.message})`);
    assert.match(err.message, message, what);
  }
});

test('a native argument check carries a Node code too', async () => {
  const region = Region.alloc(PAGE_SIZE);
  try {
    const err = await thrown(() => scan(region, { hashBits: 0 }));
    assert.equal(err.code, 'ERR_OUT_OF_RANGE');
  } finally {
    region.dispose();
  }
});

test("an aborted scan rejects with an AbortError of code 'ABORT_ERR' whose cause is the signal's reason", async () => {
  const reason = new Error('the VM was shut down');
  const err = await thrown(() => scan(new Uint8Array(PAGE_SIZE), { signal: AbortSignal.abort(reason) }));
  assert.ok(err instanceof AbortError);
  assert.equal(err.name, 'AbortError');
  assert.equal(err.code, 'ABORT_ERR');
  assert.equal(err.cause, reason);
});

test('an abort during the scan gives the same AbortError, with the reason as cause', async () => {
  const pages = 16 * 1024;
  const region = Region.alloc(pages * PAGE_SIZE, { hugepages: 'never' });
  try {
    const ac = new AbortController();
    const p = scan(Array.from({ length: 16 }, () => region), { threads: 1, signal: ac.signal });
    setTimeout(() => ac.abort('stop'), 5);
    const err = await thrown(() => p);
    assert.equal(err.code, 'ABORT_ERR');
    assert.equal(err.cause, 'stop');
  } finally {
    region.dispose();
  }
});

test('an exception thrown in onProgress rejects the scan with that exception, with no DEP0168 warning', async () => {
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => void warnings.push(w);
  process.on('warning', onWarning);
  const boom = new Error('progress handler failed');
  try {
    const err = await thrown(() =>
      scan(new Uint8Array(4096 * PAGE_SIZE), {
        threads: 1,
        onProgress: () => {
          throw boom;
        },
      }),
    );
    assert.equal(err, boom);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(warnings.map((w) => w.name), []);
  } finally {
    process.off('warning', onWarning);
  }
});

test("signal: 'x' is an ERR_INVALID_ARG_TYPE that says what it got", async () => {
  const region = Region.alloc(PAGE_SIZE);
  try {
    for (const f of [
      () => scan(new Uint8Array(PAGE_SIZE), { signal: 'x' as unknown as AbortSignal }),
      () => reclaimZeroPages(region, { signal: 'x' as unknown as AbortSignal }),
      () => new Ksm({ sysfsRoot: '/nonexistent' }).waitForFullScans(1, { signal: 'x' as unknown as AbortSignal }),
    ]) {
      const err = await thrown(f);
      assert.equal(err.code, 'ERR_INVALID_ARG_TYPE');
      assert.match(err.message, /signal must be an AbortSignal, got the string "x"$/);
    }
  } finally {
    region.dispose();
  }
});
