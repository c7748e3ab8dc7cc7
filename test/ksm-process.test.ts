// processKsm and the process list: every ksm_stat format the kernel has printed, from fixtures, and the
// error paths on the real /proc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PAGE_SIZE, processKsm, listKsmProcesses, parseKsmStat } from '../src/index.js';
import { requireRoot } from './helpers/root.js';

const KB = PAGE_SIZE;

/** /proc/<pid>/ksm_stat as each kernel version printed it (fs/proc/base.c). */
const FORMATS: Record<string, string> = {
  '6.1': 'ksm_rmap_items 40\n',
  '6.4': 'ksm_rmap_items 40\nksm_merging_pages 30\nksm_process_profit 120320\n',
  '6.6': 'ksm_rmap_items 40\nksm_merging_pages 30\nksm_process_profit 140800\nksm_zero_pages 5\n',
  '6.10': 'ksm_rmap_items 40\nksm_zero_pages 5\nksm_merging_pages 30\nksm_process_profit 140800\n',
  '6.14': 'ksm_rmap_items 40\nksm_zero_pages 5\nksm_merging_pages 30\nksm_process_profit 140800\nksm_merge_any: yes\nksm_mergeable: yes\n',
};

let root: string;
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'pagefuse-fake-proc-'));
});
test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function fakePid(pid: number, files: Record<string, string>): Promise<void> {
  await mkdir(join(root, String(pid)), { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(join(root, String(pid), name), text);
}

const EXPECTED = {
  '6.1': { rmapItems: 40, zeroPages: 0, mergingPages: 30, profitBytes: 30 * KB - 40 * 64, mergeAny: null, mergeable: null },
  '6.4': { rmapItems: 40, zeroPages: 0, mergingPages: 30, profitBytes: 120320, mergeAny: null, mergeable: null },
  '6.6': { rmapItems: 40, zeroPages: 5, mergingPages: 30, profitBytes: 140800, mergeAny: null, mergeable: null },
  '6.10': { rmapItems: 40, zeroPages: 5, mergingPages: 30, profitBytes: 140800, mergeAny: null, mergeable: null },
  '6.14': { rmapItems: 40, zeroPages: 5, mergingPages: 30, profitBytes: 140800, mergeAny: true, mergeable: true },
};

let nextPid = 100;
for (const [version, text] of Object.entries(FORMATS)) {
  test(`ksm_stat as Linux ${version} prints it parses`, async () => {
    const pid = nextPid++;
    await fakePid(pid, { ksm_stat: text, ksm_merging_pages: '30\n' });
    assert.deepEqual(await processKsm(pid, { procRoot: root }), { pid, ...EXPECTED[version as keyof typeof EXPECTED] });
  });
}

test('without ksm_stat (Linux 5.19), ksm_merging_pages is read instead', async () => {
  await fakePid(200, { ksm_merging_pages: '12\n' });
  assert.deepEqual(await processKsm(200, { procRoot: root }), {
    pid: 200,
    rmapItems: null,
    zeroPages: 0,
    mergingPages: 12,
    profitBytes: 12 * KB,
    mergeAny: null,
    mergeable: null,
  });
});

test('an empty ksm_stat (a zombie or kernel thread, no mm) reads as all zeros', async () => {
  await fakePid(201, { ksm_stat: '', ksm_merging_pages: '0\n' });
  assert.deepEqual(await processKsm(201, { procRoot: root }), {
    pid: 201,
    rmapItems: 0,
    zeroPages: 0,
    mergingPages: 0,
    profitBytes: 0,
    mergeAny: false,
    mergeable: false,
  });
});

test('parseKsmStat keeps negative profit and skips lines and values it does not know', () => {
  assert.deepEqual(parseKsmStat('ksm_process_profit -8192\nksm_merge_any: no\nsomething_new 5\nksm_mergeable: maybe\n'), {
    profitBytes: -8192,
    mergeAny: false,
  });
});

test('a kernel with neither file is ENOKSM', async () => {
  await fakePid(300, { comm: 'x\n' });
  await assert.rejects(processKsm(300, { procRoot: root }), { code: 'ENOKSM', message: /need Linux 5\.19\+/ });
});

test('a pid that does not exist is ESRCH', async () => {
  await assert.rejects(processKsm(301, { procRoot: root }), { code: 'ESRCH', message: 'process 301 does not exist (it may have exited)' });
});

test('a pid that is not a whole number from 1 is ERR_OUT_OF_RANGE', async () => {
  for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 23]) {
    await assert.rejects(processKsm(bad), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message: /pid must be 'self' or a process id/ });
  }
});

test('a pid given as a string is ERR_INVALID_ARG_TYPE', async () => {
  await assert.rejects(processKsm('12' as never), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: /got the string "12"$/ });
});

test("an unreadable ksm_stat says EACCES with what's needed", async () => {
  await mkdir(join(root, '400'));
  // A write-only sysfs attribute: reading it is refused even to root, like another user's ksm_stat.
  await symlink('/sys/bus/platform/drivers_probe', join(root, '400', 'ksm_stat'));
  await assert.rejects(processKsm(400, { procRoot: root }), {
    code: 'EACCES',
    message: `reading ${root}/400/ksm_stat needs root or the same user as process 400`,
  });
});

test("the real /proc: this process's own statistics", async () => {
  const self = await processKsm('self');
  assert.equal(self.pid, process.pid);
  assert.equal(typeof self.rmapItems, 'number');
});

test("the real /proc: another process's statistics (init)", async (t) => {
  if (!requireRoot(t, "reads init's ksm_stat")) return;
  assert.equal(typeof (await processKsm(1)).mergingPages, 'number');
});

test('the real /proc: a process that has exited is ESRCH', async () => {
  const child = spawn('true');
  const pid = child.pid!;
  await once(child, 'exit');
  await new Promise((resolve) => setTimeout(resolve, 50));
  await assert.rejects(processKsm(pid), { code: 'ESRCH' });
});

/** A fake /proc with processes 10-14: two with KSM pages, one registered only, a kernel thread, one unreadable. */
async function withFakeList(fn: (proc: string) => Promise<void>): Promise<void> {
  const proc = await mkdtemp(join(tmpdir(), 'pagefuse-fake-proc-'));
  try {
    const add = async (pid: number, stat: string, comm: string) => {
      await mkdir(join(proc, String(pid)));
      await writeFile(join(proc, String(pid), 'ksm_stat'), stat);
      await writeFile(join(proc, String(pid), 'comm'), `${comm}\n`);
    };
    await add(10, 'ksm_rmap_items 10\nksm_zero_pages 0\nksm_merging_pages 2\nksm_process_profit 7552\nksm_merge_any: no\nksm_mergeable: yes\n', 'small');
    await add(11, 'ksm_rmap_items 100\nksm_zero_pages 50\nksm_merging_pages 40\nksm_process_profit 362240\nksm_merge_any: yes\nksm_mergeable: yes\n', 'qemu-system-x86');
    await add(12, 'ksm_rmap_items 5\nksm_zero_pages 0\nksm_merging_pages 0\nksm_process_profit -320\nksm_merge_any: no\nksm_mergeable: yes\n', 'registered');
    await add(13, '', 'kthreadd');
    await mkdir(join(proc, '14'));
    await symlink('/sys/bus/platform/drivers_probe', join(proc, '14', 'ksm_stat'));
    await mkdir(join(proc, 'sys'));
    await fn(proc);
  } finally {
    await rm(proc, { recursive: true, force: true });
  }
}

test('the process list holds only processes with KSM pages, largest profit first, with their names', async () => {
  await withFakeList(async (proc) => {
    const list = await listKsmProcesses({ procRoot: proc });
    assert.deepEqual(
      list.processes.map((p) => [p.pid, p.name, p.mergingPages, p.zeroPages, p.profitBytes]),
      [
        [11, 'qemu-system-x86', 40, 50, 362240],
        [10, 'small', 2, 0, 7552],
      ],
    );
  });
});

test('the process list counts the processes it could not read', async () => {
  await withFakeList(async (proc) => {
    assert.equal((await listKsmProcesses({ procRoot: proc })).unreadable, 1);
  });
});

test('with includeRegistered, the process list adds registered processes without KSM pages', async () => {
  await withFakeList(async (proc) => {
    const all = await listKsmProcesses({ procRoot: proc, includeRegistered: true });
    assert.deepEqual(all.processes.map((p) => p.pid), [11, 10, 12]);
  });
});
