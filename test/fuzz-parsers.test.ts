// Property-based tests (fast-check) of everything that reads text a stranger may have written: the /proc
// parsers (cmdline, meminfo/status, stat, ksm_stat, smaps), both config parsers (ksmtuned.conf, pagefuse.conf)
// and the knob parsers, fed random and truncated text. Each case ends in a result or in an Error with a string
// `code`; none in another exception. Runs per property: PAGEFUSE_FUZZ_RUNS (default 1000).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { keyValue, parseKeyValues, parseStat, splitCmdline } from '../src/host/procfs.js';
import { parseKsmStat } from '../src/ksm/process.js';
import { mergeableRanges } from '../src/numa/ksm-nodes.js';
import { parseConfig } from '../src/tune/config.js';
import { parseIsolation, readIsolation } from '../src/safety/isolation.js';
import { parseKnobText, parseSetting, TUNABLE_NAMES } from '../src/ksm/knobs.js';
import { statLine } from './helpers/proc-tree.js';
import { FUZZ_RUNS, assertCodedError, countCases } from './helpers/fuzz.js';

const params = { numRuns: FUZZ_RUNS };

/** Real /proc text from this machine, and random cuts of it: truncated reads are what a racing exit gives. */
function realOrCut(path: string): fc.Arbitrary<string> {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    text = ''; // ksm_stat needs Linux 6.1
  }
  return fc.oneof(
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc.nat({ max: text.length }).map((n) => text.slice(0, n)),
    fc.tuple(fc.nat({ max: text.length }), fc.string({ maxLength: 40 })).map(([n, junk]) => text.slice(0, n) + junk + text.slice(n)),
  );
}

test('splitCmdline gives back the arguments a NUL-separated cmdline was made of', () => {
  fc.assert(
    fc.property(fc.array(fc.string({ unit: 'binary' }).filter((s) => !s.includes('\0')), { maxLength: 8 }), (args) => {
      countCases();
      assert.deepEqual(splitCmdline(args.map((a) => `${a}\0`).join('')), args);
    }),
    params,
  );
});

test('splitCmdline takes any text, a cut one included, and returns strings', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (raw) => {
      countCases();
      assert.ok(splitCmdline(raw).every((a) => typeof a === 'string'));
    }),
    params,
  );
});

test('parseKeyValues (meminfo, status) returns only whole non-negative numbers from any text', () => {
  fc.assert(
    fc.property(fc.oneof(realOrCut('/proc/meminfo'), realOrCut('/proc/self/status')), (text) => {
      countCases();
      for (const v of Object.values(parseKeyValues(text))) assert.ok(Number.isInteger(v) && v >= 0, String(v));
    }),
    params,
  );
});

test('keyValue reads a key as parseKeyValues does, wherever its line occurs once', () => {
  const keys = ['MemTotal', 'MemAvailable', 'Cached', 'SwapFree', 'VmRSS', 'Name'];
  fc.assert(
    fc.property(fc.oneof(realOrCut('/proc/meminfo'), realOrCut('/proc/self/status')), fc.constantFrom(...keys), (text, key) => {
      countCases();
      if (text.split('\n').filter((line) => line.startsWith(`${key}:`)).length > 1) return;
      assert.equal(keyValue(text, key), parseKeyValues(text)[key]);
    }),
    params,
  );
});

test('parseStat gives back any comm, parentheses, spaces and escapes included', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 15 }).filter((s) => !s.includes('\n')), fc.integer({ min: 1, max: 4194304 }), (comm, pid) => {
      countCases();
      const s = parseStat(statLine({ pid, argv: ['x'], comm, startTime: 77 }));
      assert.equal(s?.comm, comm);
      assert.equal(s?.startTime, 77);
    }),
    params,
  );
});

test('parseStat of random or cut text returns undefined or a stat with a string comm', () => {
  fc.assert(
    fc.property(realOrCut('/proc/self/stat'), (text) => {
      countCases();
      const s = parseStat(text);
      assert.ok(s === undefined || (typeof s.comm === 'string' && typeof s.state === 'string'));
    }),
    params,
  );
});

test('parseKsmStat of random or cut text returns numbers and booleans only', () => {
  fc.assert(
    fc.property(realOrCut('/proc/self/ksm_stat'), (text) => {
      countCases();
      for (const v of Object.values(parseKsmStat(text))) assert.ok(Number.isSafeInteger(v) || typeof v === 'boolean', String(v));
    }),
    params,
  );
});

test('mergeableRanges of random or cut smaps returns ordered, non-empty address ranges', () => {
  fc.assert(
    fc.property(realOrCut('/proc/self/smaps'), (text) => {
      countCases();
      for (const [start, end] of mergeableRanges(text)) assert.ok(Number.isFinite(start) && Number.isFinite(end) && start < end);
    }),
    params,
  );
});

const CONFIG_KEYS = ['KSM_MONITOR_INTERVAL', 'KSM_SLEEP_MSEC', 'KSM_NPAGES_BOOST', 'KSM_NPAGES_DECAY', 'KSM_NPAGES_MIN', 'KSM_NPAGES_MAX', 'KSM_THRES_COEF', 'KSM_THRES_CONST', 'LOGFILE', 'DEBUG', 'PAGEFUSE_POLICY', 'PAGEFUSE_CPU_BUDGET', 'NOPE'];
const configLine = fc.oneof(
  fc.tuple(fc.constantFrom(...CONFIG_KEYS), fc.oneof(fc.integer().map(String), fc.string({ maxLength: 12 }), fc.constantFrom('"10"', "'x", '1 # c', '', '-5', '1e9', 'adaptive'))).map(([k, v]) => `${k}=${v}`),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('# comment', '', 'export KSM_NPAGES_MAX=3000', '   ', '\r'),
);

test('parseConfig (ksmtuned.conf) returns a config or an EINVAL error naming the line', () => {
  fc.assert(
    fc.property(fc.array(configLine, { maxLength: 12 }), (lines) => {
      countCases();
      try {
        const c = parseConfig(lines.join('\n'), 'fuzz.conf');
        assert.equal(typeof c, 'object');
      } catch (err) {
        assertCodedError(err);
        assert.match((err as Error).message, /^fuzz\.conf(:\d+)?: /); // a line, or the file for a rule across keys
      }
    }),
    params,
  );
});

test('readIsolation (pagefuse.conf) returns an isolation or a coded error for any file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-fuzz-conf-'));
  const file = join(dir, 'pagefuse.conf');
  const saved = process.env.PAGEFUSE_ISOLATION;
  delete process.env.PAGEFUSE_ISOLATION;
  try {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.string({ maxLength: 30 }).map((v) => `ISOLATION=${v}`), fc.constantFrom('ISOLATION="tenant"', 'ISOLATION=zero-only # x', 'ISOLATION = host'), fc.string({ unit: 'binary', maxLength: 30 })), { maxLength: 6 }),
        (lines) => {
          countCases();
          writeFileSync(file, lines.join('\n'));
          try {
            assert.ok(['host', 'tenant', 'zero-only'].includes(readIsolation(file)));
          } catch (err) {
            assertCodedError(err);
          }
        },
      ),
      params,
    );
  } finally {
    if (saved !== undefined) process.env.PAGEFUSE_ISOLATION = saved;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('parseIsolation takes any value and returns an isolation or a coded error', () => {
  fc.assert(
    fc.property(fc.anything(), (v) => {
      countCases();
      try {
        parseIsolation(v);
      } catch (err) {
        assertCodedError(err);
      }
    }),
    params,
  );
});

test('parseSetting (set KEY=VALUE) returns a value or a coded error for any key and text', () => {
  fc.assert(
    fc.property(fc.oneof(fc.constantFrom(...TUNABLE_NAMES), fc.string({ maxLength: 20 })), fc.oneof(fc.string({ maxLength: 20 }), fc.integer().map(String), fc.constantFrom('on', 'off', ' 1 ', '1e3', '-1', '99999999999999999999', 'none', 'scan-time')), (key, text) => {
      countCases();
      try {
        parseSetting(key, text);
      } catch (err) {
        assertCodedError(err);
      }
    }),
    params,
  );
});

test('parseKnobText returns a number or a string for any sysfs text', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (text) => {
      countCases();
      const v = parseKnobText(text);
      assert.ok(typeof v === 'string' || Number.isFinite(v));
    }),
    params,
  );
});
