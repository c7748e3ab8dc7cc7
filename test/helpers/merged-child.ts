// A VM-like process for tests: PAGES pages of identical content in one mergeable region. Started through a
// qemu-system-x86_64 symlink with `-name guest=NAME` (report-ksm.ts), VM discovery sees a QEMU guest.
// Prints "ready" once the memory is written; exits when stdin closes.
import { Region, PAGE_SIZE } from '../../src/index.js';

const pages = Number(process.argv[2] ?? 64);
const region = Region.alloc(pages * PAGE_SIZE, { hugepages: 'never' });
new Uint8Array(region.buffer).fill(0x5a);
region.advise('mergeable');
process.stdout.write('ready\n');
process.stdin.resume();
process.stdin.on('end', () => {
  region.dispose();
  process.exit(0);
});
