// A process may map tens of TiB it never touches (PROT_READ costs it no memory), and any local user may run
// one named like a VMM. The page walkers behind the savings figures and the per-node KSM pages must cost
// what is present, not the size of the mapping: read entry by entry, 1 TiB is 2 GiB of pagemap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mergeablePages } from '../src/numa/ksm-nodes.js';
import { readFootprint } from '../src/ksm/footprint.js';

const TiB = 2 ** 40;
const PAGE = 4096;
/** Page offsets the child reads (each then maps the shared zero page): present, all others absent. */
const TOUCHED = [0, 1, 2, 1 << 20, (1 << 20) + 1, (TiB / PAGE) / 2, TiB / PAGE - 1];

const CHILD = `import mmap, sys, time
m = mmap.mmap(-1, ${TiB}, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=mmap.PROT_READ)
m.madvise(mmap.MADV_MERGEABLE)
for p in [${TOUCHED.join(', ')}]:
    m[p * ${PAGE}]
print('ready', flush=True)
time.sleep(60)
`;

async function withSparse(fn: (pid: number) => Promise<void>): Promise<void> {
  const child: ChildProcess = spawn('python3', ['-c', CHILD], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`the sparse child exited (${code})`)));
    });
    await fn(child.pid!);
  } finally {
    child.kill('SIGKILL');
  }
}

/** Bytes this process has read through read(2) and pread(2) so far (/proc/self/io rchar). */
function bytesRead(): number {
  return Number(/^rchar: (\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'))![1]);
}

test('mergeablePages of a process with 1 TiB mapped and 7 pages present reads their entries, not 2 GiB of pagemap', async () => {
  await withSparse(async (pid) => {
    const before = bytesRead();
    const { addresses } = await mergeablePages(pid);
    const read = bytesRead() - before;
    const base = addresses[0];
    assert.deepEqual(
      addresses.map((a) => (a - base) / PAGE),
      TOUCHED,
    );
    assert.ok(read < 16 * 2 ** 20, `read ${read} bytes`);
  });
});

test('readFootprint of a process with 1 TiB mapped and 7 pages present reads their entries, not 2 GiB of pagemap', async () => {
  await withSparse(async (pid) => {
    const before = bytesRead();
    const fp = await readFootprint(pid);
    const read = bytesRead() - before;
    // Zero-page mappings count only in fully present 2 MiB chunks, and none is.
    assert.deepEqual([fp?.zeroMappedPages, fp?.sharingWeight], [0, 0]);
    assert.ok(read < 16 * 2 ** 20, `read ${read} bytes`);
  });
});
