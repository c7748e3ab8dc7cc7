// pagefuse exec, spawnMerged and the pagefuse-exec helper, for real on this machine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { open, readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnMerged, numaTopology, processMergingByNode, ksmPagesByNode, PAGE_SIZE } from '../src/index.js';
import { execHelperPath } from '../src/native.js';
import { assertMergeSurvivesExec } from '../src/launch/spawn.js';
import { mergeablePages, ksmFrames } from '../src/numa/ksm-nodes.js';
import { formatIdList } from '../src/numa/topology.js';
import { withKsm } from './helpers/ksm.js';
import { readyPid } from './helpers/children.js';

const repo = fileURLToPath(new URL('..', import.meta.url));
const FILL = fileURLToPath(new URL('./fixtures/fill-pages.mjs', import.meta.url));
const KSM = '/sys/kernel/mm/ksm';
const NO_SUCH = 'no-such-command-pagefuse';

function cliArgs(...args: string[]): string[] {
  return ['--import', 'tsx', 'src/cli/bin.ts', ...args];
}

function cli(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, cliArgs(...args), { cwd: repo, encoding: 'utf8', input: input ?? '' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function helper(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(execHelperPath, args, { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function ksmStat(pid: number): Promise<Record<string, string>> {
  const text = await readFile(`/proc/${pid}/ksm_stat`, 'utf8');
  return Object.fromEntries(text.trim().split('\n').map((l) => l.split(/:?\s+/) as [string, string]));
}

async function exitOf(child: ChildProcess): Promise<[number | null, NodeJS.Signals | null]> {
  if (child.exitCode !== null || child.signalCode !== null) return [child.exitCode, child.signalCode];
  return (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
}

/** Addresses of the child's present mergeable pages whose every byte is `byte`. */
async function pagesFilledWith(pid: number, byte: number): Promise<number[]> {
  const { addresses } = await mergeablePages(pid);
  const want = Buffer.alloc(PAGE_SIZE, byte);
  const got = Buffer.alloc(PAGE_SIZE);
  const mem = await open(`/proc/${pid}/mem`, 'r');
  try {
    const found: number[] = [];
    for (const address of addresses) {
      const { bytesRead } = await mem.read(got, 0, PAGE_SIZE, address);
      if (bytesRead === PAGE_SIZE && got.equals(want)) found.push(address);
    }
    return found;
  } finally {
    await mem.close();
  }
}

/** The frames now behind `addresses` of the child. */
async function framesAt(pid: number, addresses: number[]): Promise<number[]> {
  const { addresses: all, frames } = await mergeablePages(pid);
  const frameOf = new Map(all.map((a, i) => [a, frames[i]]));
  return addresses.map((a) => frameOf.get(a) ?? 0);
}

test('pagefuse exec --merge: the child has ksm_merge_any, its identical pages merge without madvise, its exit code comes back', async (t) => {
  await withKsm(t, async () => {
    const PAGES = 200;
    const BYTE = 0xa7;
    const child = spawn(process.execPath, cliArgs('exec', '--merge', '--', process.execPath, FILL, String(PAGES), String(BYTE)), {
      cwd: repo,
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    try {
      const pid = await readyPid(child);
      const stat = await ksmStat(pid);
      assert.equal(stat.ksm_merge_any, 'yes');
      assert.equal(stat.ksm_mergeable, 'yes');
      const filled = await pagesFilledWith(pid, BYTE);
      assert.equal(filled.length, PAGES, 'exactly the filled pages hold the pattern');

      await writeFile(`${KSM}/run`, '1');
      const deadline = Date.now() + 60_000;
      let frames = await framesAt(pid, filled);
      let ksm = await ksmFrames(frames);
      while (!(new Set(frames).size === 1 && ksm.has(frames[0]))) {
        assert.ok(Date.now() < deadline, `not merged after 60 s: ${new Set(frames).size} frames, ${ksm.size} KSM`);
        await sleep(200);
        frames = await framesAt(pid, filled);
        ksm = await ksmFrames(frames);
      }
      await writeFile(`${KSM}/run`, '0'); // hold the counters still while they are compared

      // All 200 pages are one KSM page now; the child's count includes them (and whatever else of
      // its memory happened to be identical), and the per-node report places them all on node 0.
      const merging = Number((await ksmStat(pid)).ksm_merging_pages);
      assert.ok(merging >= PAGES, `ksm_merging_pages ${merging}`);
      const byNode = await processMergingByNode(pid);
      const node0 = numaTopology().nodes[0].id;
      assert.equal(byNode.mergingPages, merging, 'pagemap + kpageflags count what the kernel counts');
      assert.deepEqual(byNode.nodes, [{ node: node0, mergingPages: merging }]);
      assert.equal(byNode.unknownNodePages, 0);
      const shared = Number((await readFile(`${KSM}/pages_shared`, 'utf8')).trim());
      assert.deepEqual(await ksmPagesByNode(), [{ node: node0, ksmPages: shared }]);

      child.stdin!.write('exit 7\n');
      assert.deepEqual(await exitOf(child), [7, null]);
    } finally {
      child.kill('SIGKILL');
    }
  }, { settings: { pages_to_scan: 5000, sleep_millisecs: 10 }, fast: false });
});

test('spawnMerged: node binding, CPU affinity and the merge flag reach the command itself', async () => {
  const node = numaTopology().nodes[0];
  const child = spawnMerged(process.execPath, [FILL, '1', '1'], { node: node.id, stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    const pid = await readyPid(child);
    assert.equal(pid, child.pid, 'the helper exec()s: same process');
    assert.equal((await ksmStat(pid)).ksm_merge_any, 'yes');
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    assert.equal(/Cpus_allowed_list:\s*(\S+)/.exec(status)![1], formatIdList(node.cpus));
    const policies = new Set((await readFile(`/proc/${pid}/numa_maps`, 'utf8')).trim().split('\n').map((l) => l.split(' ')[1]));
    assert.deepEqual([...policies], [`bind:${node.id}`]);
    child.stdin!.write('exit 3\n');
    assert.deepEqual(await exitOf(child), [3, null]);
  } finally {
    child.kill('SIGKILL');
  }

  const plain = spawnMerged(process.execPath, [FILL, '1', '1'], { mergeAny: false, stdio: ['pipe', 'pipe', 'inherit'] });
  const pid = await readyPid(plain);
  assert.equal((await ksmStat(pid)).ksm_merge_any, 'no');
  plain.stdin!.end('exit 0\n');
  assert.deepEqual(await exitOf(plain), [0, null]);
});

test('spawnMerged refuses bad input before starting anything, and reports a missing command as a shell would', async () => {
  const nodes = numaTopology().nodes.map((n) => n.id);
  const missing = nodes.at(-1)! + 1;
  assert.throws(() => spawnMerged('true', [], { node: missing }), {
    name: 'RangeError',
    message: `spawnMerged: node ${missing} does not exist: this host has node ${formatIdList(nodes)}`,
  });
  assert.throws(() => spawnMerged('true', [], { node: -1 }), { name: 'RangeError' });
  assert.throws(() => spawnMerged('', []), { name: 'TypeError' });
  assert.throws(() => spawnMerged('true', [1 as unknown as string]), { name: 'TypeError' });
  assert.throws(() => spawnMerged('true', [], { shell: true }), { name: 'TypeError', message: /shell/ });
  assert.throws(() => spawnMerged('true', [], { mergeAny: 'yes' as unknown as boolean }), { name: 'TypeError' });

  const child = spawnMerged(NO_SUCH, ['x'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const closed = once(child, 'close');
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += String(d)));
  assert.deepEqual(await closed, [127, null]);
  assert.equal(stderr, `pagefuse-exec: ${NO_SUCH}: command not found\n`);
  assert.doesNotThrow(() => assertMergeSurvivesExec(), 'Linux 6.7+ keeps the merge flag across exec');
});

test('pagefuse exec passes stdio and the exit status through', () => {
  const r = cli(['exec', '--', 'sh', '-c', 'cat; echo to-stderr >&2; exit 42'], 'hello\n');
  assert.deepEqual(r, { status: 42, stdout: 'hello\n', stderr: 'to-stderr\n' });
  const node0 = numaTopology().nodes[0].id;
  const bound = cli(['exec', '--node', String(node0), '--merge', '--', 'sh', '-c', 'grep merge_any /proc/self/ksm_stat; head -1 /proc/self/numa_maps | cut -d" " -f2']);
  assert.deepEqual(bound, { status: 0, stdout: `ksm_merge_any: yes\nbind:${node0}\n`, stderr: '' });
  const unmerged = cli(['exec', '--', 'grep', 'merge_any', '/proc/self/ksm_stat']);
  assert.equal(unmerged.stdout, 'ksm_merge_any: no\n');
});

/** Starts `pagefuse exec -- CMD…`, waits for the command to print "ready". */
async function startCli(args: string[]): Promise<{ cli: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, cliArgs('exec', '--', ...args), { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += String(d)));
  const deadline = Date.now() + 20_000;
  while (!out.includes('ready')) {
    assert.ok(Date.now() < deadline && child.exitCode === null, `no 'ready' from the command: ${out}`);
    await sleep(20);
  }
  return { cli: child, output: () => out };
}

test('pagefuse exec forwards SIGTERM, SIGINT and SIGHUP, and dies of the signal that killed the command', async () => {
  const handled = await startCli([
    process.execPath,
    '-e',
    "for (const s of ['SIGTERM','SIGINT','SIGHUP']) process.on(s, () => { console.log('got ' + s); process.exit(5); }); console.log('ready'); setInterval(() => {}, 1000);",
  ]);
  handled.cli.kill('SIGHUP');
  assert.deepEqual(await exitOf(handled.cli), [5, null]);
  assert.match(handled.output(), /got SIGHUP/);

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const { cli: c } = await startCli(['sh', '-c', 'echo ready; exec sleep 30']);
    c.kill(signal);
    assert.deepEqual(await exitOf(c), [null, signal]);
  }
  const { cli: killed } = await startCli(['sh', '-c', 'echo ready; kill -KILL $$']);
  assert.deepEqual(await exitOf(killed), [null, 'SIGKILL']);
});

test('pagefuse exec: bad input is exit 2 with one line, a missing command 127, a non-executable one 126', () => {
  const nodes = numaTopology().nodes.map((n) => n.id);
  const missing = nodes.at(-1)! + 1;
  assert.deepEqual(cli(['exec', '--node', String(missing), '--', 'true']), {
    status: 2,
    stdout: '',
    stderr: `pagefuse exec: --node ${missing}: node ${missing} does not exist: this host has node ${formatIdList(nodes)}\n`,
  });
  assert.deepEqual(cli(['exec', '--merge', 'true']), {
    status: 2,
    stdout: '',
    stderr: "pagefuse exec: missing '--' before the command: pagefuse exec [--merge] [--node N | -m LIST | -p N | -i LIST] [-N LIST] [--tenant ID] [--name NAME] [--force] -- COMMAND [ARGS...]\n",
  });
  assert.deepEqual(cli(['exec', '--']), { status: 2, stdout: '', stderr: "pagefuse exec: missing the command after '--'\n" });
  assert.deepEqual(cli(['exec', '--node', 'one', '--', 'true']), {
    status: 2,
    stdout: '',
    stderr: "pagefuse exec: --node must be a whole number from 0 to 1023, got 'one'\n",
  });
  assert.deepEqual(cli(['exec', '--', NO_SUCH, 'arg']), {
    status: 127,
    stdout: '',
    stderr: `pagefuse-exec: ${NO_SUCH}: command not found\n`,
  });
  assert.deepEqual(cli(['exec', '--', FILL]), { status: 126, stdout: '', stderr: `pagefuse-exec: ${FILL}: Permission denied\n` });
  assert.deepEqual(cli(['exec', '--', '/nonexistent/vmm']), {
    status: 127,
    stdout: '',
    stderr: 'pagefuse-exec: /nonexistent/vmm: No such file or directory\n',
  });
  const help = cli(['exec', '--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^usage: pagefuse exec \[--merge\] \[--node N \| NUMACTL OPTIONS\] \[--tenant ID\] \[--name NAME\] \[--force\]\n\s+-- COMMAND/);
});

test('pagefuse-exec speaks numactl: --membind, --cpunodebind, --preferred, --interleave, and refuses nonsense with 2', () => {
  const node = numaTopology().nodes[0];
  const show = ['--', 'sh', '-c', 'head -1 /proc/self/numa_maps | cut -d" " -f2; grep Cpus_allowed_list /proc/self/status | cut -f2'];
  const cpus = formatIdList(node.cpus);
  assert.equal(helper([`--membind=${node.id}`, '--cpunodebind', String(node.id), ...show]).stdout, `bind:${node.id}\n${cpus}\n`);
  assert.equal(helper(['-p', String(node.id), ...show]).stdout, `prefer:${node.id}\n${cpus}\n`);
  assert.equal(helper(['--interleave', 'all', ...show]).stdout, `interleave:${formatIdList(numaTopology().nodes.filter((n) => n.memTotal > 0).map((n) => n.id))}\n${cpus}\n`);
  assert.deepEqual(helper(['--check', '--merge', `--node=${node.id}`]), { status: 0, stdout: '', stderr: '' });
  const usage = (args: string[], line: string) => assert.deepEqual(helper(args), { status: 2, stdout: '', stderr: `pagefuse-exec: ${line}\n` });
  usage(['--membind', '0', '--interleave', '0', '--', 'true'], '--interleave and --membind cannot be combined');
  usage(['--membind', 'x', '--', 'true'], "--membind 'x' is not a node list such as 0-3,5 or all");
  usage(['--preferred', '0,1', '--', 'true'], "--preferred takes one node, got '0,1'");
  usage(['--node'], '--node needs a value');
  usage(['--merge', 'true'], "missing '--' before the command 'true'");
  usage(['--merge'], "missing '--' before the command");
  usage(['--frobnicate', '--', 'true'], "unknown option '--frobnicate'; run 'pagefuse-exec --help'");
});

test("pagefuse exec takes numactl's -m/-N/-p/-i and passes them to the command; conflicting ones are exit 2, one line", () => {
  const node = numaTopology().nodes[0];
  const show = ['--', 'sh', '-c', 'head -1 /proc/self/numa_maps | cut -d" " -f2; grep Cpus_allowed_list /proc/self/status | cut -f2'];
  const cpus = formatIdList(node.cpus);
  const ok = (args: string[], out: string) => assert.deepEqual(cli(['exec', ...args, ...show]), { status: 0, stdout: out, stderr: '' });
  ok(['-m', String(node.id), '-N', String(node.id)], `bind:${node.id}\n${cpus}\n`);
  ok(['--preferred', String(node.id)], `prefer:${node.id}\n${cpus}\n`);
  ok(['-i', 'all', '--cpunodebind=all'], `interleave:${formatIdList(numaTopology().nodes.filter((n) => n.memTotal > 0).map((n) => n.id))}\n${cpus}\n`);
  const usage = (args: string[], line: string) => assert.deepEqual(cli(['exec', ...args, '--', 'true']), { status: 2, stdout: '', stderr: `pagefuse exec: ${line}\n` });
  usage(['-m', '0', '-i', '0'], '--membind and --interleave cannot be combined: a command has one memory policy');
  usage(['--node', '0', '-N', '0'], '--node sets both the memory policy and the CPUs; use --membind/--preferred/--interleave with --cpunodebind instead');
  usage(['-m', 'x'], "--membind must be a node list such as 0-3,5 or all, got 'x'");
  usage(['-p', '0,1'], "--preferred must be a whole number from 0 to 1023, got '0,1'");
});
