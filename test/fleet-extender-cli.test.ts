// `pagefuse plan --extender` as a scheduler and an operator meet it over HTTP: methods, bodies, refreshes, stops.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { builtBin, startCli, type CliProcess } from './helpers/cli.js';

const bin = builtBin();

/** A host that takes connections and never answers; counts how many it holds at once, at most. */
async function silentHost(): Promise<{ port: number; most: () => number; close: () => void }> {
  const open = new Set<Socket>();
  let most = 0;
  const server = createServer((c) => {
    open.add(c);
    most = Math.max(most, open.size);
    c.on('error', () => undefined);
    c.resume(); // reading, so that a close by the extender is seen
    c.on('close', () => open.delete(c));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as { port: number }).port,
    most: () => most,
    close: () => {
      for (const c of open) c.destroy();
      server.close();
    },
  };
}

/**
 * Runs `body` with an extender over a host list naming a silent host (started for it), then stops the
 * extender with SIGTERM (unless `body` did), closes the host and removes the list.
 */
async function withExtender(extra: string[], body: (ext: { cli: CliProcess; port: number; host: Awaited<ReturnType<typeof silentHost>> }) => Promise<void>): Promise<void> {
  const host = await silentHost();
  const dir = mkdtempSync(join(tmpdir(), 'pf-extender-'));
  writeFileSync(join(dir, 'hosts'), `127.0.0.1:${host.port}\n`);
  const cli = startCli(['plan', '--extender', '127.0.0.1:0', '--hosts', join(dir, 'hosts'), ...extra], { bin });
  try {
    const line = await cli.next((l) => /listening on http:\/\/127\.0\.0\.1:\d+\/prioritize/.test(String(l.text)), 60_000, 'the extender listening');
    await body({ cli, port: Number(/:(\d+)\/prioritize/.exec(String(line.text))![1]), host });
  } finally {
    cli.kill('SIGTERM');
    await cli.exited;
    host.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One raw HTTP exchange: writes `request`, returns all that comes back until the extender closes. */
async function exchange(port: number, request: string): Promise<string> {
  const s = connect(port, '127.0.0.1');
  await once(s, 'connect');
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.on('error', () => undefined);
  s.write(request);
  await once(s, 'close');
  return Buffer.concat(chunks).toString('latin1');
}

test('the extender answers a GET of /prioritize with 405 and Allow: POST (it said 404)', { timeout: 30_000 }, async () => {
  await withExtender(['--timeout', '1s'], async (ext) => {
    const answer = await exchange(ext.port, 'GET /prioritize HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 405 Method Not Allowed\r\n/);
    assert.match(answer, /\r\nallow: POST\r\n/i);
  });
});

test('the extender answers a body over 64 MiB with 413 (it dropped the connection)', { timeout: 30_000 }, async () => {
  await withExtender(['--timeout', '1s'], async (ext) => {
    const s = connect(ext.port, '127.0.0.1');
    await once(s, 'connect');
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
    const size = (64 << 20) + 1;
    s.write(`POST /prioritize HTTP/1.1\r\nhost: x\r\ncontent-length: ${size}\r\n\r\n`);
    const block = Buffer.alloc(1 << 20, 0x20);
    for (let sent = 0; sent < size && !s.destroyed; sent += block.length) {
      if (!s.write(sent + block.length > size ? block.subarray(0, size - sent) : block)) await Promise.race([once(s, 'drain'), once(s, 'close')]);
    }
    if (!s.destroyed) await once(s, 'close');
    assert.match(Buffer.concat(chunks).toString('latin1'), /^HTTP\/1\.1 413 Payload Too Large\r\n/);
  });
});

test('the extender reads the fleet again only once the last reading has ended: one connection at a time to a host that never answers', { timeout: 30_000 }, async () => {
  // --refresh 1 with --timeout 3: on a fixed interval readings piled up (1, 3, 7 connections to the host at once).
  await withExtender(['--timeout', '3s', '--refresh', '1s'], async (ext) => {
    await sleep(7000);
    assert.equal(ext.host.most(), 1);
  });
});

test('a request in flight when the extender is stopped is still answered', { timeout: 30_000 }, async () => {
  // Half a body sent, then SIGTERM, then the rest: the connection was cut at once, with no answer.
  await withExtender(['--timeout', '1s'], async (ext) => {
    const body = JSON.stringify({ Pod: null, NodeNames: ['node-a'] });
    const s = connect(ext.port, '127.0.0.1');
    await once(s, 'connect');
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.write(`POST /prioritize HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body.slice(0, 10)}`);
    await sleep(200);
    ext.cli.kill('SIGTERM');
    await sleep(200);
    s.write(body.slice(10));
    await once(s, 'close');
    const answer = Buffer.concat(chunks).toString('latin1');
    assert.match(answer, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(answer.includes('[{"Host":"node-a","Score":0}]'), answer);
    assert.deepEqual(await ext.cli.exited, { status: 0, signal: null });
  });
});
