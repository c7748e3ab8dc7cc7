// Loaded into a pagefuse process under measurement (node --expose-gc --import THIS), never into an
// installed one: bench/live-memory.ts starts the process with this preload and a pipe on fd 3. Each line
// read from fd 3 runs two full garbage collections, waits for V8 to hand freed pages back, and answers
// with one JSON line: the live JS heap and external memory. The harness then reads the process's RSS from
// /proc. A leak shows as growth of these figures; garbage waiting for the next collection does not.
import { Socket } from 'node:net';

const SETTLE_MS = 250;
const channel = new Socket({ fd: 3, readable: true, writable: true });
channel.unref();
let pending = '';
channel.on('data', (chunk) => {
  pending += chunk.toString();
  for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
    pending = pending.slice(nl + 1);
    globalThis.gc();
    globalThis.gc();
    setTimeout(() => {
      const m = process.memoryUsage();
      channel.write(`${JSON.stringify({ heapUsedBytes: m.heapUsed, externalBytes: m.external })}\n`);
    }, SETTLE_MS).unref();
  }
});
