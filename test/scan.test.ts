import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Region, PAGE_SIZE, scan, type ScanResult, type TotalsScanResult } from '../src/index.js';

// Page contents: 'u' unique, 'z' zero, a number n = the n-th shared content.
type Kind = 'u' | 'z' | number;

let uniqueCounter = 1;

/** Fills page i of `view` (a whole number of pages) with content for kinds[i]; returns nothing. */
function fill(view: Uint8Array, kinds: Kind[], salt = 0): void {
  assert.equal(view.byteLength, kinds.length * PAGE_SIZE);
  const words = new Uint32Array(view.buffer, view.byteOffset, view.byteLength / 4);
  const per = PAGE_SIZE / 4;
  kinds.forEach((k, i) => {
    const page = words.subarray(i * per, (i + 1) * per);
    if (k === 'z') return page.fill(0);
    // A cheap PRNG seeded per content: every word of the page depends on it.
    let x = k === 'u' ? 0x9e3779b9 ^ (uniqueCounter++ * 2654435761) : 0x1234567 + k * 7919 + salt * 104729;
    for (let w = 0; w < per; w++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      page[w] = x >>> 0;
    }
  });
}

function kinds(unique: number, zero: number, groups: number, copies: number): Kind[] {
  const out: Kind[] = [];
  for (let i = 0; i < unique; i++) out.push('u');
  for (let i = 0; i < zero; i++) out.push('z');
  for (let g = 0; g < groups; g++) for (let c = 0; c < copies; c++) out.push(g);
  // Interleave deterministically so copies are spread over the region.
  return out.map((k, i) => ({ k, r: (i * 7919) % out.length })).sort((a, b) => a.r - b.r).map((e) => e.k);
}

function regionWith(ks: Kind[], salt = 0): Region {
  const r = Region.alloc(ks.length * PAGE_SIZE, { hugepages: 'never' });
  fill(new Uint8Array(r.buffer), ks, salt);
  return r;
}

function counts(r: ScanResult) {
  return {
    pages: r.pages,
    zeroPages: r.zeroPages,
    uniquePages: r.uniquePages,
    duplicatePages: r.duplicatePages,
    collisions: r.collisions,
  };
}

test('exact and fast modes count unique, zero and duplicated pages exactly, on 1 and 2 threads', async () => {
  const region = regionWith(kinds(300, 40, 25, 4)); // 440 pages
  try {
    for (const mode of ['exact', 'fast'] as const) {
      for (const threads of [1, 2]) {
        const r = await scan(region, { mode, threads, useZeroPages: false });
        assert.deepEqual(counts(r), { pages: 440, zeroPages: 40, uniquePages: 325, duplicatePages: 75, collisions: 0 }, `${mode}/${threads}`);
        assert.equal(r.mergingPages, 100 + 40, 'all copies of shared contents, and the zero pages merged as one content');
        assert.equal(r.estimatedSavedPages, 75 + 39);
        assert.equal(r.estimatedSavedBytes, (75 + 39) * PAGE_SIZE);
        assert.equal(r.targets[0].duplicatePages, 75);
        assert.equal(r.targets[0].sharedWithOthers, 0);
        assert.deepEqual(r.sharing, [[75]]);
        assert.ok(r.bytesPerSecond > 0);
      }
    }
  } finally {
    region.dispose();
  }
});

test('with use_zero_pages every zero page is freed, and none counts as a merging page', async () => {
  const region = regionWith(kinds(300, 40, 25, 4));
  try {
    const z = await scan(region, { useZeroPages: true });
    assert.equal(z.estimatedSavedPages, 75 + 40);
    assert.equal(z.zeroMergedPages, 40);
    assert.equal(z.mergingPages, 100);
  } finally {
    region.dispose();
  }
});

/** 18 pages: 10 unique, 2 zero, 3 contents twice each. */
function smallBuffer(): ArrayBuffer {
  const ks = kinds(10, 2, 3, 2);
  const ab = new ArrayBuffer(ks.length * PAGE_SIZE);
  fill(new Uint8Array(ab), ks);
  return ab;
}

test('an ArrayBuffer is a target, counted exactly', async () => {
  const r1 = await scan(smallBuffer());
  assert.deepEqual(counts(r1), { pages: 18, zeroPages: 2, uniquePages: 13, duplicatePages: 3, collisions: 0 });
});

test('a typed-array view is a target covering only its range', async () => {
  const r2 = await scan(new Float64Array(smallBuffer(), 4 * PAGE_SIZE, (14 * PAGE_SIZE) / 8));
  assert.equal(r2.pages, 14);
});

test('a view of a Region covers only its range and pins the Region', async () => {
  const ks = kinds(10, 2, 3, 2);
  const region = regionWith([...ks, ...Array<Kind>(6).fill('u')]);
  try {
    const view = new Uint8Array(region.buffer, 0, 18 * PAGE_SIZE);
    const r3 = await scan(view);
    assert.deepEqual(counts(r3), { pages: 18, zeroPages: 2, uniquePages: 13, duplicatePages: 3, collisions: 0 });
    assert.equal(r3.targets[0].kind, 'region', 'a view of a Region pins the Region');
  } finally {
    region.dispose();
  }
});

test('one index across targets: per-target counts and the pairwise sharing matrix are exact', async () => {
  // a: 50 image pages + 20 own; b: the same 50 image pages + 10 shared with c + 5 zero; c: those 10 + 3 own, twice each.
  const image: Kind[] = Array.from({ length: 50 }, (_, i) => i);
  const bc: Kind[] = Array.from({ length: 10 }, (_, i) => 100 + i);
  const a = regionWith([...image, ...Array<Kind>(20).fill('u')]);
  const b = regionWith([...image, ...bc, ...Array<Kind>(5).fill('z')]);
  const cKinds: Kind[] = [...bc, 200, 201, 202, 200, 201, 202];
  const c = regionWith(cKinds);
  try {
    for (const mode of ['exact', 'fast'] as const) {
      const r = await scan([a, b, c], { mode, useZeroPages: true });
      assert.deepEqual(r.sharing, [
        [0, 50, 0],
        [50, 0, 10],
        [0, 10, 3],
      ], mode);
      assert.deepEqual(r.targets.map((t) => [t.pages, t.zeroPages, t.duplicatePages, t.sharedWithOthers, t.mergingPages]), [
        [70, 0, 0, 50, 50],
        [65, 5, 0, 60, 60],
        [16, 0, 3, 10, 16],
      ]);
      assert.equal(r.duplicatePages, 50 + 10 + 3);
      assert.equal(r.uniquePages, 50 + 20 + 10 + 3);
      assert.equal(r.estimatedSavedPages, 63 + 5);
    }
  } finally {
    a.dispose();
    b.dispose();
    c.dispose();
  }
});

/** 70 targets (two words of the per-target bitmask): 20 image pages in all, 10 layer pages per group of 4, 2 zero, 10 own. */
function fleetBuffers(): Uint8Array[] {
  return Array.from({ length: 70 }, (_, i) => {
    const ks: Kind[] = [...Array.from({ length: 20 }, (_, p) => p), ...Array.from({ length: 10 }, (_, p) => 1000 + 10 * Math.floor(i / 4) + p), 'z', 'z', ...Array<Kind>(10).fill('u')];
    const view = new Uint8Array(ks.length * PAGE_SIZE);
    fill(view, ks);
    return view;
  });
}

/** What a scan says about the whole host, and each target's part of it that needs no per-target set of contents. */
function hostTotals(r: ScanResult | TotalsScanResult) {
  return {
    pages: r.pages,
    zeroPages: r.zeroPages,
    uniquePages: r.uniquePages,
    duplicatePages: r.duplicatePages,
    estimatedSavedPages: r.estimatedSavedPages,
    estimate: r.estimate,
    mergingPages: r.mergingPages,
    collisions: r.collisions,
    sampling: r.sampling,
    targets: r.targets.map((t) => [t.pages, t.zeroPages, t.mergingPages, t.estimatedSavedPages]),
  };
}

test('without the per-target bitmask (sharing: false) the host totals are those of a scan with it, in exact, fast and sampled mode', async () => {
  const fleet = fleetBuffers();
  for (const mode of ['exact', 'fast', 'sampled'] as const) {
    const options = { mode, sampleRate: 4, threads: 2, useZeroPages: false, keepState: false };
    const withMask = await scan(fleet, options);
    const without = await scan(fleet, { ...options, sharing: false });
    assert.deepEqual(hostTotals(without), hostTotals(withMask), mode);
    if (mode !== 'sampled') assert.equal(without.duplicatePages, 69 * 20 + 17 * 3 * 10 + 1 * 10, mode); // 17 groups of 4 and one of 2
  }
});

test('without the per-target bitmask the index of 70 targets is the size of a one-target index over as many pages', async () => {
  const fleet = fleetBuffers();
  const one = new Uint8Array(fleet.reduce((a, v) => a + v.byteLength, 0));
  let at = 0;
  for (const v of fleet) {
    one.set(v, at);
    at += v.byteLength;
  }
  for (const mode of ['exact', 'sampled'] as const) {
    const options = { mode, sampleRate: 4, keepState: false };
    const without = await scan(fleet, { ...options, sharing: false });
    assert.equal(without.indexBytes, (await scan(one, options)).indexBytes, mode);
    assert.ok(without.indexBytes < (await scan(fleet, options)).indexBytes, `${mode}: smaller than with the bitmask`);
  }
});

test('without the per-target bitmask the sharing matrix and the per-target duplicate, unique and shared counts are null', async () => {
  const r = await scan(fleetBuffers().slice(0, 3), { sharing: false });
  // @ts-expect-error -- the result's type refuses it as a matrix too (TotalsScanResult)
  const matrix: number[][] = r.sharing;
  assert.equal(matrix, null);
  assert.deepEqual(r.targets.map((t) => [t.duplicatePages, t.uniquePages, t.sharedWithOthers]), [[null, null, null], [null, null, null], [null, null, null]]);
});

test('sampled mode reports an estimate within its own error bound', async () => {
  const ks = kinds(6000, 100, 1500, 3); // 3000 duplicates among 10600 pages
  const region = regionWith(ks);
  try {
    const exact = await scan(region);
    assert.equal(exact.duplicatePages, 3000);
    for (const sampleRate of [4, 16]) {
      const r = await scan(region, { mode: 'sampled', sampleRate });
      assert.ok(r.sampling);
      assert.equal(r.sampling.sampleRate, sampleRate);
      assert.equal(r.zeroPages, 100, 'zero pages are counted exactly, not sampled');
      assert.ok(
        Math.abs(r.duplicatePages - 3000) <= r.sampling.errorBoundPages,
        `1/${sampleRate}: ${r.duplicatePages} ± ${r.sampling.errorBoundPages}`,
      );
      assert.ok(r.sampling.errorBoundPages < 3000, 'the bound says something');
      assert.ok(r.indexBytes < exact.indexBytes / 2, 'a smaller index');
    }
  } finally {
    region.dispose();
  }
});

test('a forced collision (a 6-bit test hash) is caught by the byte compare', async () => {
  const region = regionWith(kinds(200, 3, 10, 3));
  try {
    for (const mode of ['exact', 'fast'] as const) {
      const r = await scan(region, { mode, hashBits: 6 });
      assert.ok(r.collisions > 0, `${mode}: ${r.collisions} collisions`);
      assert.deepEqual({ ...counts(r), collisions: 0 }, { pages: 233, zeroPages: 3, uniquePages: 210, duplicatePages: 20, collisions: 0 });
    }
  } finally {
    region.dispose();
  }
});

test('pages rewritten since the previous scan are volatile and left out of the estimate', async () => {
  const ks = kinds(40, 4, 8, 2);
  const region = regionWith(ks);
  try {
    for (const mode of ['exact', 'fast'] as const) {
      const first = await scan(region, { mode });
      assert.equal(first.volatilePages, 0);
      assert.equal(first.targets[0].volatilityChecked, false);
      const words = new Uint32Array(region.buffer);
      const dupPage = ks.indexOf(3);
      for (const page of [0, 1, 2, dupPage]) words[(page * PAGE_SIZE) / 4] ^= 0xffff;
      const second = await scan(region, { mode, previous: first });
      assert.equal(second.targets[0].volatilityChecked, true);
      assert.equal(second.volatilePages, 4, mode);
      assert.equal(second.pages, 60);
      assert.equal(second.zeroPages + second.uniquePages + second.duplicatePages + second.volatilePages, 60);
      assert.equal(JSON.stringify(second).includes('state'), false, 'checksums are never part of the data');
      const third = await scan(region, { mode, previous: second });
      assert.equal(third.volatilePages, 0, 'stable again');
    }
    const fast = await scan(region, { mode: 'fast' });
    const exact = await scan(region, { mode: 'exact', previous: fast });
    assert.equal(exact.targets[0].volatilityChecked, false, 'prefilter checksums are not page hashes: not compared');
    await assert.rejects(scan(region, { previous: {} as ScanResult }), { name: 'TypeError', message: /previous/ });
  } finally {
    region.dispose();
  }
});

/** A Region of `pages` pages, each of its own content. */
function uniqueRegion(pages: number): Region {
  const region = Region.alloc(pages * PAGE_SIZE, { hugepages: 'never' });
  const words = new Uint32Array(region.buffer);
  for (let p = 0; p < pages; p++) words[(p * PAGE_SIZE) / 4] = p + 1;
  return region;
}

test('progress is reported in order, up to the total', async () => {
  const pages = 64 * 1024; // 256 MiB
  const region = uniqueRegion(pages);
  try {
    const seen: number[] = [];
    let total = 0;
    const r = await scan(region, {
      threads: 1,
      onProgress: ({ bytesDone, bytesTotal }) => {
        seen.push(bytesDone);
        total = bytesTotal;
      },
    });
    assert.equal(r.uniquePages, pages);
    assert.equal(total, pages * PAGE_SIZE);
    assert.ok(seen.length >= 1);
    assert.equal(seen.at(-1), pages * PAGE_SIZE);
    assert.deepEqual(seen, [...seen].sort((x, y) => x - y));
  } finally {
    region.dispose();
  }
});

test('an AbortSignal aborted during the scan rejects it with an AbortError; the Region stays usable', async () => {
  const pages = 64 * 1024;
  const region = uniqueRegion(pages);
  try {
    const ac = new AbortController();
    const p = scan([region, region, region, region, region, region, region, region], { threads: 1, signal: ac.signal });
    setTimeout(() => ac.abort(), 5);
    await assert.rejects(p, { name: 'AbortError' });
    const again = await scan(region);
    assert.equal(again.uniquePages, pages, 'the region is usable after an aborted scan');
  } finally {
    region.dispose();
  }
});

test('an AbortSignal aborted before the call rejects the scan with an AbortError', async () => {
  const region = uniqueRegion(4);
  try {
    await assert.rejects(scan(region, { signal: AbortSignal.abort() }), { name: 'AbortError' });
  } finally {
    region.dispose();
  }
});

test('disposing a Region during its scan waits for the scan, which still completes', async () => {
  const pages = 32 * 1024;
  const region = Region.alloc(pages * PAGE_SIZE, { hugepages: 'never' });
  const words = new Uint32Array(region.buffer);
  for (let p = 0; p < pages; p++) words[(p * PAGE_SIZE) / 4] = p + 1;
  const pending = scan(region, { threads: 1 });
  region.dispose();
  const r = await pending;
  assert.equal(r.uniquePages, pages);
  await assert.rejects(scan(region), { code: 'ERR_REGION_DISPOSED' });
});

test('a detached ArrayBuffer is refused with a TypeError', async () => {
  const ab = new ArrayBuffer(3 * PAGE_SIZE);
  structuredClone(ab, { transfer: [ab] });
  await assert.rejects(scan(ab), { name: 'TypeError', message: /detached/ });
});

/** Two whole pages and 100 bytes more. */
function oddBuffer(): ArrayBuffer {
  const odd = new ArrayBuffer(2 * PAGE_SIZE + 100);
  new Uint8Array(odd).fill(7);
  return odd;
}

test('bytes past the last whole page are reported as tailBytes, not scanned and not dropped silently', async () => {
  const r = await scan(oddBuffer());
  assert.equal(r.pages, 2);
  assert.equal(r.targets[0].tailBytes, 100);
});

test('an unknown mode, zero threads or a sample rate that is no power of two is a RangeError', async () => {
  const odd = oddBuffer();
  await assert.rejects(scan(odd, { mode: 'quick' as 'fast' }), { name: 'RangeError', message: /quick/ });
  await assert.rejects(scan(odd, { threads: 0 }), { name: 'RangeError' });
  await assert.rejects(scan(odd, { mode: 'sampled', sampleRate: 3 }), { name: 'RangeError' });
});

test('a sharing option that is not a boolean is a TypeError', async () => {
  await assert.rejects(scan(oddBuffer(), { sharing: 'no' as unknown as boolean }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: /sharing/ });
});

test('no target, a string or a SharedArrayBuffer is a TypeError', async () => {
  await assert.rejects(scan([]), { name: 'TypeError' });
  await assert.rejects(scan('x' as unknown as ArrayBuffer), { name: 'TypeError' });
  await assert.rejects(scan(new SharedArrayBuffer(PAGE_SIZE) as unknown as ArrayBuffer), { name: 'TypeError', message: /SharedArrayBuffer/ });
});

test('a pid that does not exist is ESRCH; a negative pid is a RangeError', async () => {
  await assert.rejects(scan({ pid: 4194000 }), { code: 'ESRCH', message: /does not exist/ });
  await assert.rejects(scan({ pid: -1 }), { name: 'RangeError' });
});

test('scan() hashes off the event loop: a timer set after the call fires before the scan settles', async () => {
  // How long the loop may stall while a scan runs is a speed target: bench/responsiveness.ts measures it.
  const pages = (512 * 1024 * 1024) / PAGE_SIZE;
  const region = Region.alloc(pages * PAGE_SIZE, { hugepages: 'never' });
  try {
    const words = new Uint32Array(region.buffer);
    for (let p = 0; p < pages; p++) words[(p * PAGE_SIZE) / 4] = (p & 0xffff) + 1; // 64 Ki contents, 2 copies each
    const order: string[] = [];
    const scanned = scan(region).then((r) => (order.push('scan settled'), r));
    setTimeout(() => order.push('timer fired'), 0);
    const r = await scanned;
    assert.equal(r.pages, pages);
    assert.equal(r.uniquePages, 65536);
    assert.equal(r.duplicatePages, pages - 65536);
    assert.deepEqual(order, ['timer fired', 'scan settled']);
  } finally {
    region.dispose();
  }
});
