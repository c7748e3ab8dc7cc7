// Prints the directory holding the xxhash.h that binding.gyp compiles against (a build from source only;
// prebuilt installs never run it). The hashing kernels use xxhash.h's internals, so the header must be
// exactly xxHash 0.8.3: the copy inside xxhash-addon 2.1.0 (a devDependency here, an optional peer for
// users who build from source), or XXHASH_INCLUDE_DIR, or the system's (libxxhash-dev 0.8.3, Debian 13).
'use strict';
const fs = require('fs');
const path = require('path');

const WANT = '0.8.3';

function version(dir) {
  let text;
  try {
    text = fs.readFileSync(path.join(dir, 'xxhash.h'), 'utf8');
  } catch {
    return undefined;
  }
  const part = (name) => (new RegExp(`#define XXH_VERSION_${name}\\s+(\\d+)`).exec(text) ?? [])[1];
  return `${part('MAJOR')}.${part('MINOR')}.${part('RELEASE')}`;
}

const candidates = [];
if (process.env.XXHASH_INCLUDE_DIR) candidates.push(['XXHASH_INCLUDE_DIR', process.env.XXHASH_INCLUDE_DIR]);
try {
  candidates.push(['xxhash-addon', path.join(path.dirname(require.resolve('xxhash-addon/package.json')), 'xxHash')]);
} catch {
  // Not installed: the usual case for a user's build from source; fall through to the system header.
}
candidates.push(['libxxhash-dev', '/usr/include']);

const tried = [];
for (const [what, dir] of candidates) {
  const v = version(dir);
  if (v === WANT) {
    process.stdout.write(dir);
    process.exit(0);
  }
  tried.push(`${what} (${dir}): ${v === undefined ? 'no xxhash.h' : `xxHash ${v}`}`);
}
process.stderr.write(
  `pagefuse: building from source needs xxHash ${WANT}'s xxhash.h: run 'npm install xxhash-addon@2.1.0 --ignore-scripts', ` +
    `or set XXHASH_INCLUDE_DIR to a directory holding it. Tried: ${tried.join('; ')}\n`,
);
process.exit(1);
