// The one knob snapshot/restore (src/ksm/snapshot.ts): what a snapshot holds, the order and the advisor
// rule of a restore, crash records and their recovery. On fake sysfs trees (plain files in a temp dir),
// except the first test, which reads the real one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, symlinkSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
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
async function deadRecord(dir: string, sysfsRoot: string, knobs: KnobSnapshot, at: number, only?: string[]): Promise<string> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 10000)'], { stdio: 'ignore' });
  await once(child, 'spawn');
  const startTime = parseStat(readFileSync(`/proc/${child.pid}/stat`, 'utf8'))!.startTime;
  child.kill('SIGKILL');
  await once(child, 'exit');
  const record = { version: 1, owner: 'tune', pid: child.pid, startTime, at, sysfsRoot, knobs, ...(only === undefined ? {} : { only }) };
  writeFileSync(join(dir, `knobs-${child.pid}-1.json`), JSON.stringify(record));
  return join(dir, `knobs-${child.pid}-1.json`);
}

/** A fake sysfs at PARENT/ksm beside a file PARENT/victim, and a record directory; removed after fn. */
async function withVictim(fn: (sysfs: string, records: string, victim: string) => Promise<void>): Promise<void> {
  const parent = mkdtempSync(join(tmpdir(), 'pagefuse-victim-'));
  const sysfs = join(parent, 'ksm');
  const built = fakeSysfs({ ...HOST, run: 1, pages_to_scan: 2667 });
  try {
    mkdirSync(sysfs);
    for (const name of readdirSync(built)) writeFileSync(join(sysfs, name), readFileSync(join(built, name)));
    chmodSync(join(sysfs, 'pages_shared'), 0o444);
    writeFileSync(join(parent, 'victim'), 'root:x:0:0::/root:/bin/bash\n');
    const records = join(parent, 'records');
    mkdirSync(records, { mode: 0o700 });
    await fn(sysfs, records, join(parent, 'victim'));
  } finally {
    rmSync(parent, { recursive: true, force: true });
    rmSync(built, { recursive: true, force: true });
  }
}

/** What recovery said on stderr while fn ran. */
function stderrOf(t: { mock: { method: (o: object, m: string, f: (...a: unknown[]) => boolean) => unknown } }): string[] {
  const lines: string[] = [];
  t.mock.method(process.stderr, 'write', (chunk: unknown) => (lines.push(String(chunk)), true));
  return lines;
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

test('a record with a knob ../../etc/x is not applied, and the valid knobs of a good record still are', async (t) => {
  await withVictim(async (sysfs, records, victim) => {
    const bad = await deadRecord(records, sysfs, { ...HOST, '../victim': 'root:x:0:0::/root:/bin/bash\nmallory::0:0::/root:/bin/bash' }, 2);
    await deadRecord(records, sysfs, HOST, 1);
    const said = stderrOf(t);
    const recovered = recoverKnobs({ dir: records, sysfsRoot: sysfs });
    assert.deepEqual(
      [recovered.map((r) => r.written), readFileSync(victim, 'utf8'), snapshotKnobs(sysfs), readdirSync(records), said],
      [
        [[['pages_to_scan', 100], ['run', 0]]],
        'root:x:0:0::/root:/bin/bash\n',
        HOST,
        [bad.slice(records.length + 1)],
        [`pagefuse: skipped the knob record ${bad}: knob "../victim" is not the name of a KSM knob\n`],
      ],
    );
  });
});

test('a record with a newline in a knob value is skipped whole, none of its knobs written', async (t) => {
  await withVictim(async (sysfs, records) => {
    const bad = await deadRecord(records, sysfs, { ...HOST, pages_to_scan: '100\nmallory' as unknown as number }, 1);
    const said = stderrOf(t);
    assert.deepEqual(recoverKnobs({ dir: records, sysfsRoot: sysfs }), []);
    assert.deepEqual(
      [readFileSync(join(sysfs, 'pages_to_scan'), 'utf8'), readFileSync(join(sysfs, 'run'), 'utf8'), said],
      ['2667\n', '1\n', [`pagefuse: skipped the knob record ${bad}: knob pages_to_scan="100\\nmallory" is not a value of its form\n`]],
    );
  });
});

test("a record whose advisor_mode is not one of the kernel's words is skipped", async (t) => {
  await withVictim(async (sysfs, records) => {
    await deadRecord(records, sysfs, { ...HOST, advisor_mode: 'none\n' }, 1);
    stderrOf(t);
    assert.deepEqual([recoverKnobs({ dir: records, sysfsRoot: sysfs }), snapshotKnobs(sysfs).run], [[], 1]);
  });
});

test('a record for another sysfs root is not put back by a recovery for this one', async () => {
  await withVictim(async (sysfs, records) => {
    const other = fakeSysfs(HOST);
    try {
      await deadRecord(records, sysfs, HOST, 1);
      assert.deepEqual(recoverKnobs({ dir: records, sysfsRoot: other }), []);
      assert.deepEqual([snapshotKnobs(sysfs).run, readdirSync(records).length], [1, 1]);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});

test('a record file owned by another uid is skipped with a warning naming it', async (t) => {
  await withVictim(async (sysfs, records) => {
    const file = await deadRecord(records, sysfs, HOST, 1);
    chownSync(file, 65534, 65534);
    const said = stderrOf(t);
    assert.deepEqual(
      [recoverKnobs({ dir: records, sysfsRoot: sysfs }), snapshotKnobs(sysfs).run, said],
      [[], 1, [`pagefuse: skipped the knob record ${file}: it is owned by uid 65534, not by root\n`]],
    );
  });
});

test('a record file others can write is skipped', async (t) => {
  await withVictim(async (sysfs, records) => {
    const file = await deadRecord(records, sysfs, HOST, 1);
    chmodSync(file, 0o666);
    const said = stderrOf(t);
    assert.deepEqual(
      [recoverKnobs({ dir: records, sysfsRoot: sysfs }), snapshotKnobs(sysfs).run, said],
      [[], 1, [`pagefuse: skipped the knob record ${file}: it is writable by group and others (mode 0666)\n`]],
    );
  });
});

test('the records of a directory others can write are skipped, each named', async (t) => {
  await withVictim(async (sysfs, records) => {
    const file = await deadRecord(records, sysfs, HOST, 1);
    chmodSync(records, 0o703);
    const said = stderrOf(t);
    assert.deepEqual(
      [recoverKnobs({ dir: records, sysfsRoot: sysfs }), snapshotKnobs(sysfs).run, said],
      [[], 1, [`pagefuse: skipped the knob record ${file}: its directory ${records}: it is writable by others (mode 0703)\n`]],
    );
  });
});

test('a record that is a symbolic link is skipped', async (t) => {
  await withVictim(async (sysfs, records) => {
    const file = await deadRecord(records, sysfs, HOST, 1);
    const link = join(records, 'knobs-12345-1.json');
    writeFileSync(join(records, 'elsewhere'), readFileSync(file, 'utf8').replace(/"pid":\d+/, '"pid":12345'));
    rmSync(file);
    symlinkSync(join(records, 'elsewhere'), link);
    const said = stderrOf(t);
    assert.deepEqual([recoverKnobs({ dir: records, sysfsRoot: sysfs }), snapshotKnobs(sysfs).run, said], [[], 1, [`pagefuse: skipped the knob record ${link}: it is a symbolic link\n`]]);
  });
});
