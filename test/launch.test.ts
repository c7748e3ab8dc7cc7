// spawnMerged's admission: everything is checked before the child starts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
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

test("a VM spawned under 'tenant' isolation does not hold the admission lock", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pf-launch-'));
  try {
    const registry = new Registry({ stateDir: join(dir, 'state') });
    const child = spawnMerged('sleep', ['5'], { isolation: 'tenant', tenant: 'acme', registry });
    try {
      await new Promise((resolve) => child.once('spawn', resolve));
      const fds = readdirSync(`/proc/${child.pid}/fd`).map((fd) => readlinkSync(`/proc/${child.pid}/fd/${fd}`));
      assert.deepEqual(fds.filter((target) => target.endsWith('admission.lock')), []);
    } finally {
      child.kill('SIGKILL');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
