// The fleet on one machine, with real processes: 8 simulated hosts, each a real `pagefuse serve` in
// its own PID and network namespace (veth pairs on private addresses of namespaces this test makes),
// with generated guests whose overlap is planted in layers (OS, version, application); plus a host
// under another fleet key, one that never answers and one that answers garbage. `pagefuse plan`
// reads them all over the veths. Every namespace, veth and process is removed afterwards, even when
// a step fails. Guest memory is mergeable, so the test holds the machine-wide KSM test lock.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, chmodSync } from 'node:fs';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lockKsm } from './helpers/lock.js';
import { REPO, builtBin, runCliAsync, startCli, type CliResult } from './helpers/cli.js';
import { plantedVm, type PlantedLayers } from '../src/workload/planted.js';
import type { FleetHostConfig } from './helpers/fleet-host.js';

const HOSTS = 8;
const PER_HOST = 4;
const PAGE = 4096;
const LAYERS: PlantedLayers = { oses: 2, versionsPerOs: 2, appsPerVersion: 2, osPages: 1024, versionPages: 512, appPages: 256, ownPages: 256 };
const VM_PAGES = 2048;
const PREFIX = `pff${process.pid % 100000}`;
const OCTET = 16 + (process.pid % 200);

const dir = mkdtempSync(join(tmpdir(), 'pagefuse-fleet-'));
const namespaces: string[] = [];
const launchers: ChildProcess[] = [];
const servers: (Server | NetServer)[] = [];
const sockets = new Set<Socket>();
let release: (() => void) | undefined;
let plan: any;
let planStderr = '';
const truth = new Map<string, Set<string>>();
const hostOf = new Map<string, string>();
const familyOf = new Map<string, number>();

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function addr(i: number, side: 1 | 2): string {
  return `10.231.${OCTET}.${4 * i + side}`;
}

/** A network namespace joined to this one by a veth pair, on a /30 of its own. */
function makeNamespace(i: number): string {
  const ns = `${PREFIX}-${i}`;
  ip('netns', 'add', ns);
  namespaces.push(ns);
  ip('link', 'add', `${PREFIX}h${i}`, 'type', 'veth', 'peer', 'name', `${PREFIX}n${i}`);
  ip('link', 'set', `${PREFIX}n${i}`, 'netns', ns);
  ip('addr', 'add', `${addr(i, 1)}/30`, 'dev', `${PREFIX}h${i}`);
  ip('link', 'set', `${PREFIX}h${i}`, 'up');
  ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${addr(i, 2)}/30`, 'dev', `${PREFIX}n${i}`);
  ip('netns', 'exec', ns, 'ip', 'link', 'set', `${PREFIX}n${i}`, 'up');
  ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
  return ns;
}

/** Starts the host's launcher as PID 1 of a new PID namespace inside `ns`; resolves when its serve listens. */
function launch(ns: string, config: FleetHostConfig): Promise<void> {
  const cp = spawn('ip', ['netns', 'exec', ns, 'unshare', '--pid', '--fork', '--mount-proc', '--kill-child', process.execPath, '--import', 'tsx', 'test/helpers/fleet-host.ts', JSON.stringify(config)], {
    cwd: REPO,
    detached: true,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  launchers.push(cp);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${ns}: serve not ready after 120 s`)), 120_000);
    cp.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('READY')) {
        clearTimeout(timer);
        resolve();
      }
    });
    cp.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${ns}: launcher exited (${code})`));
    });
  });
}

function listenLocal(server: Server | NetServer): Promise<number> {
  servers.push(server);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
}

/** The built CLI: every simulated host starts a serve, so tsx's start-up cost would count nine times. */
const bin = builtBin();

function runPlan(args: string[]): Promise<CliResult> {
  return runCliAsync(['plan', ...args], { bin, timeoutMs: 120_000 });
}

function cleanup(): void {
  for (const cp of launchers) {
    try {
      if (cp.pid !== undefined) process.kill(-cp.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
  for (const ns of namespaces.splice(0)) {
    try {
      ip('netns', 'del', ns);
    } catch {
      // a namespace a failed step never made
    }
  }
  // Deleting a namespace destroys its veth end and with it the pair; make sure of the host ends.
  for (let i = 0; i <= HOSTS; i++) {
    try {
      ip('link', 'del', `${PREFIX}h${i}`);
    } catch {
      // gone with its namespace
    }
  }
  rmSync(dir, { recursive: true, force: true });
  release?.();
}

before(async () => {
  release = await lockKsm();
  try {
    const key = join(dir, 'fleet.key');
    const otherKey = join(dir, 'other.key');
    const token = join(dir, 'token');
    writeFileSync(key, 'planted-fleet-key-for-the-namespace-test\n', { mode: 0o600 });
    writeFileSync(otherKey, 'another-fleet-key-entirely-0123456789\n', { mode: 0o600 });
    writeFileSync(token, 'fleet-test-token-0123456789abcdef\n', { mode: 0o600 });
    chmodSync(key, 0o600);
    const taken = new Array<number>(8).fill(0);
    const configs: FleetHostConfig[] = [];
    for (let h = 0; h < HOSTS; h++) {
      const guests = [];
      for (let j = 0; j < PER_HOST; j++) {
        const f = (h + j) % 8;
        const k = taken[f]++;
        const vm = plantedVm(LAYERS, f, k);
        const name = `default/f${f}-${k}`;
        guests.push({ name, seed: vm.ownSeed, layers: vm.layers, ownPages: vm.ownPages });
        hostOf.set(name, `node-${h}`);
        familyOf.set(name, f);
      }
      configs.push({
        listen: `${addr(h, 2)}:9464`,
        node: `node-${h}`,
        stateDir: join(dir, `state-${h}`),
        keyFile: key,
        tokenFile: token,
        modulus: 8,
        capacityBytes: (PER_HOST + 1) * VM_PAGES * PAGE,
        truthFile: join(dir, `truth-${h}.json`),
        bin,
        guests,
      });
    }
    // The ninth host sketches under another fleet key.
    configs.push({ ...configs[0], listen: `${addr(HOSTS, 2)}:9464`, node: 'node-other-key', stateDir: join(dir, 'state-x'), keyFile: otherKey, truthFile: join(dir, 'truth-x.json'), guests: configs[0].guests.slice(0, 1).map((g) => ({ ...g, name: 'default/x' })) });
    for (let i = 0; i < configs.length; i++) makeNamespace(i);
    await Promise.all(configs.map((c, i) => launch(namespaces[i], c)));
    for (let h = 0; h < HOSTS; h++) {
      const t = JSON.parse(readFileSync(configs[h].truthFile, 'utf8')) as Record<string, string[]>;
      for (const [vm, values] of Object.entries(t)) truth.set(vm, new Set(values));
    }
    const silent = await listenLocal(createNetServer(() => undefined));
    const garbage = await listenLocal(createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>hello</html>')));
    const list = join(dir, 'hosts.txt');
    writeFileSync(list, [...configs.map((c) => c.listen), `127.0.0.1:${silent}`, `127.0.0.1:${garbage}`, ''].join('\n'));
    const r = await runPlan(['--hosts', list, '--fleet-key', key, '--token', token, '--timeout', '3s', '--overlaps']);
    planStderr = r.stderr;
    assert.equal(r.status, 0, r.stderr);
    plan = JSON.parse(r.stdout);
    plan.silentTarget = `127.0.0.1:${silent}`;
    plan.garbageTarget = `127.0.0.1:${garbage}`;
    plan.otherTarget = configs[HOSTS].listen;
    plan.listFile = list;
    plan.keyFile = key;
    plan.tokenFile = token;
  } catch (err) {
    cleanup();
    throw err;
  }
});

after(() => cleanup());

/** What KSM saves across VMs with this placement: per host, a content held by k VMs saves k − 1 pages. */
function trueSaving(placement: Map<string, string>): number {
  const perHost = new Map<string, Map<string, number>>();
  for (const [vm, host] of placement) {
    const m = perHost.get(host) ?? new Map<string, number>();
    perHost.set(host, m);
    for (const v of truth.get(vm)!) m.set(v, (m.get(v) ?? 0) + 1);
  }
  let saving = 0;
  for (const m of perHost.values()) for (const k of m.values()) saving += k - 1;
  return saving;
}

test('plan reads the 8 namespaced hosts and every VM on them', () => {
  assert.equal(plan.hosts_answered, HOSTS);
  assert.equal(plan.vms, HOSTS * PER_HOST);
  assert.deepEqual(plan.hosts.map((h: { host: string }) => h.host), Array.from({ length: HOSTS }, (_, i) => `node-${i}`));
});

test('every overlap estimate is within its stated bound of the truth from the full hash sets', (t) => {
  let errorSum = 0;
  let errorMost = 0;
  const misses = plan.overlaps.filter((o: { vm: string; host: string; pages: number; bound_pages: number }) => {
    const there = new Set<string>();
    for (const [vm, h] of hostOf) if (h === o.host && vm !== o.vm) for (const v of truth.get(vm)!) there.add(v);
    let n = 0;
    for (const v of truth.get(o.vm)!) if (there.has(v)) n++;
    // The error as a share of the VM's distinct contents (the table of docs/fleet.md measures it so).
    const error = Math.abs(n - o.pages) / truth.get(o.vm)!.size;
    errorSum += error;
    errorMost = Math.max(errorMost, error);
    return Math.abs(n - o.pages) > o.bound_pages;
  });
  t.diagnostic(`overlap estimates: mean error ${((100 * errorSum) / plan.overlaps.length).toFixed(2)} % of the VM, worst ${(100 * errorMost).toFixed(2)} %, ${misses.length} of ${plan.overlaps.length} outside their bound`);
  assert.equal(plan.overlaps.length, HOSTS * PER_HOST * HOSTS);
  assert.deepEqual(misses, []);
});

test('the plan realises at least 90 % of the best saving of the planted fleet, within capacity', (t) => {
  const after = new Map(hostOf);
  for (const m of plan.moves) after.set(m.vm, m.to);
  const best = new Map([...familyOf].map(([vm, f]) => [vm, `node-${f}`] as const));
  const gained = trueSaving(after) - trueSaving(hostOf);
  const possible = trueSaving(best) - trueSaving(hostOf);
  for (const h of plan.hosts) assert.ok(h.used_bytes_after <= h.capacity_bytes, `${h.host} over capacity`);
  t.diagnostic(`fleet plan: ${plan.moves.length} moves realise ${gained} of ${possible} pages (${((100 * gained) / possible).toFixed(1)} %), expected ${plan.expected_saving_bytes / PAGE} ± ${plan.bound_bytes / PAGE}`);
  assert.ok(gained >= 0.9 * possible, `plan gained ${gained} pages of ${possible} possible`);
});

test('a host under another fleet key is reported, not planned with', () => {
  const f = plan.failures.find((x: { target: string }) => x.target === plan.otherTarget);
  assert.match(f?.reason ?? '', /^sketched under fleet key [0-9a-f]{16}, not this fleet's key [0-9a-f]{16}: its values cannot be compared$/);
  assert.match(planStderr, new RegExp(`host "${plan.otherTarget}" left out: sketched under fleet key`));
});

test('a host that never answers is reported as timed out', () => {
  assert.deepEqual(plan.failures.find((x: { target: string }) => x.target === plan.silentTarget), { target: plan.silentTarget, reason: 'no answer within 3000 ms' });
});

test('a host that answers garbage is reported as not a sketch', () => {
  assert.deepEqual(plan.failures.find((x: { target: string }) => x.target === plan.garbageTarget), { target: plan.garbageTarget, reason: 'not a pagefuse sketch: the answer is not JSON' });
});

test('the extender scores the nodes of a virt-launcher pod by what its VM shares there', async () => {
  const extender = startCli(['plan', '--extender', '127.0.0.1:0', '--hosts', plan.listFile, '--fleet-key', plan.keyFile, '--token', plan.tokenFile, '--timeout', '3s'], { bin });
  launchers.push(extender.child);
  const listening = await extender.next((l) => /listening on \S+/.test(String(l.text)), 60_000, 'the extender listening');
  const url = /listening on (\S+)/.exec(String(listening.text))![1];
  // ExtenderArgs as kube-scheduler sends it (no nodeCacheCapable: Nodes is a v1.NodeList).
  const args = {
    Pod: { metadata: { name: 'virt-launcher-f0-1-abcde', namespace: 'default', labels: { 'kubevirt.io': 'virt-launcher' }, annotations: { 'kubevirt.io/domain': 'f0-1' } } },
    Nodes: { items: Array.from({ length: HOSTS }, (_, i) => ({ metadata: { name: `node-${i}` } })) },
  };
  const res = await fetch(url, { method: 'POST', body: JSON.stringify(args), headers: { 'content-type': 'application/json' } });
  const list = (await res.json()) as { Host: string; Score: number }[];
  extender.kill('SIGTERM');
  assert.equal(res.status, 200);
  assert.deepEqual(list.map((p) => Object.keys(p)), Array.from({ length: HOSTS }, () => ['Host', 'Score']));
  assert.deepEqual(list.map((p) => p.Host), args.Nodes.items.map((n) => n.metadata.name));
  assert.ok(list.every((p) => Number.isInteger(p.Score) && p.Score >= 0 && p.Score <= 10));
  // f0-1 is the second VM of family 0; the other family-0 VMs run on node-0 and node-6, node-7 (planted).
  const top = list.filter((p) => p.Score === 10).map((p) => p.Host);
  const family0 = [...hostOf].filter(([vm]) => familyOf.get(vm) === 0 && vm !== 'default/f0-1').map(([, h]) => h);
  assert.ok(top.every((h) => family0.includes(h)) && top.length >= 1, `top ${top} not among ${family0}`);
});
