// 'npm run prebuild' runs prebuildify (the addon, N-API 9, stripped, tagged glibc or musl) and then this,
// which puts the pagefuse-exec helper built alongside into the same prebuilds/<platform>-<arch>/ folder.
// With --check ('npm pack' runs it as prepack) it only checks that both prebuilds exist and are newer
// than every native source and the build file, so a tarball never ships a stale or missing binary.
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const root = path.join(__dirname, '..');
const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const helper = path.join(dir, 'pagefuse-exec');

function fail(message) {
  process.stderr.write(`pagefuse prebuild: ${message}\n`);
  process.exit(1);
}

if (process.argv.includes('--check')) {
  const addons = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.node')) : [];
  if (addons.length === 0 || !fs.existsSync(helper)) fail(`${path.relative(root, dir)} lacks the addon or pagefuse-exec; run 'npm run prebuild' first`);
  const built = Math.min(...[...addons.map((f) => path.join(dir, f)), helper].map((f) => fs.statSync(f).mtimeMs));
  const sources = ['binding.gyp', ...['core', 'binding', 'exec'].flatMap((d) => fs.readdirSync(path.join(root, 'native', d)).map((f) => path.join('native', d, f)))];
  const newer = sources.filter((f) => fs.statSync(path.join(root, f)).mtimeMs > built);
  if (newer.length > 0) fail(`the prebuilds are older than ${newer.slice(0, 3).join(', ')}${newer.length > 3 ? ', …' : ''}; run 'npm run prebuild' again`);
  process.exit(0);
}

const built = path.join(root, 'build', 'Release', 'pagefuse-exec');
if (!fs.existsSync(built)) fail(`${path.relative(root, built)} is missing; prebuildify should have built it with the addon`);
fs.mkdirSync(dir, { recursive: true });
fs.copyFileSync(built, helper);
fs.chmodSync(helper, 0o755);
execFileSync('strip', [helper]);
process.stdout.write(`pagefuse prebuild: ${path.relative(root, helper)}\n`);
