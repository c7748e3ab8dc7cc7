// A workload process: allocates mergeable memory with a known mix of contents, reports its pid and
// expected counts to the parent over IPC, rewrites its volatile pages at the chosen rate, and exits
// when told to or when the parent goes away (the IPC channel closes), so it never outlives a run.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Region, PAGE_SIZE } from '../region.js';
import { fillGuest, layoutPages } from './layout.js';
import type { ChildSpec, ChildReady } from './workload.js';

function main(): void {
  if (typeof process.send !== 'function') {
    process.stderr.write('pagefuse workload child: must be started by Workload.start (needs an IPC channel)\n');
    process.exit(2);
  }
  const spec = JSON.parse(process.argv[2] ?? '{}') as ChildSpec;
  const pages = layoutPages(spec);
  // Join the cgroup before allocating: a charge stays with the cgroup that was charged.
  if (spec.cgroup !== undefined) writeFileSync(join(spec.cgroup, 'cgroup.procs'), `${process.pid}\n`);
  const region = Region.alloc(Math.max(1, pages) * PAGE_SIZE, {
    mergeable: spec.mergeable,
    hugepages: spec.hugepages,
  });
  const rewrite = fillGuest(new Uint32Array(region.buffer), spec);
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
