// Reading the fleet's sketches from peers that misbehave: each is left out with its reason, and the others read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { once } from 'node:events';
import { fetchSketches, type Target } from '../src/fleet/fetch.js';

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
