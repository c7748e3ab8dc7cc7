// Reading the fleet's sketches from peers that misbehave: each is left out with its reason, and the others read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { once } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeHostSketch, SKETCH_FORMAT } from '../src/fleet/sketch.js';
import { runCliAsync } from './helpers/cli.js';
import { fetchSketches, parseHostList, parseHttpSd, type Target } from '../src/fleet/fetch.js';

/** A TCP peer on loopback that answers each request's first bytes with `answer`, then closes. */
async function rawPeer(answer: string): Promise<{ target: Target; server: Server }> {
  const server = createServer((c) => {
    c.on('error', () => undefined);
    c.once('data', () => c.end(answer));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  return { target: { url: `http://127.0.0.1:${port}/fleet/sketch`, name: `127.0.0.1:${port}` }, server };
}

test('a host that answers 101 Switching Protocols is left out with its reason, and the others are still read', { timeout: 20_000 }, async () => {
  // Before, the exchange never settled: no 'response' nor 'error' event, and a deadline whose timer kept
  // nothing alive, so `plan` exited 13 with nothing said.
  const upgrading = await rawPeer('HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n');
  const missing = await rawPeer('HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot here\n');
  try {
    const r = await fetchSketches([upgrading.target, missing.target], { timeoutMs: 5000 });
    assert.deepEqual(r, {
      hosts: [],
      failures: [
        { target: upgrading.target.name, reason: 'HTTP 101: the host switched protocols instead of answering' },
        { target: missing.target.name, reason: 'HTTP 404: not here' },
      ],
    });
  } finally {
    upgrading.server.close();
    missing.server.close();
  }
});

test('an http_sd target must be HOST:PORT: a URL there chose where the fleet token went', () => {
  assert.throws(() => parseHttpSd([{ targets: ['node-1:10452', 'http://attacker.example/steal'] }], 'sd.json', 'https'), {
    code: 'EINVAL',
    message: 'sd.json: group 0, target 1 is not HOST:PORT',
  });
});

test("http_sd's __scheme__ may not lower --scheme https to http", () => {
  assert.throws(() => parseHttpSd([{ targets: ['node-1:10452'], labels: { __scheme__: 'http' } }], 'sd.json', 'https'), {
    code: 'EINVAL',
    message: 'sd.json: group 0 asks for http (__scheme__) where --scheme is https: the hosts would be read, and the token sent, in clear',
  });
  assert.deepEqual(parseHttpSd([{ targets: ['node-1:10452'], labels: { __scheme__: 'https' } }], 'sd.json', 'http'), [{ url: 'https://node-1:10452/fleet/sketch', name: 'node-1:10452' }]);
});

test('a bad line of a host list is named by file and line, and not repeated (the list may be a secret file)', () => {
  assert.throws(() => parseHostList('node-1:10452\n84e0a1c2secret\n', '/etc/pagefuse/fleet.token'), {
    code: 'EINVAL',
    message: '/etc/pagefuse/fleet.token:2: neither HOST:PORT nor an http(s) URL',
  });
});

/** An HTTP peer on loopback that answers every request with `body` as JSON. */
async function jsonPeer(body: unknown): Promise<{ port: number; server: HttpServer }> {
  const server = createHttpServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body)));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as { port: number }).port, server };
}

/** A host's sketch on the wire: one VM of 64 sampled values. */
function hostWire(host: string, pageSize: number) {
  const values = BigUint64Array.from({ length: 64 }, (_, i) => BigInt(i + 1) << 40n);
  return encodeHostSketch({
    format: SKETCH_FORMAT,
    keyId: '0123456789abcdef',
    modulus: 1,
    pageSize,
    host,
    takenAt: '2026-11-30T12:00:00.000Z',
    capacityBytes: 1 << 30,
    vms: [{ name: `${host}-vm`, pid: 1, vmm: 'qemu', memoryBytes: 1 << 20, pages: 256, zeroPages: 0, thpPages: null, takenAt: '2026-11-30T12:00:00.000Z', sample: { values, counts: new Uint32Array(64).fill(1) } }],
  });
}

test('plan leaves out a host whose page size is not the one most hosts have (the first host\'s scaled every figure)', { timeout: 60_000 }, async () => {
  const peers = await Promise.all([jsonPeer(hostWire('node-a', 65536)), jsonPeer(hostWire('node-b', 4096)), jsonPeer(hostWire('node-c', 4096))]);
  const dir = mkdtempSync(join(tmpdir(), 'pf-plan-pages-'));
  try {
    writeFileSync(join(dir, 'hosts'), peers.map((p) => `127.0.0.1:${p.port}\n`).join(''));
    const r = await runCliAsync(['plan', '--hosts', join(dir, 'hosts')]);
    assert.equal(r.stderr, `pagefuse plan: host "127.0.0.1:${peers[0].port}" left out: its pages are 65536 bytes, not 4096 (the size most hosts have): its page counts cannot be compared\n`);
    assert.deepEqual((JSON.parse(r.stdout) as { hosts: { host: string }[] }).hosts.map((h) => h.host), ['node-b', 'node-c']);
  } finally {
    for (const p of peers) p.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('answers being read at once may hold at most maxTotalBytes together: the host whose answer passes it is left out', { timeout: 20_000 }, async () => {
  // Each of two hosts sends 80 KB in two halves 300 ms apart: together they pass 100 KB on the second halves.
  const half = 'x'.repeat(40_000);
  const peers = await Promise.all(
    [0, 1].map(async () => {
      const server = createHttpServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(2 * half.length) });
        res.write(half);
        setTimeout(() => res.end(half), 300);
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const port = (server.address() as { port: number }).port;
      return { server, target: { url: `http://127.0.0.1:${port}/fleet/sketch`, name: `127.0.0.1:${port}` } };
    }),
  );
  try {
    const r = await fetchSketches(peers.map((p) => p.target), { maxTotalBytes: 100_000, timeoutMs: 5000 });
    assert.deepEqual(r.failures.map((f) => f.reason).sort(), [
      'not a pagefuse sketch: the answer is not JSON',
      'the answers being read together passed 100000 bytes; read fewer hosts at once (--concurrency)',
    ]);
  } finally {
    for (const p of peers) p.server.close();
  }
});
