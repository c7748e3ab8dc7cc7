// A stand-in for a VM's guest memory: an "OS image" identical in every guest, zero pages, and pages of
// its own. It holds them until it is killed. Usage: node guest.mjs IMAGE_MIB OWN_MIB
const PAGE = 4096;
const [imageMiB = '16', ownMiB = '4'] = process.argv.slice(2);

function fill(bytes, seed) {
  const mem = Buffer.alloc(bytes);
  const words = new Uint32Array(mem.buffer, mem.byteOffset, bytes / 4);
  // Every page differs from every other (seed, page number), so only pages of the same image match.
  for (let p = 0; p < bytes / PAGE; p++) {
    let x = (seed * 2654435761 + p * 40503 + 1) >>> 0;
    for (let w = p * (PAGE / 4); w < (p + 1) * (PAGE / 4); w++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      words[w] = x >>> 0;
    }
  }
  return mem;
}

const image = fill(Number(imageMiB) * 1024 * 1024, 1);
const own = fill(Number(ownMiB) * 1024 * 1024, process.pid);
const zero = Buffer.alloc(Number(ownMiB) * 1024 * 1024);
for (let i = 0; i < zero.length; i += PAGE) zero[i] = 0; // touched, so resident
process.stdout.write('ready\n');
setInterval(() => [image, own, zero], 60_000);
// Dies with its manager: stdin is a pipe from it, closed when it exits however it exits.
process.stdin.on('end', () => process.exit(0)).resume();
