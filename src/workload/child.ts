// A workload process: allocates mergeable memory with a known mix of contents, reports its pid and
// expected counts to the parent over IPC, rewrites its volatile pages at the chosen rate, and exits
// when told to or when the parent goes away (the IPC channel closes), so it never outlives a run.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Region, PAGE_SIZE } from '../region.js';
import { KIND_IMAGE, KIND_UNIQUE, KIND_VOLATILE, writePage } from './content.js';
import type { ChildSpec, ChildReady } from './workload.js';

function main(): void {
  if (typeof process.send !== 'function') {
    process.stderr.write('pagefuse workload child: must be started by Workload.start (needs an IPC channel)\n');
    process.exit(2);
  }
  const spec = JSON.parse(process.argv[2] ?? '{}') as ChildSpec;
  const layers = spec.layers ?? [];
  const pages = spec.imagePages + layers.reduce((a, l) => a + l.pages, 0) + spec.zeroPages + spec.uniquePages + spec.volatilePages;
  // Join the cgroup before allocating: a charge stays with the cgroup that was charged.
  if (spec.cgroup !== undefined) writeFileSync(join(spec.cgroup, 'cgroup.procs'), `${process.pid}\n`);
  const region = Region.alloc(Math.max(1, pages) * PAGE_SIZE, {
    mergeable: spec.mergeable,
    hugepages: spec.hugepages,
  });
  const words = new Uint32Array(region.buffer);
  const per = PAGE_SIZE / 4;
  const page = (i: number): Uint32Array => words.subarray(i * per, (i + 1) * per);
  let at = 0;
  for (let i = 0; i < spec.imagePages; i++) writePage(page(at++), KIND_IMAGE, spec.imageSeed, i);
  for (const layer of layers) for (let i = 0; i < layer.pages; i++) writePage(page(at++), KIND_IMAGE, layer.seed, i);
  // Zero pages are written (so they are resident) with zeros.
  for (let i = 0; i < spec.zeroPages; i++) page(at++)[0] = 0;
  for (let i = 0; i < spec.uniquePages; i++) writePage(page(at++), KIND_UNIQUE, spec.seed, i);
  const volatileStart = at;
  let generation = 0;
  const rewrite = (): void => {
    generation++;
    for (let i = 0; i < spec.volatilePages; i++) writePage(page(volatileStart + i), KIND_VOLATILE, spec.seed, generation * 1e6 + i);
  };
  rewrite();
  const timer = spec.volatilePages > 0 && spec.rewriteIntervalMs > 0 ? setInterval(rewrite, spec.rewriteIntervalMs) : undefined;
  const ready: ChildReady = { type: 'ready', pid: process.pid, pages };
  process.send(ready);
  const stop = (): void => {
    if (timer) clearInterval(timer);
    region.dispose();
    process.exit(0);
  };
  process.on('disconnect', stop);
  process.on('message', (m: { type?: string }) => {
    if (m?.type === 'stop') stop();
  });
}

main();
