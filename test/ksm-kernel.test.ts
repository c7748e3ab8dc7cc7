// The real-kernel suite, shaped like tools/testing/selftests/mm/ksm_tests.c and ksm_functional_tests.c:
// one behaviour per test, exact page counts from /proc/self/ksm_stat, every knob put back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { readFile, mkdtemp, writeFile, symlink, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ksm, Region, PAGE_SIZE, processKsm, setMergeAny, getMergeAny, profitFromCounters } from '../src/index.js';
import { mergeAndWait, selfKsm, withKsm } from './helpers/ksm.js';

const INDEX = new URL('../src/index.ts', import.meta.url).pathname;

function filledRegion(pages: number, byte: number): Region {
  const r = Region.alloc(pages * PAGE_SIZE, { hugepages: 'never' });
  new Uint8Array(r.buffer).fill(byte);
  return r;
}

test('N identical pages merge into exactly N merging pages', async (t) => {
  await withKsm(t, async (ksm) => {
    const before = await selfKsm();
    assert.equal(before.mergingPages, 0);
    using r = filledRegion(64, 0x5a);
    await mergeAndWait(ksm, r);
    const after = await selfKsm();
    assert.equal(after.mergingPages, 64);
    assert.equal(after.zeroPages, 0);
    assert.equal(after.rmapItems, 64);
    assert.equal(after.mergeable, true);
    const { counters } = await ksm.read();
    assert.ok(counters.pages_shared! >= 1 && counters.pages_sharing! >= 63, JSON.stringify(counters));
  });
});

test('a write to a merged page unmerges only that page and reads back what was written', async (t) => {
  await withKsm(t, async (ksm) => {
    using r = filledRegion(32, 0x5a);
    await mergeAndWait(ksm, r);
    assert.equal((await selfKsm()).mergingPages, 32);
    const v = new Uint8Array(r.buffer);
    v[5 * PAGE_SIZE + 7] = 0x11;
    assert.equal(v[5 * PAGE_SIZE + 7], 0x11);
    await mergeAndWait(ksm, undefined, { scans: 2 });
    assert.equal((await selfKsm()).mergingPages, 31);
    for (let p = 0; p < 32; p++) {
      const page = v.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
      const odd = page.findIndex((b, i) => b !== (p === 5 && i === 7 ? 0x11 : 0x5a));
      assert.equal(odd, -1, `page ${p} byte ${odd}`);
    }
  });
});

test("advise('unmergeable') unmerges everything, also next to pages that never merged", async (t) => {
  await withKsm(t, async (ksm) => {
    using r = filledRegion(48, 0x33);
    const v = new Uint8Array(r.buffer);
    // 16 unique pages after 32 identical ones: the case where the count lags (docs/kernel.md).
    for (let p = 32; p < 48; p++) v.set(randomBytes(PAGE_SIZE), p * PAGE_SIZE);
    await mergeAndWait(ksm, r);
    assert.equal((await selfKsm()).mergingPages, 32);
    r.advise('unmergeable');
    // The count reaches 0 once ksmd has passed over the range again: the pass that finds no mergeable
    // area left drops this mm, after which ksmd idles. That pass need not count as a full scan: with no
    // other mm left in ksmd's list it stops before wrapping (CI once saw 0 full scans in 30 s with
    // run=1), so what is waited for is this process's own count, for as long as two passes may take.
    let after = await selfKsm();
    for (const deadline = Date.now() + 60_000; (after.mergingPages !== 0 || after.rmapItems !== 0) && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      after = await selfKsm();
    }
    assert.equal(after.mergingPages, 0);
    assert.equal(after.rmapItems, 0);
    assert.equal(v.subarray(0, 32 * PAGE_SIZE).every((b) => b === 0x33), true);
  });
});

test('zero pages with use_zero_pages=0 merge with each other: N merging pages', async (t) => {
  await withKsm(t, async (ksm) => {
    using r = filledRegion(40, 0);
    await mergeAndWait(ksm, r);
    const s = await selfKsm();
    assert.equal(s.mergingPages, 40);
    assert.equal(s.zeroPages, 0);
  });
});

test('zero pages with use_zero_pages=1 map the kernel zero page: ksm_zero_pages N, merging 0', async (t) => {
  await withKsm(
    t,
    async (ksm) => {
      using r = filledRegion(40, 0);
      await mergeAndWait(ksm, r);
      const s = await selfKsm();
      assert.equal(s.zeroPages, 40);
      assert.equal(s.mergingPages, 0);
      const { counters } = await ksm.read();
      assert.ok(counters.ksm_zero_pages! >= 40);
      r.advise('unmergeable');
      assert.equal((await selfKsm()).zeroPages, 0);
    },
    { settings: { use_zero_pages: 1 } },
  );
});

test('random content survives merge, random writes and unmerge byte for byte', async (t) => {
  await withKsm(t, async (ksm) => {
    const pages = 64;
    const groups = [randomBytes(PAGE_SIZE), randomBytes(PAGE_SIZE), randomBytes(PAGE_SIZE), randomBytes(PAGE_SIZE)];
    using r = Region.alloc(pages * PAGE_SIZE, { hugepages: 'never' });
    const v = new Uint8Array(r.buffer);
    for (let p = 0; p < pages; p++) v.set(groups[p % 4], p * PAGE_SIZE);
    const expected = Uint8Array.from(v);
    await mergeAndWait(ksm, r);
    assert.equal((await selfKsm()).mergingPages, pages);

    const touched = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const p = randomInt(8) * 8 + randomInt(2); // at most 16 distinct pages: every group keeps 8+ sharers
      const at = p * PAGE_SIZE + randomInt(PAGE_SIZE);
      const b = randomInt(256);
      v[at] = b;
      expected[at] = b;
    }
    for (let p = 0; p < pages; p++) {
      if (!Buffer.from(v.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE)).equals(groups[p % 4])) touched.add(p);
    }
    assert.equal(Buffer.compare(Buffer.from(v), Buffer.from(expected)), 0);
    await mergeAndWait(ksm, undefined, { scans: 2 });
    assert.equal((await selfKsm()).mergingPages, pages - touched.size);

    r.advise('unmergeable');
    assert.equal(Buffer.compare(Buffer.from(v), Buffer.from(expected)), 0);
  });
});

test('profitBytes is the kernel general_profit, and the formula over the counters gives the same', async (t) => {
  await withKsm(
    t,
    async (ksm) => {
      using r = filledRegion(64, 0x77);
      new Uint8Array(r.buffer).fill(0, 0, 16 * PAGE_SIZE);
      new Uint8Array(r.buffer).set(randomBytes(8 * PAGE_SIZE), 16 * PAGE_SIZE);
      // Zero pages merge on the region's second pass; their rmap_items are freed on the third.
      await mergeAndWait(ksm, r, { scans: 3 });
      await ksm.stop(); // counters hold still, so the files read together
      const state = await ksm.read();
      assert.equal(typeof state.counters.general_profit, 'number');
      assert.equal(state.profitBytes, state.counters.general_profit);
      const { general_profit: _, ...older } = state.counters;
      assert.equal(profitFromCounters(older), state.counters.general_profit);

      const self = await selfKsm();
      // A page merged with the kernel's zero page gives its rmap_item back: 64 - 16 items remain.
      assert.deepEqual([self.mergingPages, self.zeroPages, self.rmapItems], [40, 16, 48]);
      assert.equal(self.profitBytes, (40 + 16) * PAGE_SIZE - 48 * 64);
    },
    { settings: { use_zero_pages: 1 } },
  );
});

async function childReady(child: ChildProcess): Promise<string> {
  let out = '';
  child.stdout!.setEncoding('utf8');
  for await (const chunk of child.stdout!) {
    out += chunk;
    if (out.includes('\n')) return out.trim();
  }
  throw new Error(`child exited before it was ready (code ${child.exitCode})`);
}

test('setMergeAny(true) merges memory that was never advised (in a child)', async (t) => {
  await withKsm(t, async (ksm) => {
    // The child sets PR_SET_MEMORY_MERGE, maps 300 identical pages without madvise and waits.
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `const m = await import(process.argv[1]);
         m.setMergeAny(true);
         const r = m.Region.alloc(300 * m.PAGE_SIZE, { hugepages: 'never' });
         new Uint8Array(r.buffer).fill(0x42);
         console.log(m.getMergeAny());
         setInterval(() => {}, 1000);`,
        INDEX,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      assert.equal(await childReady(child), 'true');
      const stat = await processKsm(child.pid!);
      assert.equal(stat.mergeAny, true);
      assert.equal(stat.mergeable, true);
      await mergeAndWait(ksm, undefined, { scans: 2 });
      // The region is one VMA of 1200 kB; its smaps KSM line counts only its pages, none of node's own.
      const smaps = await readFile(`/proc/${child.pid}/smaps`, 'utf8');
      const vmas = smaps.split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/).filter((b) => /\nSize:\s+1200 kB\n/.test(b));
      const ours = vmas.filter((b) => /\nKSM:\s+1200 kB\n/.test(b));
      assert.equal(ours.length, 1, `the 300-page region, fully merged, in:\n${vmas.join('\n---\n')}`);
      assert.match(ours[0], /VmFlags:.* mg/);
      assert.ok((await processKsm(child.pid!)).mergingPages >= 300);
    } finally {
      child.kill();
      await once(child, 'exit').catch(() => undefined);
    }
  });
});

test('a child spawned after setMergeAny(true) reports ksm_merge_any: yes', async (t) => {
  await withKsm(t, async () => {
    setMergeAny(true);
    let child: ChildProcess | undefined;
    try {
      assert.equal(getMergeAny(), true);
      child = spawn('sleep', ['30'], { stdio: 'ignore' });
      await once(child, 'spawn');
      // exec replaces the mm; give it a moment to finish before reading the new one.
      let stat = await processKsm(child.pid!);
      for (let i = 0; i < 50 && !(await readFile(`/proc/${child.pid}/comm`, 'utf8')).startsWith('sleep'); i++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      stat = await processKsm(child.pid!);
      assert.equal(stat.mergeAny, true);
      assert.match(await readFile(`/proc/${child.pid}/ksm_stat`, 'utf8'), /^ksm_merge_any: yes$/m);
    } finally {
      setMergeAny(false);
      child?.kill();
    }
    assert.equal(getMergeAny(), false);
    assert.equal((await selfKsm()).mergeAny, false);
  });
});

test('merge_across_nodes: refused with EBUSY while pages are shared, switched with unmergeFirst, run put back', async (t) => {
  await withKsm(t, async (ksm) => {
    using r = filledRegion(16, 0x99);
    await mergeAndWait(ksm, r);
    assert.equal((await selfKsm()).mergingPages, 16);
    await assert.rejects(ksm.setMergeAcrossNodes(false), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'EBUSY');
      assert.match(err.message, /pages are shared; unmerge first \(pagefuse set merge_across_nodes=0 --unmerge-first/);
      return true;
    });
    assert.equal(await ksm.get('merge_across_nodes'), 1);
    assert.equal(await ksm.get('run'), 1);

    // ksmd re-merges two passes after run comes back: slow it so the unmerge can be seen.
    await ksm.configure({ sleep_millisecs: 500 });
    await ksm.setMergeAcrossNodes(false, { unmergeFirst: true, timeoutMs: 30_000 });
    assert.equal(await ksm.get('merge_across_nodes'), 0);
    assert.equal(await ksm.get('run'), 1, 'run is what it was before');
    assert.equal((await selfKsm()).mergingPages, 0, 'run=2 unmerged everything');
    await ksm.configure({ sleep_millisecs: 1 });
    // ksmd merges again with the new setting (one node here, so nothing changes for merging).
    await mergeAndWait(ksm, undefined, { scans: 2 });
    assert.equal((await selfKsm()).mergingPages, 16);

    await ksm.setMergeAcrossNodes(true, { unmergeFirst: true });
    assert.equal(await ksm.get('merge_across_nodes'), 1);
    assert.equal(await ksm.get('run'), 1);
  });
});

test("the kernel's own EBUSY is mapped too (a tree whose pages_shared reads 0, the real merge_across_nodes)", async (t) => {
  await withKsm(t, async (ksm) => {
    using r = filledRegion(16, 0x98);
    await mergeAndWait(ksm, r);
    assert.ok(((await ksm.get('pages_shared')) as number) > 0);
    const dir = await mkdtemp(join(tmpdir(), 'pagefuse-ksm-'));
    try {
      await writeFile(join(dir, 'run'), '1\n');
      await writeFile(join(dir, 'sleep_millisecs'), '20\n');
      await writeFile(join(dir, 'pages_shared'), '0\n');
      await symlink('/sys/kernel/mm/ksm/merge_across_nodes', join(dir, 'merge_across_nodes'));
      const fake = new Ksm({ sysfsRoot: dir });
      await assert.rejects(fake.configure({ sleep_millisecs: 5, merge_across_nodes: 0 }), {
        code: 'EBUSY',
        message: /pages are shared; unmerge first/,
      });
      assert.equal(await readFile(join(dir, 'sleep_millisecs'), 'utf8'), '20\n', 'the earlier write was put back');
      assert.equal(await ksm.get('merge_across_nodes'), 1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

test('unmergeAll splits every merged page and leaves run=2', async (t) => {
  await withKsm(t, async (ksm) => {
    using r = filledRegion(16, 0x66);
    await mergeAndWait(ksm, r);
    await ksm.unmergeAll({ timeoutMs: 30_000 });
    const { settings, counters } = await ksm.read();
    assert.equal(settings.run, 2);
    assert.equal(counters.pages_shared, 0);
    assert.equal(counters.pages_sharing, 0);
    assert.equal((await selfKsm()).mergingPages, 0);
  });
});

test('waitForFullScans counts the full scans after unmergeAll reset full_scans to 0', async (t) => {
  await withKsm(t, async (ksm) => {
    using r = filledRegion(16, 0x66);
    await mergeAndWait(ksm, r);
    assert.ok(((await ksm.get('full_scans')) as number) >= 2);
    await ksm.unmergeAll({ timeoutMs: 30_000 });
    assert.equal(await ksm.get('full_scans'), 0, 'run=2 resets full_scans (docs/kernel.md)');
    await ksm.start();
    await ksm.waitForFullScans(3, { timeoutMs: 30_000 });
    assert.equal((await selfKsm()).mergingPages, 16);
  });
});

test('waitForFullScans times out with ETIMEDOUT while ksmd is stopped, saying why', async (t) => {
  await withKsm(t, async (ksm) => {
    await ksm.stop();
    await assert.rejects(ksm.waitForFullScans(1, { timeoutMs: 100 }), {
      code: 'ETIMEDOUT',
      message: /completed 0 of 1 full scans in 100 ms \(run=0\).*idles while no memory is registered/,
    });
  });
});

test('waitForFullScans rejects with an AbortError when its signal aborts, before or while it waits', async (t) => {
  await withKsm(t, async (ksm) => {
    await ksm.stop();
    await assert.rejects(ksm.waitForFullScans(1, { signal: AbortSignal.timeout(50) }), { name: 'AbortError' });
    const ac = new AbortController();
    const p = ksm.waitForFullScans(1, { signal: ac.signal });
    ac.abort();
    await assert.rejects(p, { name: 'AbortError' });
  });
});
