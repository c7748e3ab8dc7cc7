// Lists the C++ sources under native/<dir> for binding.gyp, so a new core or binding file
// needs no edit of the build file. Paths are relative to the package root.
'use strict';
const fs = require('fs');
const path = require('path');
const root = path.join(__dirname, '..');
const files = [];
for (const dir of process.argv.slice(2)) {
  for (const f of fs.readdirSync(path.join(root, 'native', dir)).sort()) {
    if (f.endsWith('.cc')) files.push(`native/${dir}/${f}`);
  }
}
process.stdout.write(files.join(' '));
