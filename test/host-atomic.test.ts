import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { lstat, mkdtemp, readFile, readdir, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDir, ensureDirSync, removeStaleTempsSync, STALE_TEMP_MS, writeFileAtomic, writeFileAtomicSync } from '../src/host/atomic.js';
import { Registry } from '../src/safety/registry.js';
import { lockKsm } from '../src/host/ksm-lock.js';
import { appendRegularFileSync, readRegularFile, readRegularFileSync } from '../src/host/regular-file.js';

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

async function withFifo(body: (dir: string, fifo: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'pf-fifo-'));
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  try {
    await body(dir, fifo);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('a file written whole is not put in place of a FIFO: refused, the FIFO left as it was', async () => {
  await withFifo(async (_dir, fifo) => {
    await assert.rejects(writeFileAtomic(fifo, 'x'), { code: 'EINVAL', message: `cannot write ${fifo}: it is a FIFO; give the path of a regular file` });
    assert.ok((await lstat(fifo)).isFIFO());
  });
});

test('a file written whole is not put in place of a symbolic link (as /dev/stdout is one)', async () => {
  await withFifo(async (dir) => {
    const link = join(dir, 'out');
    await symlink('/proc/self/fd/1', link);
    assert.throws(() => writeFileAtomicSync(link, 'x'), { code: 'EINVAL', message: `cannot write ${link}: it is a symbolic link; give the path of a regular file` });
    assert.ok((await lstat(link)).isSymbolicLink());
  });
});

test('reading a FIFO given as a file is refused at once, without waiting for a writer', async () => {
  await withFifo(async (_dir, fifo) => {
    await assert.rejects(readRegularFile(fifo, { what: 'the config' }), { code: 'EINVAL', message: `cannot read the config ${fifo}: it is a FIFO, not a regular file` });
    assert.throws(() => readRegularFileSync(fifo, { what: 'the config' }), { code: 'EINVAL', message: `cannot read the config ${fifo}: it is a FIFO, not a regular file` });
  });
});

test('reading a file larger than its bound is refused', async () => {
  await withFifo(async (dir) => {
    const path = join(dir, 'big');
    await writeFile(path, 'x'.repeat(1025));
    await assert.rejects(readRegularFile(path, { what: 'the list', maxBytes: 1024 }), { code: 'EFBIG', message: `cannot read the list ${path}: it holds more than 1024 bytes` });
    assert.equal(await readRegularFile(path, { what: 'the list', maxBytes: 1025 }), 'x'.repeat(1025));
  });
});

test('appending to a FIFO no process reads fails at once rather than waiting for a reader', async () => {
  await withFifo(async (_dir, fifo) => {
    assert.throws(() => appendRegularFileSync(fifo, 'line\n', 'LOGFILE'), { code: 'ENXIO', message: new RegExp(`^cannot append to LOGFILE ${fifo}: `) });
  });
});

test('a directory under /proc cannot be made: an error, where Node\'s recursive mkdir retries for ever', async () => {
  // The first directory missing is the one that cannot be made.
  const error = { code: 'ENOENT', message: 'cannot create the directory /proc/pagefuse-state: ENOENT (its parent is there, but takes no new directory)' };
  assert.throws(() => ensureDirSync('/proc/pagefuse-state/processes'), error);
  await assert.rejects(ensureDir('/proc/pagefuse-state/processes'), error);
});

test('ensureDir makes the missing directories of a path, and takes one that is there', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pf-dirs-'));
  try {
    ensureDirSync(join(dir, 'a', 'b'));
    await ensureDir(join(dir, 'a', 'b', 'c'));
    await ensureDir(join(dir, 'a', 'b', 'c'));
    assert.ok((await stat(join(dir, 'a', 'b', 'c'))).isDirectory());
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** A pid that has exited: a child's, waited for. */
function deadPid(): number {
  return spawnSync('true').pid;
}

/** Writes `name` in `dir`, `ageMs` old. */
async function fileAged(dir: string, name: string, ageMs: number): Promise<void> {
  await writeFile(join(dir, name), '{}\n');
  const when = (Date.now() - ageMs) / 1000;
  await utimes(join(dir, name), when, when);
}

test('the temp files of killed writers are removed once a minute old; a live writer\'s, a young one and other files stay', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pf-stale-'));
  try {
    const dead = deadPid();
    await fileAged(dir, `.tuner.json.${dead}.1.tmp`, 2 * STALE_TEMP_MS);
    await fileAged(dir, `.${dead}.json.${dead}.2.tmp`, 2 * STALE_TEMP_MS);
    await fileAged(dir, `.tuner.json.${dead}.3.tmp`, STALE_TEMP_MS / 2);
    await fileAged(dir, `.tuner.json.${process.pid}.4.tmp`, 2 * STALE_TEMP_MS);
    await fileAged(dir, 'tuner.json', 2 * STALE_TEMP_MS);
    await fileAged(dir, `notes.${dead}.tmp`, 2 * STALE_TEMP_MS);
    assert.equal(removeStaleTempsSync(dir), 2);
    assert.deepEqual((await readdir(dir)).sort(), [`.tuner.json.${dead}.3.tmp`, `.tuner.json.${process.pid}.4.tmp`, `notes.${dead}.tmp`, 'tuner.json'].sort());
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('listing the registry removes a record a killed writer left half-written', async () => {
  const stateDir = await mkdtemp(join(tmpdir(), 'pf-stale-reg-'));
  try {
    const registry = new Registry({ stateDir });
    registry.prepare();
    const dead = deadPid();
    await fileAged(join(stateDir, 'processes'), `.${process.pid}.json.${dead}.1.tmp`, 2 * STALE_TEMP_MS);
    assert.deepEqual(registry.list(), []);
    assert.deepEqual(await readdir(join(stateDir, 'processes')), []);
  } finally {
    await rm(stateDir, { recursive: true, force: true });
  }
});

test('the machine-wide KSM lock never writes through a link planted where it writes its pid aside', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pf-ksmlock-'));
  const victim = join(dir, 'victim');
  const aside = `/tmp/pagefuse-ksm-tests.lock.${process.pid}`;
  try {
    await writeFile(victim, 'untouched\n');
    await symlink(victim, aside);
    const release = await lockKsm();
    release();
    assert.equal(await readFile(victim, 'utf8'), 'untouched\n');
  } finally {
    await rm(aside, { force: true });
    await rm(dir, { recursive: true, force: true });
  }
});
