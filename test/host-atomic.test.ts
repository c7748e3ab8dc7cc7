import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../src/host/atomic.js';

test('twenty writes of one file started in the same tick all succeed, and the file holds one of them whole', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pf-atomic-'));
  try {
    const path = join(dir, 'state.json');
    const payloads = Array.from({ length: 20 }, (_, i) => `${JSON.stringify({ writer: i, pad: 'x'.repeat(4096) })}\n`);
    await Promise.all(payloads.map((p) => writeFileAtomic(path, p)));
    assert.ok(payloads.includes(await readFile(path, 'utf8')));
    assert.deepEqual(await readdir(dir), ['state.json']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
