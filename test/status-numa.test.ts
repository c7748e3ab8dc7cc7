// pagefuse status on NUMA: the merge_across_nodes warning, the host's KSM pages per node, and the
// processes registered through pagefuse with their merged pages per node. Two nodes through fake
// sysfs/procfs trees; one real child started with spawnMerged, merged by ksmd, on this one-node host.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { PAGE_SIZE, Registry, mergeAcrossNodesWarning, numaTopology, parseKsmStat, processKsm, registeredSavings, spawnMerged } from '../src/index.js';
import { mergeAndWait, withKsm } from './helpers/ksm.js';
import { builtBin, runCli, type CliResult } from './helpers/cli.js';
import { readyPid, stopChildren } from './helpers/children.js';
import { requireRoot } from './helpers/root.js';

const TWO_NODES = fileURLToPath(new URL('./fixtures/sysfs-2node', import.meta.url));
const FILL = fileURLToPath(new URL('./fixtures/fill-pages.mjs', import.meta.url));

const bin = builtBin();

function status(args: string[], env: Record<string, string> = {}, user?: { uid: number; gid: number }): CliResult {
  return runCli(['status', ...args], { bin, env, ...user });
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755); // readable by the unprivileged run below
  dirs.push(dir);
  return dir;
}

/** A KSM sysfs directory as a 6.18 kernel has it, idle, with merge_across_nodes as given. */
function fakeKsm(mergeAcrossNodes: 0 | 1): string {
  const dir = tempDir('pagefuse-status-ksm-');
  const files: Record<string, number | string> = {
    advisor_mode: 'none', full_scans: 3, general_profit: 0, ksm_zero_pages: 0, max_page_sharing: 256,
    merge_across_nodes: mergeAcrossNodes, pages_scanned: 100, pages_shared: 4, pages_sharing: 9, pages_skipped: 0,
    pages_to_scan: 100, pages_unshared: 0, pages_volatile: 0, run: 0, sleep_millisecs: 20, smart_scan: 1,
    stable_node_chains: 0, stable_node_dups: 0, stable_node_chains_prune_millisecs: 2000, use_zero_pages: 0,
  };
  for (const [name, value] of Object.entries(files)) writeFileSync(join(dir, name), `${value}\n`);
  return dir;
}

const KSM = (1n << 21n) | (1n << 12n) | (1n << 5n); // KPF_KSM | KPF_ANON | KPF_LRU
const SLAB_FLAGGED_KSM = (1n << 7n) | (1n << 12n) | (1n << 21n);
const PRESENT = 1n << 63n;
const PID = 4242;
const START_TIME = 987654;
const VMA = 0x10000000;

function writeEntries(path: string, entries: [number, bigint][]): void {
  const fd = openSync(path, 'w');
  for (const [index, value] of entries) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(value);
    writeSync(fd, b, 0, 8, index * 8);
  }
  closeSync(fd);
}

/**
 * A procfs with one KSM process (pid 4242) over the two-node fixture, whose memory blocks are 8 pages:
 * frames 0-15 on node 0, 16-31 on node 1. KSM frames 3, 12 (node 0), 17, 20 (node 1); 9 is a slab page
 * the kernel also flags KSM. The process maps 3 twice, 12 and 17 in its mergeable range, and 5 (not KSM).
 */
function fakeProc(): string {
  const proc = tempDir('pagefuse-status-proc-');
  writeEntries(
    join(proc, 'kpageflags'),
    Array.from({ length: 32 }, (_, pfn): [number, bigint] => [pfn, pfn === 9 ? SLAB_FLAGGED_KSM : [3, 12, 17, 20].includes(pfn) ? KSM : 1n << 5n]),
  );
  // Every host has meminfo: status reads it for the un-share exposure.
  writeFileSync(join(proc, 'meminfo'), 'MemTotal:       24576000 kB\nMemFree:        20000000 kB\nMemAvailable:   21000000 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n');
  const dir = join(proc, String(PID));
  mkdirSync(dir, { mode: 0o755 });
  const fields = ['S', ...Array<string>(18).fill('0'), String(START_TIME), '0', '0'];
  writeFileSync(join(dir, 'stat'), `${PID} (qemu-system-x86) ${fields.join(' ')}\n`);
  writeFileSync(join(dir, 'comm'), 'qemu-system-x86\n');
  writeFileSync(
    join(dir, 'ksm_stat'),
    'ksm_rmap_items 6\nksm_zero_pages 0\nksm_merging_pages 4\nksm_process_profit 16000\nksm_merge_any: yes\nksm_mergeable: yes\n',
  );
  writeFileSync(join(dir, 'smaps'), `${(VMA).toString(16)}-${(VMA + 6 * PAGE_SIZE).toString(16)} rw-p 00000000 00:00 0 \nVmFlags: rd wr mr mw me ac mg\n`);
  const page = VMA / PAGE_SIZE;
  writeEntries(join(dir, 'pagemap'), [
    [page, PRESENT | 3n],
    [page + 1, PRESENT | 3n],
    [page + 2, PRESENT | 12n],
    [page + 3, PRESENT | 17n],
    [page + 4, PRESENT | 5n],
  ]);
  // As the kernel has them: frames and page flags for root only.
  chmodSync(join(dir, 'pagemap'), 0o400);
  chmodSync(join(proc, 'kpageflags'), 0o400);
  return proc;
}

type StatusJson = {
  warnings: string[];
  registered: { pid: number; name: string; tenant: string | null; merge_any: boolean; merging_pages: number | null; nodes: Record<string, number> | null; nodes_unavailable?: string }[];
  nodes?: { id: number; ksm_pages: number }[] | null;
  nodes_unavailable?: string;
  processes: { pid: number }[];
};

/** A two-node host with merge_across_nodes=1 and one process (4242, vm-a of tenant acme) registered through pagefuse. */
function twoNodeHost(): { proc: string; stateDir: string; env: Record<string, string>; warning: string } {
  const proc = fakeProc();
  const stateDir = tempDir('pagefuse-status-state-');
  new Registry({ stateDir, procRoot: proc }).add({ pid: PID, tenant: 'acme', name: 'vm-a', merge: true, via: 'exec' });
  const warning = mergeAcrossNodesWarning(numaTopology({ sysfsRoot: TWO_NODES }), true)!;
  const env = { PAGEFUSE_KSM_SYSFS: fakeKsm(1), PAGEFUSE_SYS_ROOT: TWO_NODES, PAGEFUSE_PROC: proc, PAGEFUSE_STATE_DIR: stateDir };
  return { proc, stateDir, env, warning };
}

test('the merge_across_nodes warning names the node count and the distances', () => {
  const { warning } = twoNodeHost();
  assert.match(warning, /^merge_across_nodes=1 on a host with 2 memory nodes: .*node distance up to 21 against 10/);
});

test('status --json on two nodes with merge_across_nodes=1: the warning, KSM pages per node (no slab page), registered pages per node', () => {
  const { env, warning } = twoNodeHost();
  const json = status(['--json'], env);
  assert.equal(json.status, 0, json.stderr);
  const out = JSON.parse(json.stdout) as StatusJson;
  assert.deepEqual(out.warnings, [warning]);
  assert.deepEqual(out.nodes, [{ id: 0, ksm_pages: 2 }, { id: 1, ksm_pages: 2 }], 'two nodes: counted without --nodes; the slab page is not');
  assert.deepEqual(out.registered, [{ pid: PID, name: 'vm-a', tenant: 'acme', merge_any: true, merging_pages: 4, nodes: { 0: 3, 1: 1 } }]);
  assert.deepEqual(out.processes.map((p) => p.pid), [PID]);
});

test('registeredSavings places a registered process\'s merged pages on the nodes of their frames', async () => {
  const { proc, stateDir } = twoNodeHost();
  assert.deepEqual(await registeredSavings({ procRoot: proc, sysfsRoot: TWO_NODES, registry: new Registry({ stateDir, procRoot: proc }) }), [
    {
      pid: PID, name: 'vm-a', tenant: 'acme', merge: true, via: 'exec',
      ksm: await processKsm(PID, { procRoot: proc }), ksmUnavailable: null,
      nodes: [{ node: 0, mergingPages: 3 }, { node: 1, mergingPages: 1 }], nodesUnavailable: null,
    },
  ]);
});

test('status on two nodes prints the warning, KSM pages per node and the registered processes with theirs', () => {
  const { env, warning } = twoNodeHost();
  const human = status([], env);
  assert.equal(human.status, 0, human.stderr);
  assert.match(human.stdout, new RegExp(`\\n\\nwarnings:\\n  ${warning.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n\\nsettings:\\n`));
  assert.match(human.stdout, /\nKSM pages per node: 0:2 1:2\n/);
  assert.match(human.stdout, /\nregistered through pagefuse:\nPID +NAME +TENANT +MERGING +NODES\n4242 +vm-a +acme +4 +0:3 1:1\n$/);
});

test('status on two nodes with merge_across_nodes=0 warns of nothing', () => {
  const { env } = twoNodeHost();
  const off = { ...env, PAGEFUSE_KSM_SYSFS: fakeKsm(0) };
  const quiet = JSON.parse(status(['--json'], off).stdout) as StatusJson;
  assert.deepEqual(quiet.warnings, []);
  assert.doesNotMatch(status([], off).stdout, /warnings:|merge_across_nodes=1 on/);
});

test('status on two nodes with merge_across_nodes=0 gives the registered per-node figures as with it on', () => {
  const { env } = twoNodeHost();
  const off = { ...env, PAGEFUSE_KSM_SYSFS: fakeKsm(0) };
  const quiet = JSON.parse(status(['--json'], off).stdout) as StatusJson;
  assert.deepEqual(quiet.registered, [{ pid: PID, name: 'vm-a', tenant: 'acme', merge_any: true, merging_pages: 4, nodes: { 0: 3, 1: 1 } }]);
});

test('status on one node (this host\'s topology) warns of nothing', () => {
  const { env } = twoNodeHost();
  const single = JSON.parse(status(['--json'], { ...env, PAGEFUSE_SYS_ROOT: '/sys' }).stdout) as StatusJson;
  assert.deepEqual(single.warnings, []);
});

test('status on one node leaves KSM pages per node out of its JSON unless --nodes asks', () => {
  const { env } = twoNodeHost();
  const single = JSON.parse(status(['--json'], { ...env, PAGEFUSE_SYS_ROOT: '/sys' }).stdout) as StatusJson;
  assert.equal('nodes' in single, false);
});

test('without root: per-node data null with the reason, counters still there', (t) => {
  if (!requireRoot(t, 'runs the CLI as uid 65534')) return;
  const proc = fakeProc();
  const stateDir = tempDir('pagefuse-status-state-');
  new Registry({ stateDir, procRoot: proc }).add({ pid: PID, name: 'vm-a', merge: false, via: 'register' });
  const env = { PAGEFUSE_KSM_SYSFS: fakeKsm(1), PAGEFUSE_SYS_ROOT: TWO_NODES, PAGEFUSE_PROC: proc, PAGEFUSE_STATE_DIR: stateDir };
  const nobody = { uid: 65534, gid: 65534 };
  const r = status(['--json'], env, nobody);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as StatusJson;
  assert.equal(out.nodes, null);
  assert.equal(out.nodes_unavailable, `needs root: reading ${proc}/kpageflags (page frame numbers and flags are hidden from other users)`);
  assert.deepEqual(out.registered, [
    {
      pid: PID, name: 'vm-a', tenant: null, merge_any: false, merging_pages: 4, nodes: null,
      nodes_unavailable: `needs root: reading ${proc}/${PID}/pagemap (page frame numbers and flags are hidden from other users)`,
    },
  ]);
  const human = status([], env, nobody);
  assert.match(human.stdout, /\nKSM pages per node: unknown \(needs root: reading .*kpageflags .*\)\n/);
  assert.match(human.stdout, /\n4242 +vm-a +- +4 +-\n\(needs root: reading .*\/4242\/pagemap .*\)\n$/);
});

test('a child started with spawnMerged and merged for real shows under registered, all its merged pages on node 0', async (t) => {
  const PAGES = 256;
  const stateDir = tempDir('pagefuse-status-state-');
  const registry = new Registry({ stateDir });
  const env = { PAGEFUSE_STATE_DIR: stateDir };
  let child: ChildProcess | undefined;
  try {
    await withKsm(t, async (ksm) => {
      child = spawnMerged(process.execPath, [FILL, String(PAGES), '0x5a'], {
        stdio: ['pipe', 'pipe', 'inherit'], tenant: 'acme', name: 'guest-1', isolation: 'host', registry,
      });
      const pid = await readyPid(child);
      await mergeAndWait(ksm);
      for (let i = 0; i < 100 && (await processKsm(pid)).mergingPages < PAGES; i++) await sleep(50);
      await ksm.stop(); // merged pages stay merged; the numbers hold still
      const merging = () => parseKsmStat(readFileSync(`/proc/${pid}/ksm_stat`, 'utf8')).mergingPages!;
      const before = merging();
      assert.ok(before >= PAGES, `the ${PAGES} filled pages merged (${before})`);

      const r = status(['--json'], env);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(merging(), before, 'nothing moved while status read');
      const out = JSON.parse(r.stdout) as StatusJson;
      assert.deepEqual(out.registered, [{ pid, name: 'guest-1', tenant: 'acme', merge_any: true, merging_pages: before, nodes: { 0: before } }]);
      assert.equal(out.warnings.length, 0, 'one node here');
      assert.equal('nodes' in out, false, 'one node: the host-wide scan of kpageflags only with --nodes');

      const withNodes = JSON.parse(status(['--json', '--nodes'], env).stdout) as StatusJson;
      const { pages_shared: shared } = (await ksm.read()).counters;
      assert.deepEqual(withNodes.nodes, [{ id: 0, ksm_pages: shared }]);

      const human = status([], env);
      assert.match(human.stdout, new RegExp(`\\nregistered through pagefuse:\\nPID +NAME +TENANT +MERGING +NODES\\n${pid} +guest-1 +acme +${before} +0:${before}\\n$`));
    });
  } finally {
    await stopChildren([child]);
  }
  assert.deepEqual(registry.list(), [], 'the exited child is no longer registered');
});
