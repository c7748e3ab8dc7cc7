// A guest-like process for the tuner's tests and bench: one mergeable region holding a common "image"
// (the same in every guest), unique pages, zero pages and pages it keeps rewriting. Run as a script:
//   node --import tsx tune-guest.ts --common MiB --unique MiB --zero MiB --changing MiB --seed N
// It prints "ready" once the region is filled and marked mergeable, and exits when stdin closes.
import { parseArgs } from 'node:util';
import { Region, PAGE_SIZE } from '../../src/region.js';

const MiB = 1024 * 1024;

function fill(words: Uint32Array, firstPage: number, pages: number, seed: number): void {
  const perPage = PAGE_SIZE / 4;
  for (let p = 0; p < pages; p++) {
    const base = (firstPage + p) * perPage;
    let x = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(p + 1, 0xc2b2ae35)) >>> 0 || 1;
    for (let w = 0; w < perPage; w++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      words[base + w] = x >>> 0;
    }
  }
}

function main(): void {
  const { values } = parseArgs({
    options: {
      common: { type: 'string', default: '0' },
      unique: { type: 'string', default: '0' },
      zero: { type: 'string', default: '0' },
      changing: { type: 'string', default: '0' },
      seed: { type: 'string', default: '1' },
    },
    strict: false,
  });
  const mib = (k: string) => Number(values[k]);
  const pages = (k: string) => (mib(k) * MiB) / PAGE_SIZE;
  const [common, unique, zero, changing] = ['common', 'unique', 'zero', 'changing'].map(pages);
  const seed = Number(values.seed);
  const region = Region.alloc((common + unique + zero + changing) * PAGE_SIZE, { hugepages: 'never' });
  const words = new Uint32Array(region.buffer);
  fill(words, 0, common, 0x1111); // the same in every guest
  fill(words, common, unique, 0x2000 + seed);
  // zero pages: left as mapped (touch them so they are present)
  for (let p = 0; p < zero; p++) words[(common + unique + p) * (PAGE_SIZE / 4)] = 0;
  const changingStart = common + unique + zero;
  let tick = 0;
  const rewrite = () => {
    tick++;
    for (let p = 0; p < changing; p++) words[(changingStart + p) * (PAGE_SIZE / 4)] = (seed << 20) ^ (tick << 8) ^ p;
  };
  rewrite();
  region.advise('mergeable');
  if (changing > 0) setInterval(rewrite, 50);
  process.stdout.write('ready\n');
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}

main();
