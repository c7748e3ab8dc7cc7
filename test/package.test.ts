// The tarball a user installs: what it holds, and that it installs and runs on a host with no compiler,
// make or python (the prebuilt addon and pagefuse-exec load; nothing is compiled).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO } from './helpers/cli.js';

const BUILD_TOOLS = /^(cc|c\+\+|cpp|gcc|g\+\+|clang|clang\+\+|ld|as|make|gmake|cmake|python|node-gyp)([-.\d].*)?$|^x86_64-linux-gnu-|^python3|gcc|g\+\+/;
// The files a user needs, and only those: the build, the prebuilds, what a rebuild from source reads,
// the service units and monitoring kit, the docs and the licence.
const ALLOWED = /^(dist\/.+\.(js|d\.ts)|prebuilds\/linux-x64\/(pagefuse\.glibc\.node|pagefuse-exec)|native\/(core|binding|exec)\/[\w.]+\.(cc|h)|binding\.gyp|scripts\/(native-sources|xxhash-include)\.cjs|bin\/pagefuse-exec|systemd\/.+|contrib\/.+|README\.md|LICENSE|package\.json)$/;

interface Packed {
  filename: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: { path: string; mode: number }[];
}

let work = '';
let packed: Packed | undefined;
let project = '';
let onlyNodePath = '';
let whyNot: string | undefined;

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 240_000 });
}

before(() => {
  // The prebuilds come from 'npm run prebuild' (.ci/run runs it before npm test); pack refuses stale ones.
  const check = run(process.execPath, ['scripts/prebuild-exec.cjs', '--check'], REPO, process.env);
  if (check.status !== 0) {
    whyNot = check.stderr.trim();
    return;
  }
  work = mkdtempSync(join(tmpdir(), 'pagefuse-pack-'));
  const pack = run('npm', ['pack', '--json', '--pack-destination', work], REPO, process.env);
  assert.equal(pack.status, 0, pack.stderr);
  packed = (JSON.parse(pack.stdout) as Packed[])[0];

  // A host without build tools: one PATH directory with this host's commands but no compiler, assembler,
  // linker, make, cmake, python or node-gyp (sh, readlink and uname stay: npm and pagefuse-exec use them).
  onlyNodePath = join(work, 'bin');
  mkdirSync(onlyNodePath);
  for (const dir of ['/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    for (const tool of existsSync(dir) ? readdirSync(dir) : []) {
      if (BUILD_TOOLS.test(tool) || existsSync(join(onlyNodePath, tool))) continue;
      symlinkSync(join(dir, tool), join(onlyNodePath, tool));
    }
  }
  rmSync(join(onlyNodePath, 'node'), { force: true });
  symlinkSync(process.execPath, join(onlyNodePath, 'node'));
  project = join(work, 'app');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
});

after(() => {
  if (work !== '') rmSync(work, { recursive: true, force: true });
});

function needPack(t: { skip(msg: string): void }): Packed | undefined {
  if (packed !== undefined) return packed;
  if (process.env.CI) assert.fail(`CI must run 'npm run prebuild' before the tests: ${whyNot}`);
  t.skip(whyNot ?? 'not packed');
  return undefined;
}

const env = (): NodeJS.ProcessEnv => ({ HOME: process.env.HOME, PATH: onlyNodePath, npm_config_update_notifier: 'false' });

test('the tarball holds only dist, the linux-x64 prebuilds, native sources, units, kit, README and LICENSE', (t) => {
  const p = needPack(t);
  if (p === undefined) return;
  const outside = p.files.map((f) => f.path).filter((f) => !ALLOWED.test(f));
  assert.deepEqual(outside, []);
  const paths = new Set(p.files.map((f) => f.path));
  for (const need of ['prebuilds/linux-x64/pagefuse.glibc.node', 'prebuilds/linux-x64/pagefuse-exec', 'bin/pagefuse-exec', 'LICENSE', 'dist/cli/bin.js', 'binding.gyp']) {
    assert.ok(paths.has(need), need);
  }
  t.diagnostic(`${p.filename}: ${p.entryCount} files, ${p.size} bytes packed, ${p.unpackedSize} unpacked`);
});

test('installed with no compiler, linker, make or python on PATH, nothing is compiled and status --json runs', (t) => {
  const p = needPack(t);
  if (p === undefined) return;
  for (const tool of ['cc', 'c++', 'gcc', 'g++', 'ld', 'make', 'cmake', 'python3', 'node-gyp']) {
    assert.notEqual(spawnSync('sh', ['-c', `command -v ${tool}`], { env: env() }).status, 0, `${tool} is on the test PATH`);
  }
  const install = run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(work, p.filename)], project, env());
  assert.equal(install.status, 0, install.stderr);
  const pkg = join(project, 'node_modules', 'pagefuse');
  assert.equal(existsSync(join(pkg, 'build')), false, 'a build/ directory: the install compiled');
  assert.equal(existsSync(join(project, 'node_modules', 'xxhash-addon')), false, 'xxhash-addon was installed');
  const status = run('npx', ['pagefuse', 'status', '--json'], project, env());
  assert.equal(status.status, 0, status.stderr);
  const json = JSON.parse(status.stdout) as { ksm: { available: boolean; settings: { run: number } } };
  assert.equal(json.ksm.available, existsSync('/sys/kernel/mm/ksm/run'));
  assert.equal(typeof json.ksm.settings.run, 'number');
});

test('installed from the tarball, Region.alloc and scan() work through the prebuilt addon', (t) => {
  const p = needPack(t);
  if (p === undefined) return;
  assert.ok(existsSync(join(project, 'node_modules', 'pagefuse')), 'the install test installs the tarball first');
  const script = `
    import { Region, scan } from 'pagefuse';
    const region = Region.alloc(64 * 4096, { mergeable: true });
    const bytes = new Uint8Array(region.buffer);
    for (let i = 0; i < 64; i++) bytes.fill(i % 8 + 1, i * 4096, (i + 1) * 4096);
    const r = await scan(region, { mode: 'exact' });
    region.dispose();
    console.log(JSON.stringify({ pages: r.pages, saved: r.estimatedSavedPages }));`;
  const r = run(process.execPath, ['--input-type=module', '-e', script], project, env());
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { pages: 64, saved: 56 });
});

test('the installed pagefuse-exec command execs the command in its own place: same pid, no Node or shell parent left', async (t) => {
  const p = needPack(t);
  if (p === undefined) return;
  const bin = join(project, 'node_modules', '.bin', 'pagefuse-exec');
  assert.ok(statSync(bin).isFile());
  const child = spawn(bin, ['--', '/bin/sh', '-c', 'echo $$; cat /proc/$$/comm'], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.equal(code, 0);
  assert.equal(out, `${child.pid}\nsh\n`);
});
