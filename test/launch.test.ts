// spawnMerged's admission: everything is checked before the child starts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry, spawnMerged } from '../src/index.js';

test('spawnMerged refuses a malformed tenant id before it starts anything', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pf-launch-'));
  const marker = join(dir, 'started');
  try {
    const registry = new Registry({ stateDir: join(dir, 'state') });
    assert.throws(() => spawnMerged('touch', [marker], { mergeAny: false, tenant: 'bad tenant!', registry }), { name: 'RangeError' });
    await sleep(300); // a child started anyway would have created the marker by now
    assert.equal(existsSync(marker), false);
    assert.deepEqual(registry.list(), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
