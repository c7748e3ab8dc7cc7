import { test } from 'node:test';
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { checkCpuBudget, checkPolicy, defaultConfig, KSMTUNED_DEFAULTS, loadConfig, parseConfig } from '../src/tune/config.js';
import { Tuner } from '../src/index.js';

const FIXTURE = new URL('./fixtures/tune/ksmtuned.conf', import.meta.url).pathname;

test('a ksmtuned.conf with comments, quotes and pagefuse keys is read onto the defaults', async () => {
  const c = await loadConfig(FIXTURE);
  assert.deepEqual(c.ksmtuned, {
    ...KSMTUNED_DEFAULTS,
    KSM_MONITOR_INTERVAL: 30,
    KSM_SLEEP_MSEC: 100,
    KSM_NPAGES_DECAY: -25,
    KSM_NPAGES_MIN: 128,
    KSM_THRES_COEF: 95,
  });
  assert.equal(c.logFile, '/var/log/ksmtuned');
  assert.equal(c.debug, '1');
  assert.equal(c.policy, 'ksmtuned');
  assert.equal(c.cpuBudget, 0.5);
  assert.equal(c.minSavingsBytes, 128 * 1024 * 1024);
  assert.deepEqual(parseConfig(''), defaultConfig());
  assert.equal(parseConfig('export KSM_NPAGES_MAX=2000\r\n').ksmtuned.KSM_NPAGES_MAX, 2000);
});

test('unknown keys and bad values are refused with file:line and the key named', async () => {
  assert.throws(() => parseConfig('# c\nKSM_MONITOR_INTERVAL=60\nKSM_SLEEP_MSECS=10\n', '/etc/ksmtuned.conf'), {
    code: 'EINVAL',
    message: /^\/etc\/ksmtuned\.conf:3: unknown key KSM_SLEEP_MSECS \(known: KSM_MONITOR_INTERVAL,/,
  });
  assert.throws(() => parseConfig('\nKSM_NPAGES_BOOST=lots\n', 'a.conf'), { message: "a.conf:2: KSM_NPAGES_BOOST must be a whole number, got 'lots'" });
  assert.throws(() => parseConfig('KSM_THRES_COEF=150', 'a.conf'), { message: 'a.conf:1: KSM_THRES_COEF must be from 0 to 100, got 150' });
  assert.throws(() => parseConfig('KSM_MONITOR_INTERVAL=0', 'a.conf'), { message: /a\.conf:1: KSM_MONITOR_INTERVAL must be from 1 to 86400, got 0/ });
  assert.throws(() => parseConfig('KSM_SLEEP_MSEC="10', 'a.conf'), { message: 'a.conf:1: KSM_SLEEP_MSEC: unterminated double quote' });
  assert.throws(() => parseConfig('PAGEFUSE_POLICY=fastest', 'a.conf'), { message: "a.conf:1: PAGEFUSE_POLICY must be one of adaptive, ksmtuned, kernel-advisor, got 'fastest'" });
  assert.throws(() => parseConfig('PAGEFUSE_CPU_BUDGET=0', 'a.conf'), { message: 'a.conf:1: PAGEFUSE_CPU_BUDGET must be above 0 and at most 1024, got 0' });
  assert.throws(() => parseConfig('just words', 'a.conf'), { message: 'a.conf:1: expected KEY=VALUE' });
  assert.throws(() => parseConfig('PAGEFUSE_INTERVAL=0.0001', 'a.conf'), { message: 'a.conf:1: PAGEFUSE_INTERVAL must be at least 0.05 and at most 86400, got 0.0001' });
  assert.throws(() => parseConfig('KSM_NPAGES_MIN=2000\nKSM_NPAGES_MAX=1000', 'a.conf'), { message: 'a.conf: KSM_NPAGES_MIN (2000) is above KSM_NPAGES_MAX (1000)' });
  await assert.rejects(loadConfig('/nonexistent/ksmtuned.conf'), { code: 'ENOENT', message: /cannot read the config \/nonexistent\/ksmtuned\.conf/ });
});

test("keys of Object's prototype are unknown keys, not setters (they failed with 'setter is not a function')", () => {
  for (const key of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
    assert.throws(() => parseConfig(`${key}=1`, 'a.conf'), { code: 'EINVAL', message: new RegExp(`^a\\.conf:1: unknown key ${key} \\(known: KSM_MONITOR_INTERVAL,`) }, key);
  }
});

test('a decimal config value is a plain decimal: hex, exponents and blanks are refused', () => {
  for (const value of ['0x1', '1e-1', ' 0.5']) {
    assert.throws(() => parseConfig(`PAGEFUSE_CPU_BUDGET=${JSON.stringify(value)}`, 'a.conf'), { message: `a.conf:1: PAGEFUSE_CPU_BUDGET must be a number, got '${value}'` }, value);
  }
});

test('policies and budgets outside (0, number of CPUs] are refused, by name and value', () => {
  const cpus = availableParallelism();
  assert.equal(checkPolicy('kernel-advisor'), 'kernel-advisor');
  assert.throws(() => checkPolicy('ksmtune'), { name: 'RangeError', message: 'unknown policy "ksmtune": use one of adaptive, ksmtuned, kernel-advisor' });
  assert.equal(checkCpuBudget(cpus, cpus), cpus);
  for (const bad of [0, -0.1, cpus + 0.01, Number.NaN, Infinity]) {
    assert.throws(() => checkCpuBudget(bad, cpus), { name: 'RangeError', message: new RegExp(`at most the number of CPUs \\(${cpus}\\), got ${String(bad)}`) });
  }
  assert.throws(() => new Tuner({ policy: 'greedy' as 'adaptive' }), { name: 'RangeError', message: /unknown policy "greedy"/ });
  assert.throws(() => new Tuner({ cpuBudget: cpus + 1 }), { name: 'RangeError', message: /cpuBudget must be above 0/ });
  assert.throws(() => new Tuner({ intervalMs: 0 }), { name: 'RangeError', message: /intervalMs/ });
  const t = new Tuner({ policy: 'ksmtuned' });
  assert.equal(t.intervalMs, 60_000, 'ksmtuned decides every KSM_MONITOR_INTERVAL');
  assert.equal(new Tuner().cpuBudget, 0.25);
  assert.equal(new Tuner().policy, 'adaptive');
});
