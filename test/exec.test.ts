// pagefuse exec, spawnMerged and the pagefuse-exec helper, for real on this machine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { open, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnMerged, numaTopology, PAGE_SIZE } from '../src/index.js';
import { execHelperPath } from '../src/native.js';
import { assertMergeSurvivesExec } from '../src/launch/spawn.js';
import { mergeablePages, ksmFrames } from '../src/numa/ksm-nodes.js';
import { formatIdList } from '../src/numa/topology.js';
import { builtBin, runCli, startCli, type CliProcess, type CliResult } from './helpers/cli.js';
import { withKsm } from './helpers/ksm.js';
import { readyPid } from './helpers/children.js';

const FILL = fileURLToPath(new URL('./fixtures/fill-pages.mjs', import.meta.url));
const KSM = '/sys/kernel/mm/ksm';
const NO_SUCH = 'no-such-command-pagefuse';
const bin = builtBin();

function cli(args: string[], input?: string): Omit<CliResult, 'signal'> {
  const { status, stdout, stderr } = runCli(args, { bin, input });
  return { status, stdout, stderr };
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

/** `pagefuse exec ARGS…` started; resolves once the command has printed a line matching `ready`. */
async function startExec(args: string[], ready: RegExp, stdin = false): Promise<{ cli: CliProcess; line: string }> {
  const c = startCli(['exec', ...args], { bin, stdin });
  const line = await c.next((l) => ready.test(String(l.text)), 30_000, `a line matching ${ready}`);
  return { cli: c, line: String(line.text) };
}

test('pagefuse exec --merge: the command has ksm_merge_any and its identical pages merge without madvise', async (t) => {
  await withKsm(t, async () => {
    const PAGES = 200;
    const BYTE = 0xa7;
    const { cli: c, line } = await startExec(['--merge', '--', process.execPath, FILL, String(PAGES), String(BYTE)], /^ready \d+$/, true);
    try {
      const pid = Number(line.split(' ')[1]);
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
      await writeFile(`${KSM}/run`, '0');
      // All 200 pages are one KSM page now; the child's count includes them (and whatever else of its
      // memory happened to be identical). Where they sit per node: status-numa's real-child test.
      const merging = Number((await ksmStat(pid)).ksm_merging_pages);
      assert.ok(merging >= PAGES, `ksm_merging_pages ${merging}`);
      c.child.stdin!.end('exit 7\n');
      assert.deepEqual(await c.exited, { status: 7, signal: null });
    } finally {
      c.kill('SIGKILL');
    }
  }, { settings: { pages_to_scan: 5000, sleep_millisecs: 10 }, fast: false });
});

test('spawnMerged with a node: the command runs bound to its memory and CPUs, with the merge flag', async () => {
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
});

test('spawnMerged with mergeAny: false starts the command without the merge flag', async () => {
  const plain = spawnMerged(process.execPath, [FILL, '1', '1'], { mergeAny: false, stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    const pid = await readyPid(plain);
    assert.equal((await ksmStat(pid)).ksm_merge_any, 'no');
    plain.stdin!.end('exit 0\n');
    assert.deepEqual(await exitOf(plain), [0, null]);
  } finally {
    plain.kill('SIGKILL');
  }
});

test('pagefuse exec with a state directory that cannot be made (under /proc) fails on one line, where it spun at 100 % of a CPU', () => {
  const { status, stderr } = runCli(['exec', '--', 'true'], { bin, env: { PAGEFUSE_STATE_DIR: '/proc' }, timeoutMs: 20_000 });
  assert.deepEqual([status, stderr], [125, 'pagefuse exec: cannot create the directory /proc/processes: ENOENT (its parent is there, but takes no new directory)\n']);
});

test('spawnMerged refuses bad input by throwing, before starting anything', () => {
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
});

test('spawnMerged of a missing command exits 127 with a shell\'s "command not found" line', async () => {
  const child = spawnMerged(NO_SUCH, ['x'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const closed = once(child, 'close');
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += String(d)));
  assert.deepEqual(await closed, [127, null]);
  assert.equal(stderr, `pagefuse-exec: ${NO_SUCH}: command not found\n`);
});

test('this kernel keeps the merge flag across exec (Linux 6.7+), as spawnMerged requires', () => {
  assert.doesNotThrow(() => assertMergeSurvivesExec());
});

test('pagefuse exec passes stdin, stdout, stderr and the exit status through', () => {
  const r = cli(['exec', '--', 'sh', '-c', 'cat; echo to-stderr >&2; exit 42'], 'hello\n');
  assert.deepEqual(r, { status: 42, stdout: 'hello\n', stderr: 'to-stderr\n' });
});

test('pagefuse exec --node N --merge: the command has the merge flag and its memory bound to N', () => {
  const node0 = numaTopology().nodes[0].id;
  const bound = cli(['exec', '--node', String(node0), '--merge', '--', 'sh', '-c', 'grep merge_any /proc/self/ksm_stat; head -1 /proc/self/numa_maps | cut -d" " -f2']);
  assert.deepEqual(bound, { status: 0, stdout: `ksm_merge_any: yes\nbind:${node0}\n`, stderr: '' });
});

test('pagefuse exec without --merge: the command has no merge flag', () => {
  const unmerged = cli(['exec', '--', 'grep', 'merge_any', '/proc/self/ksm_stat']);
  assert.deepEqual(unmerged, { status: 0, stdout: 'ksm_merge_any: no\n', stderr: '' });
});

test('pagefuse exec forwards SIGHUP to the command, which handles it', async () => {
  const { cli: handled } = await startExec([
    '--',
    process.execPath,
    '-e',
    "for (const s of ['SIGTERM','SIGINT','SIGHUP']) process.on(s, () => { console.log('got ' + s); process.exit(5); }); console.log('ready'); setInterval(() => {}, 1000);",
  ], /^ready$/);
  handled.kill('SIGHUP');
  assert.deepEqual(await handled.exited, { status: 5, signal: null });
  assert.deepEqual(handled.lines.map((l) => l.text), ['ready', 'got SIGHUP']);
});

test('pagefuse exec forwards SIGTERM and SIGINT, and dies of the signal that killed the command', async () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const { cli: c } = await startExec(['--', 'sh', '-c', 'echo ready; exec sleep 30'], /^ready$/);
    c.kill(signal);
    assert.deepEqual(await c.exited, { status: null, signal }, signal);
  }
});

test('pagefuse exec of a command that dies of SIGKILL dies of SIGKILL too', async () => {
  const { cli: killed } = await startExec(['--', 'sh', '-c', 'echo ready; kill -KILL $$'], /^ready$/);
  assert.deepEqual(await killed.exited, { status: null, signal: 'SIGKILL' });
});

test('pagefuse exec passes on a signal that comes while the command is being started, and leaves no record behind', async () => {
  // The command signals its launcher as its first act, while the launcher may still be registering it.
  // Before the fix, about one launch in three died at once: the command ran on, orphaned, and a .tmp file
  // was left in the registry. Eight launches: all must forward.
  const stateDir = mkdtempSync(join(tmpdir(), 'pf-exec-signal-'));
  try {
    for (let i = 0; i < 8; i++) {
      const c = startCli(['exec', '--', 'sh', '-c', 'echo $$; kill -TERM $PPID; exec sleep 30'], { bin, env: { PAGEFUSE_STATE_DIR: stateDir } });
      const line = await c.next(() => true, 30_000, 'the command pid');
      const pid = Number(line.text);
      assert.deepEqual(await c.exited, { status: null, signal: 'SIGTERM' }, `launch ${i}`);
      let alive = existsSync(`/proc/${pid}`);
      for (let wait = 0; alive && wait < 20; wait++) {
        await sleep(100);
        alive = existsSync(`/proc/${pid}`);
      }
      if (alive) process.kill(pid, 'SIGKILL');
      assert.equal(alive, false, `launch ${i}: the command ${pid} outlived its launcher`);
    }
    assert.deepEqual(readdirSync(join(stateDir, 'processes')), []);
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('pagefuse exec: bad input is one line, exit 2', () => {
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
});

test('pagefuse exec of a missing command is one line, exit 127, as a shell says it', () => {
  assert.deepEqual(cli(['exec', '--', NO_SUCH, 'arg']), {
    status: 127,
    stdout: '',
    stderr: `pagefuse-exec: ${NO_SUCH}: command not found\n`,
  });
  assert.deepEqual(cli(['exec', '--', '/nonexistent/vmm']), {
    status: 127,
    stdout: '',
    stderr: 'pagefuse-exec: /nonexistent/vmm: No such file or directory\n',
  });
});

test('pagefuse exec of a file that is not executable is one line, exit 126', () => {
  assert.deepEqual(cli(['exec', '--', FILL]), { status: 126, stdout: '', stderr: `pagefuse-exec: ${FILL}: Permission denied\n` });
});

test('pagefuse exec --help prints the usage on stdout, exit 0', () => {
  const help = cli(['exec', '--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^usage: pagefuse exec \[--merge\] \[--node N \| NUMACTL OPTIONS\] \[--tenant ID\] \[--name NAME\] \[--force\]\n\s+-- COMMAND/);
});

const SHOW_POLICY = ['--', 'sh', '-c', 'head -1 /proc/self/numa_maps | cut -d" " -f2; grep Cpus_allowed_list /proc/self/status | cut -f2'];
const memoryNodes = () => formatIdList(numaTopology().nodes.filter((n) => n.memTotal > 0).map((n) => n.id));

test('pagefuse-exec applies numactl\'s --membind, --cpunodebind, --preferred and --interleave to the command', () => {
  const node = numaTopology().nodes[0];
  const cpus = formatIdList(node.cpus);
  assert.equal(helper([`--membind=${node.id}`, '--cpunodebind', String(node.id), ...SHOW_POLICY]).stdout, `bind:${node.id}\n${cpus}\n`);
  assert.equal(helper(['-p', String(node.id), ...SHOW_POLICY]).stdout, `prefer:${node.id}\n${cpus}\n`);
  assert.equal(helper(['--interleave', 'all', ...SHOW_POLICY]).stdout, `interleave:${memoryNodes()}\n${cpus}\n`);
});

test('pagefuse-exec --check exits 0 with no output when the settings can be applied', () => {
  const node = numaTopology().nodes[0];
  assert.deepEqual(helper(['--check', '--merge', `--node=${node.id}`]), { status: 0, stdout: '', stderr: '' });
});

test('pagefuse-exec refuses conflicting and malformed options with one line, exit 2', () => {
  const usage = (args: string[], line: string) => assert.deepEqual(helper(args), { status: 2, stdout: '', stderr: `pagefuse-exec: ${line}\n` });
  usage(['--membind', '0', '--interleave', '0', '--', 'true'], '--interleave and --membind cannot be combined');
  usage(['--membind', 'x', '--', 'true'], "--membind 'x' is not a node list such as 0-3,5 or all");
  usage(['--preferred', '0,1', '--', 'true'], "--preferred takes one node, got '0,1'");
  usage(['--node'], '--node needs a value');
  usage(['--merge', 'true'], "missing '--' before the command 'true'");
  usage(['--merge'], "missing '--' before the command");
  usage(['--frobnicate', '--', 'true'], "unknown option '--frobnicate'; run 'pagefuse-exec --help'");
});

test("pagefuse exec takes numactl's -m/-N/-p/-i and passes them to the command", () => {
  const node = numaTopology().nodes[0];
  const cpus = formatIdList(node.cpus);
  const ok = (args: string[], out: string) => assert.deepEqual(cli(['exec', ...args, ...SHOW_POLICY]), { status: 0, stdout: out, stderr: '' });
  ok(['-m', String(node.id), '-N', String(node.id)], `bind:${node.id}\n${cpus}\n`);
  ok(['--preferred', String(node.id)], `prefer:${node.id}\n${cpus}\n`);
  ok(['-i', 'all', '--cpunodebind=all'], `interleave:${memoryNodes()}\n${cpus}\n`);
});

test("pagefuse exec refuses conflicting or malformed numactl options with one line, exit 2", () => {
  const usage = (args: string[], line: string) => assert.deepEqual(cli(['exec', ...args, '--', 'true']), { status: 2, stdout: '', stderr: `pagefuse exec: ${line}\n` });
  usage(['-m', '0', '-i', '0'], '--membind and --interleave cannot be combined: a command has one memory policy');
  usage(['--node', '0', '-N', '0'], '--node sets both the memory policy and the CPUs; use --membind/--preferred/--interleave with --cpunodebind instead');
  usage(['-m', 'x'], "--membind must be a node list such as 0-3,5 or all, got 'x'");
  usage(['-p', '0,1'], "--preferred must be a whole number from 0 to 1023, got '0,1'");
});
