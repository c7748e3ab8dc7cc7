// Names from /proc and VMM argv are a stranger's: a merged process whose comm and argv carry terminal
// escapes, and a QEMU-like guest whose -name guest= does, reach no terminal raw (status, top, audit, scan),
// are HTML-escaped in the report, exact in the Prometheus scrape (which parses strictly) and in JSON.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { processKsm, spawnMerged } from '../src/index.js';
import { mergeAndWait, withKsm } from './helpers/ksm.js';
import { readyPid, stopChildren } from './helpers/children.js';
import { startGuests } from './helpers/tune-guests.js';
import { parseExposition } from './helpers/prom-text.js';
import { CLI, REPO as ROOT, runCli } from './helpers/cli.js';

const FILL = fileURLToPath(new URL('./fixtures/fill-pages.mjs', import.meta.url));
/** Clears the screen, sets the window title, rings the bell. */
const HOSTILE = 'x\x1b[2J\x1b]0;pwn\x07';
const SHOWN = 'x\\033[2J\\033]0;pwn\\007';
const PAGES = 64;

function assertClean(output: string, what: string): void {
  assert.ok(!output.includes('\x1b'), `${what}: an ESC byte reached the output: ${JSON.stringify(output)}`);
  assert.ok(!output.includes('\x07'), `${what}: a BEL byte reached the output`);
}

async function scrape(): Promise<string> {
  const serve = spawn(process.execPath, [...CLI, 'serve', '--listen', '127.0.0.1:0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    let out = '';
    serve.stdout.on('data', (d: Buffer) => (out += d.toString()));
    for (let i = 0; i < 600 && !/:(\d+)\/metrics/.test(out); i++) await sleep(50);
    const port = /:(\d+)\/metrics/.exec(out)![1];
    return await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  } finally {
    serve.kill('SIGTERM');
  }
}

test('a process and a VM named with terminal escapes', async (t) => {
  await withKsm(t, async (ksm) => {
    const dir = mkdtempSync(join(tmpdir(), 'pagefuse-hostile-'));
    // comm and argv[0]: an executable whose file name is the hostile string (a symlink to node),
    // merging all its memory and unknown to pagefuse's registry (so audit lists it as a stray).
    const exe = join(dir, HOSTILE);
    symlinkSync(process.execPath, exe);
    const children: ChildProcess[] = [];
    const guests = await startGuests(2, { commonMiB: 1, uniqueMiB: 0, zeroMiB: 0, changingMiB: 0 }, HOSTILE);
    try {
      const stray = spawnMerged(exe, [FILL, String(PAGES), '7'], { mergeAny: true, registry: false, stdio: ['pipe', 'pipe', 'inherit'] });
      children.push(stray);
      const strayPid = await readyPid(stray);
      await mergeAndWait(ksm);
      for (const pid of [strayPid, ...guests.pids]) {
        for (let i = 0; i < 200 && (await processKsm(pid)).mergingPages === 0; i++) await sleep(50);
        assert.ok((await processKsm(pid)).mergingPages > 0, `pid ${pid} merges`);
      }
      assert.equal(readFileSync(`/proc/${strayPid}/comm`, 'utf8'), `${HOSTILE}\n`);

      await t.test('status escapes the name as \\ooo and prints no ESC byte', () => {
        const r = runCli(['status', '--top', '1000']);
        assert.equal(r.status, 0, r.stderr);
        assertClean(r.stdout, 'status');
        assert.match(r.stdout, new RegExp(`^${strayPid} +${SHOWN.replace(/[\\[\]]/g, '\\$&')} `, 'm'));
      });

      await t.test('status --json keeps the name exact', () => {
        const out = JSON.parse(runCli(['status', '--json', '--top', '1000']).stdout) as { processes: { pid: number; name: string }[] };
        assert.equal(out.processes.find((p) => p.pid === strayPid)?.name, HOSTILE);
      });

      await t.test('top prints no ESC byte of a name', () => {
        const r = runCli(['top', '--interval', '0.2']);
        assert.equal(r.status, 0, r.stderr);
        assertClean(r.stdout, 'top');
        assert.ok(r.stdout.includes(`${SHOWN}1 [vm]`), r.stdout);
      });

      await t.test('audit prints no ESC byte of a stray name', () => {
        const r = runCli(['audit']);
        assertClean(r.stdout, 'audit');
        assert.ok(r.stdout.includes(`${SHOWN} (pid ${strayPid})`), r.stdout);
      });

      await t.test('scan --vms prints no ESC byte of a guest name', () => {
        const r = runCli(['scan', '--vms']);
        assert.equal(r.status, 0, r.stderr);
        assertClean(r.stdout, 'scan');
        assert.ok(r.stdout.includes(`${SHOWN}1[${guests.pids[0]}]`), r.stdout);
      });

      await t.test('scan names the guests it could not read without an ESC byte', () => {
        // nobody cannot read root's guests: the scan lists them as denied on stderr.
        const r = runCli(['scan', '--vms', '--totals'], { uid: 65534, gid: 65534, env: { HOME: '/tmp' } });
        assertClean(r.stderr, 'scan stderr');
        assert.ok(r.stderr.includes(`${SHOWN}1[${guests.pids[0]}]`), r.stderr);
      });

      await t.test('the scrape parses strictly and carries the exact name', async () => {
        const families = parseExposition(await scrape());
        const names = families.get('pagefuse_process_kernel_profit_bytes')!.samples.map((s) => s.labels.name);
        assert.ok(names.includes(HOSTILE), JSON.stringify(names));
        assert.ok(names.includes(`${HOSTILE}1`), JSON.stringify(names));
      });

      await t.test('the HTML report escapes the name', () => {
        const html = join(dir, 'report.html');
        const r = runCli(['report', '--html', html, '--duration', '0.3', '--interval', '0.1']);
        assert.equal(r.status, 0, r.stderr);
        const page = readFileSync(html, 'utf8');
        assertClean(page, 'report');
        assert.ok(page.includes(`${SHOWN}1`), 'the guest name, escaped');
      });
    } finally {
      for (const c of children) c.stdin?.write('exit 0\n');
      await stopChildren(children);
      await guests.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
