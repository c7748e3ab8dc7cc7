// The one knob snapshot/restore (src/ksm/snapshot.ts): what a snapshot holds, the order and the advisor
// rule of a restore, crash records and their recovery. On fake sysfs trees (plain files in a temp dir),
// except the first test, which reads the real one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, symlinkSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KnobGuard, recoverKnobs, restoreKnobs, restorePlan, snapshotKnobs, type KnobSnapshot } from '../src/ksm/snapshot.js';
import { parseStat } from '../src/host/procfs.js';

const SYSFS = '/sys/kernel/mm/ksm';

/** A fake KSM sysfs directory: writable knobs, plus a read-only counter. */
function fakeSysfs(knobs: KnobSnapshot): string {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-sysfs-'));
  for (const [k, v] of Object.entries(knobs)) writeFileSync(join(dir, k), k === 'advisor_mode' ? (v === 'none' ? '[none] scan-time\n' : 'none [scan-time]\n') : `${v}\n`);
  writeFileSync(join(dir, 'pages_shared'), '0\n');
  chmodSync(join(dir, 'pages_shared'), 0o444);
  return dir;
}

const HOST: KnobSnapshot = {
  advisor_max_cpu: 70,
  advisor_mode: 'none',
  max_page_sharing: 256,
  merge_across_nodes: 1,
  pages_to_scan: 100,
  run: 0,
  sleep_millisecs: 20,
  smart_scan: 1,
  some_future_knob: 5,
};

test('a snapshot of the real sysfs holds exactly its writable files', (t) => {
  let names: string[];
  try {
    names = readdirSync(SYSFS);
  } catch {
    return t.skip(`${SYSFS} missing: no KSM in this kernel`);
  }
  const writable = names.filter((n) => (statSync(join(SYSFS, n)).mode & 0o200) !== 0).sort();
  assert.deepEqual(Object.keys(snapshotKnobs(SYSFS)), writable);
});

test('a snapshot includes a writable knob pagefuse does not know, and leaves counters out', () => {
  const dir = fakeSysfs(HOST);
  try {
    assert.deepEqual(snapshotKnobs(dir), HOST);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('restore order: run=2 first when merge_across_nodes differs, then advisor_mode=none, the rest, run last', () => {
  const now = { ...HOST, merge_across_nodes: 0, run: 1, advisor_mode: 'scan-time', pages_to_scan: 500, smart_scan: 0 };
  assert.deepEqual(restorePlan(HOST, now), [
    ['run', 2],
    ['advisor_mode', 'none'],
    ['merge_across_nodes', 1],
    ['pages_to_scan', 100],
    ['smart_scan', 1],
    ['run', 0],
  ]);
});

test('the advisor rule: a host found in scan-time mode never gets pages_to_scan written back', () => {
  const found = { ...HOST, advisor_mode: 'scan-time', pages_to_scan: 12 };
  const now = { ...HOST, advisor_mode: 'none', pages_to_scan: 3000, run: 1 };
  assert.deepEqual(restorePlan(found, now), [
    ['advisor_mode', 'scan-time'],
    ['run', 0],
  ]);
});

test('the advisor rule: leaving scan-time puts pages_to_scan back even when it reads as found (the switch resets it)', () => {
  const now = { ...HOST, advisor_mode: 'scan-time' };
  assert.deepEqual(restorePlan(HOST, now, ['advisor_mode']), [
    ['advisor_mode', 'none'],
    ['pages_to_scan', 100],
  ]);
});

test('restoring only the knobs a writer touched leaves the others as they are now', () => {
  const now = { ...HOST, pages_to_scan: 3000, run: 1, smart_scan: 0 };
  assert.deepEqual(restorePlan(HOST, now, ['pages_to_scan', 'run']), [
    ['pages_to_scan', 100],
    ['run', 0],
  ]);
});

test('restoreKnobs writes every knob back, the unknown one included', () => {
  const dir = fakeSysfs({ ...HOST, pages_to_scan: 5000, run: 1, smart_scan: 0, some_future_knob: 9 });
  try {
    restoreKnobs(HOST, { sysfsRoot: dir });
    assert.deepEqual(snapshotKnobs(dir), HOST);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('restoreKnobs tries every knob and names each one that would not go back (code EKNOBS)', (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root: the refusal comes from a real read-only sysfs file');
  const dir = fakeSysfs({ ...HOST, pages_to_scan: 5000, sleep_millisecs: 1 });
  try {
    rmSync(join(dir, 'pages_to_scan'));
    // A read-only sysfs file: the kernel refuses the write (EACCES), even to root.
    symlinkSync(`${SYSFS}/pages_shared`, join(dir, 'pages_to_scan'));
    assert.throws(() => restoreKnobs({ ...HOST, pages_to_scan: 987654 }, { sysfsRoot: dir, only: ['pages_to_scan', 'sleep_millisecs'] }), {
      code: 'EKNOBS',
      message: `could not put back pages_to_scan=987654: EACCES under ${dir}`,
    });
    assert.equal(readFileSync(join(dir, 'sleep_millisecs'), 'utf8'), '20\n', 'the other knob went back');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A record of a process that has exited (its pid and start time no longer name a live process). */
async function deadRecord(dir: string, sysfsRoot: string, knobs: KnobSnapshot, at: number, only?: string[]): Promise<void> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 10000)'], { stdio: 'ignore' });
  await once(child, 'spawn');
  const startTime = parseStat(readFileSync(`/proc/${child.pid}/stat`, 'utf8'))!.startTime;
  child.kill('SIGKILL');
  await once(child, 'exit');
  const record = { version: 1, owner: 'tune', pid: child.pid, startTime, at, sysfsRoot, knobs, ...(only === undefined ? {} : { only }) };
  writeFileSync(join(dir, `knobs-${child.pid}-1.json`), JSON.stringify(record));
}

test('a dead writer\'s record is put back and removed; the recovery says whose it was', async () => {
  const sysfs = fakeSysfs({ ...HOST, run: 1, pages_to_scan: 2667 });
  const records = mkdtempSync(join(tmpdir(), 'pagefuse-records-'));
  try {
    await deadRecord(records, sysfs, HOST, 1, ['run', 'pages_to_scan']);
    const recovered = recoverKnobs({ dir: records, sysfsRoot: sysfs });
    assert.deepEqual(
      recovered.map((r) => [r.owner, r.written]),
      [['tune', [['pages_to_scan', 100], ['run', 0]]]],
    );
    assert.deepEqual(snapshotKnobs(sysfs), HOST);
    assert.deepEqual(readdirSync(records), []);
  } finally {
    rmSync(sysfs, { recursive: true, force: true });
    rmSync(records, { recursive: true, force: true });
  }
});

test('nested dead records are put back newest first, so the oldest (the host\'s own knobs) wins', async () => {
  const sysfs = fakeSysfs({ ...HOST, run: 1, pages_to_scan: 3000 });
  const records = mkdtempSync(join(tmpdir(), 'pagefuse-records-'));
  try {
    await deadRecord(records, sysfs, HOST, 1); // the bench found the host's knobs
    await deadRecord(records, sysfs, { ...HOST, pages_to_scan: 20000, run: 1 }, 2); // a tuner inside it found the bench's
    recoverKnobs({ dir: records, sysfsRoot: sysfs });
    assert.deepEqual(snapshotKnobs(sysfs), HOST);
  } finally {
    rmSync(sysfs, { recursive: true, force: true });
    rmSync(records, { recursive: true, force: true });
  }
});

test('a record whose pid is alive but started at another time (a reused pid) counts as dead', () => {
  const sysfs = fakeSysfs({ ...HOST, run: 1 });
  const records = mkdtempSync(join(tmpdir(), 'pagefuse-records-'));
  try {
    const record = { version: 1, owner: 'tune', pid: process.pid, startTime: 1, at: 1, sysfsRoot: sysfs, knobs: HOST };
    writeFileSync(join(records, `knobs-${process.pid}-99.json`), JSON.stringify(record));
    assert.equal(recoverKnobs({ dir: records, sysfsRoot: sysfs }).length, 1);
    assert.equal(snapshotKnobs(sysfs).run, 0);
  } finally {
    rmSync(sysfs, { recursive: true, force: true });
    rmSync(records, { recursive: true, force: true });
  }
});

test('a live writer\'s record is left alone by recovery', () => {
  const sysfs = fakeSysfs(HOST);
  const records = mkdtempSync(join(tmpdir(), 'pagefuse-records-'));
  const guard = KnobGuard.begin('test', { sysfsRoot: sysfs, recordDir: records });
  try {
    writeFileSync(join(sysfs, 'run'), '1\n');
    assert.deepEqual(recoverKnobs({ dir: records, sysfsRoot: sysfs }), []);
    assert.equal(snapshotKnobs(sysfs).run, 1);
    assert.equal(readdirSync(records).length, 1);
  } finally {
    guard.restore();
    rmSync(sysfs, { recursive: true, force: true });
    rmSync(records, { recursive: true, force: true });
  }
});

test('a guard records before the caller writes, and restore() puts the knobs back and drops the record', () => {
  const sysfs = fakeSysfs(HOST);
  const records = mkdtempSync(join(tmpdir(), 'pagefuse-records-'));
  try {
    const guard = KnobGuard.begin('bench', { sysfsRoot: sysfs, recordDir: records });
    const [file] = readdirSync(records);
    const record = JSON.parse(readFileSync(join(records, file), 'utf8')) as { owner: string; pid: number; knobs: KnobSnapshot };
    assert.deepEqual([record.owner, record.pid, record.knobs], ['bench', process.pid, HOST]);
    writeFileSync(join(sysfs, 'pages_to_scan'), '5000\n');
    guard.restore();
    assert.deepEqual([snapshotKnobs(sysfs), readdirSync(records)], [HOST, []]);
  } finally {
    rmSync(sysfs, { recursive: true, force: true });
    rmSync(records, { recursive: true, force: true });
  }
});

test('restoring an outer guard first puts back the guards taken inside it, newest first', () => {
  const sysfs = fakeSysfs(HOST);
  const records = mkdtempSync(join(tmpdir(), 'pagefuse-records-'));
  try {
    const outer = KnobGuard.begin('bench', { sysfsRoot: sysfs, recordDir: records });
    writeFileSync(join(sysfs, 'pages_to_scan'), '777\n');
    const inner = KnobGuard.begin('tune', { sysfsRoot: sysfs, recordDir: records, only: [] });
    inner.cover(['pages_to_scan']);
    writeFileSync(join(sysfs, 'pages_to_scan'), '20000\n');
    outer.restore();
    assert.deepEqual([snapshotKnobs(sysfs).pages_to_scan, inner.active, readdirSync(records)], [100, false, []]);
  } finally {
    rmSync(sysfs, { recursive: true, force: true });
    rmSync(records, { recursive: true, force: true });
  }
});

test("a writer that died inside a live guard (its child) is put back by that guard's restore, not replayed later", async () => {
  // The test harness sets 123 pages and runs a bench in a child, which records what it found (123) and is
  // killed after writing 20000. The harness then puts back the host's knobs. The child's record must go
  // with that restore: recovered by the next writer instead, it would set 123 again.
  const sysfs = fakeSysfs(HOST);
  const records = mkdtempSync(join(tmpdir(), 'pagefuse-records-'));
  try {
    const outer = KnobGuard.begin('test', { sysfsRoot: sysfs, recordDir: records });
    writeFileSync(join(sysfs, 'pages_to_scan'), '123\n');
    await deadRecord(records, sysfs, { ...HOST, pages_to_scan: 123 }, performance.timeOrigin + performance.now());
    writeFileSync(join(sysfs, 'pages_to_scan'), '20000\n');
    outer.restore();
    const next = KnobGuard.begin('tune', { sysfsRoot: sysfs, recordDir: records });
    next.release();
    assert.deepEqual([next.found.pages_to_scan, next.recovered, readdirSync(records)], [100, [], []]);
  } finally {
    rmSync(sysfs, { recursive: true, force: true });
    rmSync(records, { recursive: true, force: true });
  }
});
