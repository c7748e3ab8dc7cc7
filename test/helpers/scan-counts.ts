// Prints, as JSON, every count exact and fast mode give on a fixed workload built in this process:
// three targets with a shared image, in-target copies, zero pages, pages one byte or one swapped block
// away from others, single-byte pages, random pages; then a second scan after 100 pages changed.
// Run by test/scan-kernels.test.ts under each kernel set (PAGEFUSE_HASH_KERNELS); the counts must agree.
// The multi-target exact and fast scans run on one thread and on two: the index is shared lock-free by
// the hashing threads, and the counts must not depend on which thread inserts first.
import { Region, PAGE_SIZE, scan, type ScanResult } from '../../src/index.js';
import { native } from '../../src/native.js';
import { KIND_IMAGE, KIND_UNIQUE, mix, writePage } from '../../src/workload/content.js';

const W = PAGE_SIZE / 4;
function fill(buf: ArrayBuffer, plan: (p: number, words: Uint32Array, bytes: Uint8Array) => void): void {
  for (let p = 0; p < buf.byteLength / PAGE_SIZE; p++) plan(p, new Uint32Array(buf, p * PAGE_SIZE, W), new Uint8Array(buf, p * PAGE_SIZE, PAGE_SIZE));
}
let seed = 12345;
const random = (w: Uint32Array): void => {
  for (let i = 0; i < w.length; i++) w[i] = seed = mix(seed, 0x55);
};
const image = (w: Uint32Array, i: number): void => writePage(w, KIND_IMAGE, 1, i);

const A = Region.alloc(16384 * PAGE_SIZE, { hugepages: 'never' });
const B = Region.alloc(8192 * PAGE_SIZE, { hugepages: 'never' });
const C = new ArrayBuffer(2048 * PAGE_SIZE);
fill(A.buffer, (p, w, b) => {
  if (p < 4096) return image(w, p);
  if (p < 5120) return; // zero
  if (p < 7168) return writePage(w, KIND_UNIQUE, 2, p);
  if (p < 8192) return image(w, p - 7168); // copies inside the target
  if (p < 9216) {
    image(w, p - 8192);
    b[((p - 8192) * 37) % PAGE_SIZE] ^= 0x40; // one byte off
    return;
  }
  if (p < 10240) {
    image(w, p - 9216);
    const j = (p - 9216) % 255; // two neighbouring 16-byte blocks swapped
    const t = b.slice(j * 16, j * 16 + 16);
    b.copyWithin(j * 16, j * 16 + 16, j * 16 + 32);
    b.set(t, j * 16 + 16);
    return;
  }
  if (p < 11264) {
    image(w, p - 10240);
    b[PAGE_SIZE - 1 - ((p - 10240) % 64)] ^= 1; // one of the last bytes off
    return;
  }
  if (p < 12288) return void b.fill((p % 255) + 1); // single-byte pages, 4 copies each
  if (p < 13312) return void (b[(p * 7) % PAGE_SIZE] = 1); // a zero page with one byte set
  if (p < 14336) {
    image(w, (p - 13312) * 2);
    b[(p - 13312) % PAGE_SIZE] ^= 0x40;
    return;
  }
  return random(w);
});
fill(B.buffer, (p, w, b) => {
  if (p < 4096) return image(w, p);
  if (p < 4608) return;
  if (p < 5632) {
    image(w, p - 4608);
    b[((p - 4608) * 37) % PAGE_SIZE] ^= 0x40; // equal to A's one-byte-off pages
    return;
  }
  if (p < 6656) return void b.fill((p % 251) + 1);
  return random(w);
});
fill(C, (p, w) => {
  if (p < 1024) return image(w, p * 3);
  if (p < 1536) return writePage(w, KIND_UNIQUE, 2, 5000 + p); // equal to some of A's own pages
  if (p < 1600) return;
  return random(w);
});

const counts = (r: ScanResult): unknown => {
  // collisions (equal hashes, different bytes) are the hash's own: the byte compare keeps the counts.
  const { seconds, bytesPerSecond, hashKernel, threads, collisions, targets, ...rest } = r;
  void [seconds, bytesPerSecond, hashKernel, threads, collisions];
  return { ...rest, targets: targets.map((t) => ({ ...t, density: { pages: Array.from(t.density.pages), duplicatePages: Array.from(t.density.duplicatePages) } })) };
};
const out: Record<string, unknown> = {};
const first = await scan([A, B, C], { mode: 'exact', threads: 1, useZeroPages: false });
out.exact = counts(first);
out.exactThreads = counts(await scan([A, B, C], { mode: 'exact', threads: 2, useZeroPages: false }));
out.exactNoState = counts(await scan([A, B, C], { mode: 'exact', threads: 1, keepState: false, useZeroPages: false }));
out.fast = counts(await scan([A, B, C], { mode: 'fast', threads: 1, useZeroPages: false }));
out.fastThreads = counts(await scan([A, B, C], { mode: 'fast', threads: 2, useZeroPages: false }));
out.one = counts(await scan(A, { mode: 'exact', threads: 1, useZeroPages: true }));
const a = new Uint8Array(A.buffer);
for (let p = 0; p < 100; p++) a[p * 131 * PAGE_SIZE + 5] ^= 1;
out.again = counts(await scan([A, B, C], { mode: 'exact', threads: 2, previous: first, useZeroPages: false }));
A.dispose();
B.dispose();
process.stdout.write(`${JSON.stringify({ kernel: native.hashKernel, counts: out })}\n`);
