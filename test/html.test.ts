/// <reference lib="dom" />
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { PNG } from 'pngjs';
import { runCliAsync } from './helpers/cli.js';
import { startMergedChild, waitMerging } from './helpers/report-ksm.js';
import { RUNNING_SETTINGS, withKsm } from './helpers/ksm.js';
import { fromHistoryJson, toHistoryJson, type HistoryJson } from '../src/report/history-file.js';
import { reportHtml } from '../src/report/html.js';
import { processSharing } from '../src/report/sharing.js';
import { hostSource } from '../src/report/source.js';
import { processKsm } from '../src/ksm/process.js';
import { Workload } from '../src/workload/workload.js';
import { PAGE_SIZE } from '../src/region.js';
import { requireRoot } from './helpers/root.js';
import { setTimeout as sleep } from 'node:timers/promises';

// Debian's chromium, never a test tool's own download (.ci/run installs it).
const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'];

const EVIL = '<script>alert(1)</script>&"';

/** Ten samples a second apart: savings climbing 0 → 90 MiB, ksmd at 10-50 % of a CPU, two tuner decisions. */
function history(): HistoryJson {
  const t0 = Date.UTC(2026, 10, 26, 7, 0, 0);
  const samples: HistoryJson['samples'] = [];
  for (let i = 0; i < 10; i++) {
    const sharing = i * 2560; // 10 MiB more each second
    samples.push({
      t: t0 + i * 1000,
      page_size: 4096,
      settings: { run: 1, pages_to_scan: 2000, sleep_millisecs: 10 },
      counters: { pages_shared: i * 100, pages_sharing: sharing, pages_unshared: 1000, pages_volatile: 0, full_scans: i, general_profit: sharing * 4096 - (1000 + i * 100 + sharing) * 64 },
      ksmd_cpu_seconds: 10 + [0, 0.1, 0.3, 0.6, 1.0, 1.5, 1.8, 2.0, 2.2, 2.3][i],
      processes: [
        { pid: 4242, name: 'guest-web', vm: true, merging_pages: sharing, zero_pages: 0, rmap_items: 1000 + sharing, profit_bytes: sharing * 4096 - (1000 + sharing) * 64 },
        { pid: 77, name: EVIL, vm: false, merging_pages: 0, zero_pages: 0, rmap_items: 10, profit_bytes: -640 },
      ],
      nodes: [{ id: 0, ksm_pages: i * 100 }],
    });
  }
  return {
    version: 1,
    samples,
    decisions: [
      { t: t0 + 500, policy: 'adaptive', settings: { pages_to_scan: 20000, sleep_millisecs: 0 }, reason: 'new VM 4242' },
      { t: t0 + 7000, policy: 'adaptive', settings: { pages_to_scan: 500, sleep_millisecs: 20 }, reason: 'converged' },
    ],
    sharing: { labels: ['guest-web', 'guest-db', 'guest-ci'], pages: [[0, 900, 300], [900, 0, 50], [300, 50, 0]] },
  };
}

function workdir(): string {
  return mkdtempSync(join(tmpdir(), 'pagefuse-html-'));
}

test('report --html from a tuner history, rendered in headless chromium', async (t) => {
  const dir = workdir();
  const profile = mkdtempSync(join(tmpdir(), 'pagefuse-chromium-'));
  try {
    writeFileSync(join(dir, 'history.json'), JSON.stringify(history()));
    const out = join(dir, 'report.html');
    const r = await runCliAsync(['report', '--html', out, '--from', join(dir, 'history.json')]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `pagefuse report: wrote ${out} (10 samples)\n`);
    const html = readFileSync(out, 'utf8');
    await t.test('the page holds no script, stylesheet, image or url() to fetch', () => {
    assert.doesNotMatch(html, /<script|<link|<img|@import|url\(/i, 'no script, stylesheet, image or url() to fetch');
    });
    await t.test('a process name cannot inject markup', () => {
    assert.equal(html.includes(EVIL), false, 'a process name cannot inject markup');
    });

    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: FLAGS,
      headless: true,
      viewport: { width: 1000, height: 900 },
      deviceScaleFactor: 1,
    });
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      const requests: string[] = [];
      page.on('request', (req) => requests.push(req.url()));
      await page.goto(pathToFileURL(out).href);
      await t.test('the page fetches nothing but itself', () => {
      assert.deepEqual(requests, [pathToFileURL(out).href], 'the page fetches nothing but itself');
      });

      const dom = await page.evaluate(() => {
        const line = document.querySelector<SVGPathElement>('#profit-line')!;
        const cpu = document.querySelector<SVGPathElement>('#cpu-line')!;
        const box = line.getBBox();
        const rows = Array.from(document.querySelectorAll('#vm-table tbody tr'), (tr) => Array.from(tr.children, (td) => td.textContent));
        return {
          chart: document.querySelector('#savings-chart')?.getBoundingClientRect().width,
          profitLength: line.getTotalLength(),
          profitBox: { width: box.width, height: box.height },
          cpuLength: cpu.getTotalLength(),
          decisions: document.querySelectorAll('#savings-chart .decision').length,
          cells: document.querySelectorAll('#sharing-heatmap rect.cell').length,
          rows,
          scripts: document.scripts.length,
          cards: Array.from(document.querySelectorAll('.card .v'), (e) => e.textContent),
        };
      });
      await t.test('the savings chart is drawn', () => {
      assert.equal(dom.chart, 880);
      assert.ok(dom.profitBox.width > 700, `the savings line spans the time axis (${dom.profitBox.width}px)`);
      assert.ok(dom.profitBox.height > 200, `and climbs the plot (${dom.profitBox.height}px)`);
      assert.ok(dom.profitLength > 750 && dom.cpuLength > 750, JSON.stringify(dom));
      assert.equal(dom.decisions, 2);
      });
      await t.test('the heat map has a cell per VM pair', () => {
      assert.equal(dom.cells, 9);
      });
      await t.test('the DOM holds no script', () => {
      assert.equal(dom.scripts, 0);
      });
      await t.test('the VM table lists each VM with its figures', () => {
      assert.deepEqual(dom.rows, [
        ['4242', 'guest-web (VM)', '90.0 MiB', '-', '90.0 MiB', '0 B', '?', '23040', '1.5 MiB', '88.5 MiB'],
        ['77', EVIL, '0 B', '-', '0 B', '0 B', '?', '0', '640 B', '-640 B'],
      ]);
      });
      await t.test('the summary cards show the last sample', () => {
      // Last sample: 23040 pages sharing (90 MiB, all of it guest-web's share), 24940 rmap items + 900
      // stable nodes (1.6 MiB), general_profit 88.5 MiB, ratio 23040 / 900; no THP figures in a history
      // without them, no scan estimate; ksmd used 2.3 CPU-seconds over 9 s.
      assert.deepEqual(dom.cards, ['90.0 MiB', '90.0 MiB', '0 B', '? (needs root)', '1.6 MiB', '88.5 MiB', '-', '25.60', '25.6 %', '9']);
      });

      await t.test('the screenshot shows the savings line in blue and the ksmd CPU line in orange', async () => {
      const png = PNG.sync.read(await page.locator('#savings-chart').screenshot());
      assert.equal(png.width, 880);
      assert.ok(png.height === 320 || png.height === 321, `320 px tall, +1 when laid out at a fractional y (${png.height})`);
      let blue = 0;
      let orange = 0;
      let nonWhite = 0;
      for (let i = 0; i < png.data.length; i += 4) {
        const [r, g, b] = [png.data[i], png.data[i + 1], png.data[i + 2]];
        if (r < 250 || g < 250 || b < 250) nonWhite++;
        if (b > 180 && r < 90 && g > 70 && g < 130) blue++;
        if (r > 200 && g > 70 && g < 120 && b < 60) orange++;
      }
      assert.ok(blue > 1500, `the savings line is drawn in blue (${blue} px)`);
      assert.ok(orange > 1000, `the ksmd CPU line is drawn in orange (${orange} px)`);
      assert.ok(nonWhite > png.width * png.height * 0.3, `the chart is not blank (${nonWhite} non-white px)`);
      });

      await t.test('the whole page is laid out', async () => {
      const full = PNG.sync.read(await page.screenshot({ fullPage: true }));
      assert.equal(full.width, 1000);
      assert.ok(full.height > 1200, `the whole page is laid out (${full.height}px tall)`);
      });
    } finally {
      await context.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(profile, { recursive: true, force: true });
  }
});

test('report --html live on two VMs merged with each other', async (t) => {
  const dir = workdir();
  try {
    await withKsm(t, async () => {
      // Page i of each guest holds i: nothing merges inside a guest, all 40 pages pair up across the two.
      const a = await startMergedChild(40, 'pf-html-a', 'indexed');
      const b = await startMergedChild(40, 'pf-html-b', 'indexed');
      try {
        await Promise.all([waitMerging(a.pid, 40), waitMerging(b.pid, 40)]);
        const out = join(dir, 'live.html');
        const r = await runCliAsync(['report', '--html', out, '--duration', '0.5', '--interval', '0.25']);
        assert.equal(r.status, 0, r.stderr);
        const html = readFileSync(out, 'utf8');
        await t.test('each VM shows in the table with its share of the merged pages', () => {
        for (const vm of [a, b]) {
          const name = vm === a ? 'pf-html-a' : 'pf-html-b';
          // 40 pages shared 2 ways: each guest's share is 20 pages (80 KiB); 40 rmap items (2.5 KiB); the
          // kernel's profit counts all 40 in each: 40 × 4096 − 40 × 64 = 161280 B = 158 KiB.
          assert.match(
            html,
            new RegExp(`<tr><td>${vm.pid}</td><td>${name} \\(VM\\)</td><td>80\\.0 KiB</td><td>[^<]+</td><td>80\\.0 KiB</td><td>0 B</td><td>0 B</td><td>40</td><td>2\\.5 KiB</td><td>158 KiB</td></tr>`),
          );
        }
        });

        await t.test('the heat map shows the 40 pages the two VMs share', () => {
        assert.match(html, /<svg id="sharing-heatmap"/);
        assert.match(html, /<title>pf-html-a × pf-html-b: 40 duplicate pages \(contents both hold\)<\/title>/);
        assert.match(html, /<title>pf-html-b × pf-html-a: 40 duplicate pages \(contents both hold\)<\/title>/);
        assert.match(html, /<text class="cell-n"[^>]*>40<\/text>/, 'the heat map shows its numbers');
        });
      } finally {
        await Promise.all([a.stop(), b.stop()]);
      }
    }, { settings: RUNNING_SETTINGS });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("report's live would-save figure counts the zero pages ksmd already freed, as before it merged (use_zero_pages=1)", async (t) => {
  if (!requireRoot(t, 'reads /proc/<pid>/pagemap, where pages mapped to the zero page are told apart')) return;
  await withKsm(
    t,
    async (ksm) => {
      const w = await Workload.start({ processes: 2, imagePages: 1024, zeroPages: 4096, uniquePages: 512, asQemu: { namePrefix: 'pf-ws-' }, seed: 23 });
      try {
        const source = hostSource({ zeroBaselines: false });
        const wouldSave = async () => {
          const r = await processSharing((await source.read({ footprintMaxAgeMs: 0 })).processes.filter((p) => w.pids.includes(p.pid)));
          if ('why' in r) throw new Error(r.why);
          return r.estimate.bytes / PAGE_SIZE;
        };
        const before = await wouldSave();
        await ksm.start();
        for (let i = 0; i < 400 && (await Promise.all(w.pids.map((pid) => processKsm(pid)))).some((k) => k.zeroPages < 4096); i++) await sleep(25);
        await ksm.stop();
        // Before the fix: 1024 pages after, 9216 before: the 2 × 4096 zero pages on the zero page had left it.
        assert.deepEqual([before, await wouldSave()], [9216, 9216]);
      } finally {
        await w.stop();
      }
    },
    { settings: { use_zero_pages: 1 } },
  );
});

test('report --html live with --save', async (t) => {
  const dir = workdir();
  try {
    const out = join(dir, 'live.html');
    const saved = join(dir, 'live.json');
    const r = await runCliAsync(['report', '--html', out, '--duration', '1', '--interval', '0.25', '--save', saved]);
    assert.equal(r.status, 0, r.stderr);
    const n = Number(/\((\d+) samples\)/.exec(r.stdout)?.[1]);
    await t.test('samples live when no history is given', () => {
    // One sample at the start, then one per interval until the second is over; the history keeps
    // ⌈1 / 0.25⌉ + 2 at most. How many a loaded machine manages is the sampler's speed, a bench figure
    // (bench/responsiveness.ts), not a pass mark here.
    assert.ok(n >= 1 && n <= 6, r.stdout);
    const html = readFileSync(out, 'utf8');
    assert.match(html, /<svg id="savings-chart"/);
    assert.match(html, /sampled live for 1 s every 0\.25 s/);
    });

    await t.test('--save writes the samples as a history', () => {
    const h = JSON.parse(readFileSync(saved, 'utf8')) as HistoryJson;
    assert.equal(h.samples.length, n);
    assert.equal(typeof h.samples[0].counters.pages_sharing, 'number');
    });

    await t.test('a saved history redraws', async () => {
    const again = await runCliAsync(['report', '--html', join(dir, 'again.html'), '--from', saved]);
    assert.equal(again.status, 0, again.stderr);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The report's would-save tile, as HTML. */
const wouldSaveCard = (html: string): string | undefined => /<div class="card"><div class="k">would save[^<]*<\/div>.*?<\/div><\/div>/.exec(html)?.[0];
/** The tile for an estimate of 600 MiB with 31 slow huge pages holding 60 MiB of zero subpages. */
const WOULD_SAVE_600_660 =
  '<div class="card"><div class="k">would save by ksmd&#39;s second full scan</div><div class="v">600 MiB</div>' +
  '<div class="n">660 MiB once ksmd has split 31 more huge pages, at most one a full scan (+60.0 MiB of zero subpages)</div></div>';

test("the would-save tile gives the estimate and, under it, the figure once ksmd has split the slow huge pages", () => {
  const MiB = 1024 * 1024;
  const tuner = { at: 5_000, policy: 'adaptive', settings: {}, reason: '', pid: process.pid, running: true, estimatedBytes: 600 * MiB, thpSlowSplitPages: 31, thpSlowSplitZeroBytes: 60 * MiB };
  const counters = { pages_shared: 1, pages_sharing: 2, pages_unshared: 0, pages_volatile: 0, full_scans: 3 };
  const html = reportHtml({ source: 'test', history: { snapshots: [{ at: 10_000, pageSize: 4096, settings: { run: 1 }, counters, processes: [], tuner }], decisions: [] } });
  assert.equal(wouldSaveCard(html), WOULD_SAVE_600_660);
});

test("the KSM pages tile says how many pages pages_sharing still counts for processes that have exited", () => {
  // Two guests left of three that shared 32 KSM pages; the third exited while ksmd was stopped.
  const counters = { pages_shared: 32, pages_sharing: 64, pages_unshared: 0, pages_volatile: 0, full_scans: 3 };
  const guest = (pid: number) => ({ pid, name: `g${pid}`, vm: true, rmapItems: 32, zeroPages: 0, mergingPages: 32, profitBytes: 0, sharingWeight: 16, zeroMappedPages: 0 });
  const html = reportHtml({ source: 'test', history: { snapshots: [{ at: 10_000, pageSize: 4096, settings: { run: 0 }, counters, processes: [guest(1), guest(2)], wholeHost: true }], decisions: [] } });
  assert.equal(
    /<div class="card"><div class="k">KSM pages<\/div>.*?<\/div><\/div>/.exec(html)?.[0],
    '<div class="card"><div class="k">KSM pages</div><div class="v">128 KiB</div><div class="n">not counted: 32 pages (128 KiB) that pages_sharing still counts for processes that have exited; their memory is free already, and ksmd drops them from its counters on its next pass</div></div>',
  );
});

test("a history file keeps the sharing weights: a report drawn from it leaves out what pages_sharing counts for a VM that exited", () => {
  const counters = { pages_shared: 32, pages_sharing: 64, pages_unshared: 0, pages_volatile: 0, full_scans: 3 };
  const guest = (pid: number) => ({ pid, name: `g${pid}`, vm: true, rmapItems: 32, zeroPages: 0, mergingPages: 32, profitBytes: 0, sharingWeight: 16, zeroMappedPages: 0, pssBytes: 65536 });
  const live = { snapshots: [{ at: 10_000, pageSize: 4096, settings: { run: 0 }, counters, processes: [guest(1), guest(2)], wholeHost: true }], decisions: [] };
  const fromFile = fromHistoryJson(JSON.parse(JSON.stringify(toHistoryJson(live))));
  assert.deepEqual(fromFile, live);
  assert.equal(
    /<div class="card"><div class="k">KSM pages<\/div><div class="v">(.*?)<\/div>/.exec(reportHtml({ source: 'test', history: fromFile }))?.[1],
    '128 KiB',
  );
});

test("a tuner history file keeps the tuner's would-save figure and slow huge page splits for the report's tile", () => {
  const MiB = 1024 * 1024;
  const h = history();
  h.decisions.push({ t: h.samples[9].t - 100, policy: 'adaptive', settings: {}, reason: 'scanned', estimated_bytes: 600 * MiB, thp_slow_split_pages: 31, thp_slow_split_zero_bytes: 60 * MiB });
  const html = reportHtml({ source: 'test', history: fromHistoryJson(JSON.parse(JSON.stringify(toHistoryJson(fromHistoryJson(h))))) });
  assert.equal(wouldSaveCard(html), WOULD_SAVE_600_660);
});

test('report: bad input is one line and leaves nothing half-written', async (t) => {
  const dir = workdir();
  try {
    writeFileSync(join(dir, 'history.json'), JSON.stringify(history()));
    await t.test('usage errors exit 2 with one line', async () => {
    const usage: string[][] = [
      ['--bogus'],
      [],
      ['--html', join(dir, 'a.html'), '--from', join(dir, 'history.json'), '--duration', '2'],
      ['--html', join(dir, 'a.html'), '--duration', '-1'],
    ];
    for (const args of usage) {
      const r = await runCliAsync(['report', ...args]);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /^pagefuse report: /);
    }
    });

    await t.test('a target that is a directory is a runtime error (exit 1), one line', async () => {
    // The target is a directory: the rename fails after the temp file was written; neither is left behind.
    mkdirSync(join(dir, 'taken.html'));
    writeFileSync(join(dir, 'taken.html', 'keep'), 'x');
    const isDir = await runCliAsync(['report', '--html', join(dir, 'taken.html'), '--from', join(dir, 'history.json')]);
    assert.equal(isDir.status, 1);
    assert.match(isDir.stderr, /^pagefuse report: cannot write .*taken\.html: /);
    assert.equal(isDir.stderr.split('\n').length, 2);
    });

    await t.test('a target that is a FIFO is refused (exit 1, one line) and left a FIFO, not replaced by a file', async () => {
    // As root, a rename over /dev/full or the /dev/stdout link would replace them for the whole host.
    const fifo = join(dir, 'pipe.html');
    execFileSync('mkfifo', [fifo]);
    const r = await runCliAsync(['report', '--html', fifo, '--from', join(dir, 'history.json')]);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `pagefuse report: cannot write ${fifo}: it is a FIFO; give the path of a regular file\n`);
    assert.ok(lstatSync(fifo).isFIFO());
    });

    await t.test('a target in a missing directory is a runtime error (exit 1)', async () => {
    // No such directory.
    const missing = await runCliAsync(['report', '--html', join(dir, 'no', 'such', 'x.html'), '--from', join(dir, 'history.json')]);
    assert.equal(missing.status, 1);
    assert.equal(missing.stderr, `pagefuse report: cannot write ${join(dir, 'no', 'such', 'x.html')}: ENOENT creating a file in ${join(dir, 'no', 'such')}\n`);
    });

    await t.test('a bad history file is a runtime error (exit 1) that leaves an existing page as it was', async () => {
    // A bad history leaves an existing page as it was.
    writeFileSync(join(dir, 'old.html'), 'old page');
    writeFileSync(join(dir, 'bad.json'), '{"version": 1, "samples": []}');
    const bad = await runCliAsync(['report', '--html', join(dir, 'old.html'), '--from', join(dir, 'bad.json')]);
    assert.equal(bad.status, 1);
    assert.equal(bad.stderr, `pagefuse report: ${join(dir, 'bad.json')} is not a pagefuse history file: it has no samples\n`);
    assert.equal(readFileSync(join(dir, 'old.html'), 'utf8'), 'old page');
    });

    await t.test('a history that is no JSON at all is refused without quoting it (as root it may be anyone\'s file)', async () => {
    writeFileSync(join(dir, 'bad.json'), 'root:$6$secret:20228:0:99999:7:::\n');
    const notJson = await runCliAsync(['report', '--html', join(dir, 'old.html'), '--from', join(dir, 'bad.json')]);
    assert.deepEqual([notJson.status, notJson.stderr], [1, `pagefuse report: ${join(dir, 'bad.json')} is not a pagefuse history file: invalid JSON\n`]);
    });

    await t.test('a missing history file is a runtime error (exit 1)', async () => {
    const gone = await runCliAsync(['report', '--html', join(dir, 'x.html'), '--from', join(dir, 'nope.json')]);
    assert.equal(gone.status, 1);
    assert.equal(gone.stderr, `pagefuse report: cannot read the history ${join(dir, 'nope.json')}: ENOENT (no such file or directory)\n`);
    });

    await t.test('no failed run leaves a temporary or partial file behind', () => {
    assert.deepEqual(readdirSync(dir).sort(), ['bad.json', 'history.json', 'old.html', 'pipe.html', 'taken.html']);
    assert.deepEqual(readdirSync(join(dir, 'taken.html')), ['keep']);
    assert.equal(existsSync(join(dir, 'x.html')), false);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
