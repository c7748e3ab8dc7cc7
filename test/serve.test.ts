import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, REPO as ROOT, runCliAsync } from './helpers/cli.js';
import { parseExposition, type Family } from './helpers/prom-text.js';
import { startMergedChild, waitMerging } from './helpers/report-ksm.js';
import { RUNNING_SETTINGS, withKsm } from './helpers/ksm.js';
import { METRIC_NAMES, NODE_KSMD_NAMES, TUNER_STALE_SECONDS } from '../src/report/prometheus.js';
import { MAX_PIPELINED } from '../src/cli/serve.js';

const NODE_EXPORTER = [
  ['node_ksmd_full_scans_total', 'counter'],
  ['node_ksmd_general_profit_bytes', 'gauge'],
  ['node_ksmd_merge_across_nodes', 'gauge'],
  ['node_ksmd_pages_shared', 'gauge'],
  ['node_ksmd_pages_sharing', 'gauge'],
  ['node_ksmd_pages_to_scan', 'gauge'],
  ['node_ksmd_pages_unshared', 'gauge'],
  ['node_ksmd_pages_volatile', 'gauge'],
  ['node_ksmd_run', 'gauge'],
  ['node_ksmd_sleep_seconds', 'gauge'],
] as const;

async function startServe(listen: string, env: NodeJS.ProcessEnv = process.env, extra: string[] = []): Promise<{ url: string; stop: () => Promise<number | null> }> {
  const child = spawn(process.execPath, [...CLI, 'serve', '--listen', listen, ...extra], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  const m = /listening on (http:\/\/\S+)\n/.exec(line.toString());
  assert.ok(m, `serve printed its address: ${line.toString()}`);
  return {
    url: m[1],
    async stop() {
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];
      return code;
    },
  };
}

function one(f: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const fam = f.get(name);
  assert.ok(fam, `${name} is exported`);
  const hits = fam.samples.filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.equal(hits.length, 1, `${name}${JSON.stringify(labels)}: exactly one sample`);
  return hits[0].value;
}

test('serve answers a real scrape on loopback with valid exposition text, a VM started for the test included', async (t) => {
  await withKsm(t, async () => {
    const vm = await startMergedChild(64, 'pf-test-vm');
    try {
      await waitMerging(vm.pid, 64);
      const dir = mkdtempSync(join(tmpdir(), 'pagefuse-serve-'));
      const state = join(dir, 'tuner.json');
      writeFileSync(state, JSON.stringify({ at: 1_700_000_000_000, policy: 'adaptive', settings: { pages_to_scan: 20000, sleep_millisecs: 0 }, reason: 'new VM', atRisk: true, pid: process.pid }));
      const serve = await startServe('127.0.0.1:0', { ...process.env, PAGEFUSE_TUNER_STATE: state });
      try {
        assert.match(serve.url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
        const knob = (k: string): number => Number(readFileSync(`/sys/kernel/mm/ksm/${k}`, 'utf8'));
        const before = { pages_to_scan: knob('pages_to_scan'), sleep_millisecs: knob('sleep_millisecs'), run: knob('run') };
        const res = await fetch(serve.url);
        assert.equal(res.status, 200);
        assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
        const families = parseExposition(await res.text());

        for (const [name, type] of NODE_EXPORTER) assert.equal(families.get(name)?.type, type, name);
        // The knobs as sysfs had them at the scrape (read just before and just after: a process that ignores the
        // KSM test lock may write them meanwhile).
        const afterKnobs = { pages_to_scan: knob('pages_to_scan'), sleep_millisecs: knob('sleep_millisecs'), run: knob('run') };
        const either = (k: keyof typeof before, v: number): void => assert.ok(v === before[k] || v === afterKnobs[k], `${k}: ${v} vs ${before[k]}/${afterKnobs[k]}`);
        either('pages_to_scan', one(families, 'node_ksmd_pages_to_scan'));
        either('sleep_millisecs', one(families, 'node_ksmd_sleep_seconds') * 1000);
        either('run', one(families, 'node_ksmd_run'));
        assert.deepEqual([...families.keys()].sort(), [...METRIC_NAMES].sort(), 'every family and no other');

        // The test's VM, named by VM discovery: 64 identical pages merged into one KSM page, 64 rmap items of 64 B.
        // Its series carry the name only (they survive a restart); the pid is in pagefuse_process_info.
        const labels = { name: 'pf-test-vm', vm: 'true' };
        assert.equal(one(families, 'pagefuse_process_info', { ...labels, pid: String(vm.pid) }), 1);
        assert.equal(families.get('pagefuse_process_merging_pages')?.samples.some((s) => 'pid' in s.labels), false);
        assert.equal(one(families, 'pagefuse_process_merging_pages', labels), 64);
        assert.equal(one(families, 'pagefuse_process_rmap_items', labels), 64);
        assert.equal(one(families, 'pagefuse_process_zero_pages', labels), 0);
        assert.equal(one(families, 'pagefuse_process_kernel_profit_bytes', labels), 64 * 4096 - 64 * 64);
        assert.ok(one(families, 'node_ksmd_pages_sharing') >= 63, 'the host counts at least this VM');
        // One snapshot behind all of them: the saved parts are the kernel's counters in bytes, and the
        // processes' shares add up to them.
        const merged = one(families, 'pagefuse_saved_bytes', { part: 'ksm_pages' }) + one(families, 'pagefuse_saved_bytes', { part: 'ksm_zero_pages' });
        assert.equal(merged, (one(families, 'node_ksmd_pages_sharing') + one(families, 'pagefuse_ksm_zero_pages')) * 4096);
        const shares = families.get('pagefuse_process_saved_bytes')?.samples.filter((s) => s.labels.part === 'ksm_pages').reduce((a, s) => a + s.value, 0);
        assert.equal(shares, one(families, 'pagefuse_saved_bytes', { part: 'ksm_pages' }));
        assert.ok(one(families, 'pagefuse_ksmd_cpu_seconds_total') > 0);
        assert.equal(one(families, 'pagefuse_node_ksm_pages', { node: '0' }), one(families, 'node_ksmd_pages_shared'), 'one node holds every KSM page');

        // The tuner daemon's latest decision, from its state file.
        assert.equal(one(families, 'pagefuse_tuner_setting', { policy: 'adaptive', knob: 'pages_to_scan' }), 20000);
        assert.equal(one(families, 'pagefuse_tuner_setting', { policy: 'adaptive', knob: 'sleep_millisecs' }), 0);
        assert.equal(one(families, 'pagefuse_tuner_decision_timestamp_seconds', { policy: 'adaptive' }), 1_700_000_000);
        assert.equal(one(families, 'pagefuse_tuner_overcommit_risk', { policy: 'adaptive' }), 1);
        assert.equal(one(families, 'pagefuse_tuner_up'), 0, 'a decision from 2023 is a tuner that is down');
        // This kernel has general_profit: node_exporter's name and pagefuse's profit are the same figure.
        assert.equal(one(families, 'node_ksmd_general_profit_bytes'), one(families, 'pagefuse_ksm_profit_bytes'));

        // The overcommit guard: what comes back if every merged page is written, against MemAvailable + SwapFree.
        assert.equal(one(families, 'pagefuse_unshare_exposure_bytes'), merged);
        const available = one(families, 'pagefuse_unshare_available_bytes');
        assert.ok(available > 0);
        assert.equal(one(families, 'pagefuse_unshare_margin_bytes'), available - merged);

        // Counts only: no family or label that could carry page contents or hashes.
        for (const fam of families.values()) {
          assert.doesNotMatch(fam.name, /hash|content|digest|checksum/);
          for (const s of fam.samples) {
            for (const k of Object.keys(s.labels)) assert.ok(['pid', 'name', 'vm', 'node', 'policy', 'knob', 'dry_run', 'part'].includes(k), k);
          }
        }

        // Values are read at scrape time: the next scrape sees the VM gone.
        await vm.stop();
        const after = parseExposition(await (await fetch(serve.url)).text());
        assert.equal(after.get('pagefuse_process_info')?.samples.some((s) => s.labels.pid === String(vm.pid)), false);
        assert.equal((await fetch(serve.url.replace('/metrics', '/nope'))).status, 404);
      } finally {
        assert.equal(await serve.stop(), 0, 'SIGTERM shuts serve down cleanly');
        rmSync(dir, { recursive: true, force: true });
      }
    } finally {
      await vm.stop();
    }
  }, { settings: RUNNING_SETTINGS });
});

test('serve binds to loopback by default', async () => {
  const r = await runCliAsync(['serve', '--help']);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /127\.0\.0\.1:10452 by default \(loopback only\)/);
});

test('serve --listen :PORT binds every address of the host', async () => {
  const serve = await startServe(':0');
  try {
    assert.match(serve.url, /^http:\/\/(\[::\]|0\.0\.0\.0):\d+\/metrics$/);
    const port = new URL(serve.url).port;
    assert.equal((await fetch(`http://127.0.0.1:${port}/metrics`)).status, 200);
  } finally {
    assert.equal(await serve.stop(), 0);
  }
});

test('serve --no-node-ksmd exports every family but the node_ksmd_* ones', async () => {
  const serve = await startServe('127.0.0.1:0', { ...process.env, PAGEFUSE_TUNER_STATE: '/nonexistent/tuner.json' }, ['--no-node-ksmd']);
  try {
    const families = parseExposition(await (await fetch(serve.url)).text());
    assert.deepEqual([...families.keys()].sort(), METRIC_NAMES.filter((n) => !NODE_KSMD_NAMES.includes(n)).sort());
    assert.equal(NODE_KSMD_NAMES.length, 10, "node_exporter's nine ksmd series and general_profit");
  } finally {
    assert.equal(await serve.stop(), 0);
  }
});

test('pagefuse_tuner_up is 1 while the tuner that published the state runs and its decision is fresher than the stale limit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-serve-'));
  const state = join(dir, 'tuner.json');
  writeFileSync(state, JSON.stringify({ at: Date.now() - (TUNER_STALE_SECONDS - 60) * 1000, policy: 'adaptive', settings: {}, reason: 'steady', pid: process.pid }));
  const serve = await startServe('127.0.0.1:0', { ...process.env, PAGEFUSE_TUNER_STATE: state });
  try {
    assert.equal(one(parseExposition(await (await fetch(serve.url)).text()), 'pagefuse_tuner_up'), 1);
  } finally {
    assert.equal(await serve.stop(), 0);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('serve: a bad --listen address is a usage error (exit 2), one line', async () => {
  for (const bad of ['nonsense', '127.0.0.1', '127.0.0.1:99999', 'example.com:80', '[127.0.0.1]:80', '1.2.3:80', ':', ':99999']) {
    const r = await runCliAsync(['serve', '--listen', bad]);
    assert.equal(r.status, 2, `${bad}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.match(r.stderr, /^pagefuse serve: --listen must be HOST:PORT, \[IPv6\]:PORT or :PORT/);
  }
});

test('serve: an unknown flag is a usage error (exit 2)', async () => {
  const r = await runCliAsync(['serve', '--bogus']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^pagefuse serve: Unknown option '--bogus'/);
});

test('serve: a port in use is a runtime error (exit 1), one line', async () => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const port = (blocker.address() as { port: number }).port;
  try {
    const r = await runCliAsync(['serve', '--listen', `127.0.0.1:${port}`]);
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `pagefuse serve: port ${port} on 127.0.0.1 is already in use; pick another with --listen\n`);
  } finally {
    blocker.close();
  }
});

test('serve: an address this host lacks is a runtime error (exit 1), one line', async () => {
  // TEST-NET-1 (RFC 5737) is never assigned to a host: binding fails locally, nothing is sent.
  const r = await runCliAsync(['serve', '--listen', '192.0.2.1:9464']);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, 'pagefuse serve: 192.0.2.1 is not an address of this host\n');
});

test('serve answers at most 8 requests pipelined on one connection; those past them get 503 at once', async () => {
  // One connection sending 10,000 pipelined scrapes (no token needed) took serve to 1.3 GB and 20 CPU-seconds.
  const serve = await startServe('127.0.0.1:0');
  try {
    const { port } = new URL(serve.url);
    const socket = connect(Number(port), '127.0.0.1');
    await once(socket, 'connect');
    const requests = Array.from({ length: 50 }, (_, i) => `GET /metrics HTTP/1.1\r\nhost: x\r\n${i === 49 ? 'connection: close\r\n' : ''}\r\n`);
    socket.write(requests.join(''));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    await once(socket, 'close');
    const statuses = [...Buffer.concat(chunks).toString('latin1').matchAll(/^HTTP\/1\.1 (\d{3}) /gm)].map((m) => Number(m[1]));
    assert.deepEqual(statuses, [...Array<number>(MAX_PIPELINED).fill(200), ...Array<number>(50 - MAX_PIPELINED).fill(503)]);
  } finally {
    await serve.stop();
  }
});
