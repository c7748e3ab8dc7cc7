// The package as an embedder gets it: `npm pack`, the tarball installed into a fresh project, and the
// embedder's code (test/fixtures/consumer/consumer.ts) type-checked with tsc --strict against the
// packed .d.ts, including lines that must not compile (@ts-expect-error). The tarball's dependencies come
// from the npm cache that installing this repository filled, and their registry metadata from the cache
// too once anything has fetched it: an install from a lockfile fetches the packages but not the full
// metadata an install by version range needs, so on a machine whose cache holds none (a fresh CI machine)
// it comes from the npm registry once (--prefer-offline, as test/package.test.ts installs the tarball).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = new URL('..', import.meta.url).pathname;
const CONSUMER = join(ROOT, 'test/fixtures/consumer/consumer.ts');

test('code written against the packed .d.ts type-checks with tsc --strict, and the lines that must not compile do not', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-consumer-'));
  try {
    // --ignore-scripts: packs the dist that npm install (prepare) or npm run build left, without compiling it again.
    execFileSync('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', dir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
    assert.ok(tarball, 'npm pack wrote a tarball');
    const project = join(dir, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    // --ignore-scripts: the addon is not needed to type-check, and building it would take minutes.
    const install = spawnSync('npm', ['install', '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', join(dir, tarball)], {
      cwd: project,
      encoding: 'utf8',
    });
    assert.equal(install.status, 0, install.stderr);
    // The compiler and Node's types are the embedder's own: here, this repository's.
    mkdirSync(join(project, 'node_modules/@types'), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules/@types/node'), join(project, 'node_modules/@types/node'));
    copyFileSync(CONSUMER, join(project, 'consumer.ts'));
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', noEmit: true, skipLibCheck: false, types: ['node'] },
        files: ['consumer.ts'],
      }),
    );
    const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', project], { encoding: 'utf8' });
    assert.equal(tsc.stdout + tsc.stderr, '', 'tsc reports nothing');
    assert.equal(tsc.status, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
