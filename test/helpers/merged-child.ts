// A VM-like process for tests: PAGES pages of identical content in one mergeable region, under a
// process title like a guest's. Prints "ready" once the memory is written; exits when stdin closes.
import { Region, PAGE_SIZE } from '../../src/index.js';

const pages = Number(process.argv[2] ?? 64);
process.title = process.argv[3] ?? 'pagefuse-vm';
const region = Region.alloc(pages * PAGE_SIZE, { hugepages: 'never' });
new Uint8Array(region.buffer).fill(0x5a);
region.advise('mergeable');
process.stdout.write('ready\n');
process.stdin.resume();
process.stdin.on('end', () => {
  region.dispose();
  process.exit(0);
});
