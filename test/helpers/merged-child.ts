// A VM-like process for tests: PAGES pages of identical content in one mergeable region. Started through a
// qemu-system-x86_64 symlink with `-name guest=NAME` (report-ksm.ts), VM discovery sees a QEMU guest.
// Prints "ready" once the memory is written; exits when stdin closes.
import { Region, PAGE_SIZE } from '../../src/index.js';

const pages = Number(process.argv[2] ?? 64);
// 'same': every page alike (they merge inside this process); 'indexed': page i holds i (they merge only
// with another child's page i).
const pattern = process.argv[3] ?? 'same';
const region = Region.alloc(pages * PAGE_SIZE, { hugepages: 'never' });
const words = new Uint32Array(region.buffer);
if (pattern === 'same') words.fill(0x5a5a5a5a);
else for (let i = 0; i < pages; i++) words.fill(0x1000 + i, (i * PAGE_SIZE) / 4, ((i + 1) * PAGE_SIZE) / 4);
region.advise('mergeable');
process.stdout.write('ready\n');
process.stdin.resume();
process.stdin.on('end', () => {
  region.dispose();
  process.exit(0);
});
