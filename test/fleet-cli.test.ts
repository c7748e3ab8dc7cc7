import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chownSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFlagFile } from '../src/cli/common.js';
import { runCli } from './helpers/cli.js';

/** Runs `body` with a fresh temporary directory, removed after. */
function withDir<T>(body: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'pagefuse-fleet-cli-'));
  const done = (): void => rmSync(dir, { recursive: true, force: true });
  try {
    const r = body(dir);
    if (r instanceof Promise) return r.finally(done) as T;
    done();
    return r;
  } catch (err) {
    done();
    throw err;
  }
}


test('plan without a host source is a usage error on one line', () => {
  const r = runCli(['plan']);
  assert.equal(r.status, 2);
  assert.equal(r.stderr, 'pagefuse plan: give exactly one of --hosts FILE or --http-sd URL|FILE\n');
});

test('plan --extender with a bad address names plan and --extender in its one-line usage error', () => {
  const r = runCli(['plan', '--extender', '1.2.3.4:99999', '--hosts', '/nonexistent']);
  assert.equal(r.status, 2);
  assert.equal(
    r.stderr,
    "pagefuse plan: --extender's address must be HOST:PORT, [IPv6]:PORT or :PORT, with an IPv4 address or localhost as HOST and a port 0-65535, got '1.2.3.4:99999'\n",
  );
});

test('plan with an http_sd URL that cannot be read says it was the http_sd source, on one line', () => {
  const r = runCli(['plan', '--http-sd', 'http://127.0.0.1:9/targets.json', '--timeout', '2s']);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, 'pagefuse plan: cannot read the http_sd URL http://127.0.0.1:9/targets.json: connect ECONNREFUSED 127.0.0.1:9\n');
});

test('serve refuses to publish sketches to anyone who asks (a key without token or client CA)', () => {
  const r = runCli(['serve', '--fleet-key', '/nonexistent']);
  assert.equal(r.status, 2);
  assert.equal(r.stderr, 'pagefuse serve: --fleet-key needs --fleet-token FILE or --tls-client-ca FILE: sketches are never served to anyone who asks\n');
});

test('serve --fleet-modulus takes a power of two in decimal: 0x10 is refused on one line', () => {
  const r = runCli(['serve', '--fleet-key', '/nonexistent', '--fleet-token', '/nonexistent', '--fleet-modulus', '0x10']);
  assert.equal(r.status, 2);
  assert.equal(r.stderr, "pagefuse serve: --fleet-modulus must be a power of two from 1 to 2^30, got '0x10'\n");
});

test('serve names itself once when it cannot read a file a flag names', () => {
  withDir((dir) => {
    const key = join(dir, 'key');
    writeFileSync(key, 'a-fleet-key-of-enough-bytes-0123\n', { mode: 0o600 });
    const r = runCli(['serve', '--listen', '127.0.0.1:0', '--fleet-key', key, '--fleet-token', join(dir, 'none')]);
    assert.deepEqual([r.status, r.stderr], [1, `pagefuse serve: cannot read --fleet-token ${join(dir, 'none')}: ENOENT (no such file or directory)\n`]);
  });
});

test('a file a flag names may hold a CA bundle (the system\'s is about 200 KiB), not more than 4 MiB', async () => {
  await withDir(async (dir) => {
    const bundle = join(dir, 'ca.pem');
    writeFileSync(bundle, `${'x'.repeat(256 * 1024)}\n`);
    assert.equal((await readFlagFile('tls-ca', bundle)).length, 256 * 1024);
    writeFileSync(bundle, 'x'.repeat(4 * 1024 * 1024 + 1));
    await assert.rejects(readFlagFile('tls-ca', bundle), { code: 'EFBIG', message: `cannot read --tls-ca ${bundle}: it holds more than 4194304 bytes` });
  });
});

/** serve started with a fleet key and a token of these modes (the key chowned to `keyOwner` when given), in `dir`. */
function serveWithSecrets(dir: string, modes: { key: number; token: number }, keyOwner?: number): { key: string; token: string; r: ReturnType<typeof runCli> } {
  const key = join(dir, 'key');
  const token = join(dir, 'token');
  writeFileSync(key, 'a-fleet-key-of-enough-bytes-0123\n', { mode: modes.key });
  writeFileSync(token, 'a-token-of-enough-bytes-0123\n', { mode: modes.token });
  if (keyOwner !== undefined) chownSync(key, keyOwner, keyOwner);
  return { key, token, r: runCli(['serve', '--listen', '127.0.0.1:0', '--fleet-key', key, '--fleet-token', token]) };
}

test('serve refuses a fleet key file that others can read', () => {
  withDir((dir) => {
    const { key, r } = serveWithSecrets(dir, { key: 0o644, token: 0o600 });
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `pagefuse serve: the fleet key ${key} is readable or writable by group or others (mode 644); run 'chmod 600 ${key}'\n`);
  });
});

test('serve refuses a --fleet-token file that others can read, as it refuses such a key', () => {
  withDir((dir) => {
    const { token, r } = serveWithSecrets(dir, { key: 0o600, token: 0o644 });
    assert.deepEqual([r.status, r.stderr], [1, `pagefuse serve: --fleet-token ${token} is readable or writable by group or others (mode 644); run 'chmod 600 ${token}'\n`]);
  });
});

test('plan refuses a --token file that others can read', () => {
  withDir((dir) => {
    const hosts = join(dir, 'hosts');
    const token = join(dir, 'token');
    writeFileSync(hosts, '127.0.0.1:1\n');
    writeFileSync(token, 'a-token-of-enough-bytes-0123\n', { mode: 0o640 });
    const r = runCli(['plan', '--hosts', hosts, '--token', token]);
    assert.deepEqual([r.status, r.stderr], [1, `pagefuse plan: --token ${token} is readable or writable by group or others (mode 640); run 'chmod 600 ${token}'\n`]);
  });
});

test('serve refuses a fleet key owned by another user, who could replace it', () => {
  withDir((dir) => {
    const { key, r } = serveWithSecrets(dir, { key: 0o600, token: 0o600 }, 65534);
    const uid = process.geteuid!();
    assert.deepEqual([r.status, r.stderr], [1, `pagefuse serve: the fleet key ${key} is owned by uid 65534, neither root nor this user (uid ${uid}), who could replace it; run 'chown ${uid} ${key}'\n`]);
  });
});

test('a TLS file that is not PEM is named by its flag (OpenSSL said only "PEM routines::no start line")', () => {
  withDir((dir) => {
    const bad = join(dir, 'bad.pem');
    const hosts = join(dir, 'hosts');
    writeFileSync(bad, 'not pem\n', { mode: 0o600 });
    writeFileSync(hosts, '127.0.0.1:1\n');
    const serve = runCli(['serve', '--listen', '127.0.0.1:0', '--tls-cert', bad, '--tls-key', bad]);
    assert.deepEqual([serve.status, serve.stderr], [1, 'pagefuse serve: --tls-cert and --tls-key are not a PEM certificate and its private key: PEM routines::no start line\n']);
    const plan = runCli(['plan', '--hosts', hosts, '--scheme', 'https', '--tls-ca', bad]);
    assert.deepEqual([plan.status, plan.stderr], [1, 'pagefuse plan: --tls-ca holds no PEM certificate: PEM routines::no start line\n']);
  });
});

test('plan with a host list that names no reachable host fails with one line per host and a summary', () => {
  withDir((dir) => {
    const list = join(dir, 'hosts');
    writeFileSync(list, '# nothing listens on port 9 here\n127.0.0.1:9\n');
    const r = runCli(['plan', '--hosts', list, '--timeout', '2s']);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, 'pagefuse plan: host "127.0.0.1:9" left out: connect ECONNREFUSED 127.0.0.1:9\npagefuse plan: no host answered with a usable sketch (1 asked)\n');
  });
});
