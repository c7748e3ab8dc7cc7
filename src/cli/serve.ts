// pagefuse serve — Prometheus metrics over HTTP, read from the host at every scrape.
import { createServer, type Server, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTlsServer, type Server as HttpsServer } from 'node:https';
import { isIP } from 'node:net';
import { boundMemory, parse, UsageError } from './common.js';
import { hostSource } from '../report/source.js';
import { Sampler } from '../report/sampler.js';
import { metricsRegistry } from '../report/prometheus.js';
import { explain } from '../errors.js';
import { fleetServeOptions, FLEET_SERVE_FLAGS, FLEET_SERVE_HELP } from './serve-fleet.js';
import { SKETCH_PATH } from '../fleet/endpoint.js';

/** pagefuse serve's default port: outside the Prometheus exporters' range 9100-9999, which is fully
 * allocated (node_exporter 9100, libvirt exporters 9177, OpenTelemetry's Prometheus exporter 9464), and
 * below Linux's ephemeral ports; see the README. */
export const DEFAULT_PORT = 10452;
/** Requests one connection may have in flight (pipelined); those past it get 503. */
export const MAX_PIPELINED = 8;

const HELP = `usage: pagefuse serve [--listen ADDRESS] [--no-node-ksmd] [fleet options]

Serves Prometheus metrics at http://ADDRESS/metrics: node_exporter's node_ksmd_* host series, and
pagefuse_* savings, per-process (by name; pids in pagefuse_process_info), per-NUMA-node and tuner
series, all read at scrape time. Only counts are exported, never page contents or hashes.

  --listen ADDRESS   HOST:PORT to bind: 127.0.0.1:${DEFAULT_PORT} by default (loopback only); [::1]:PORT for
                     IPv6; :PORT for every address of the host. Port 0 picks a free port; the bound
                     address is printed on stdout.
  --no-node-ksmd     leave out the node_ksmd_* series, where node_exporter's ksmd collector (or
                     another exporter) already exports them
${FLEET_SERVE_HELP}`;

/** HOST:PORT, [IPV6]:PORT, or :PORT (host undefined: every address, IPv6 and IPv4). */
/** `what`: the command and flag the address came from, as the usage error names them. */
export function parseListen(value: string, what = 'pagefuse serve: --listen'): { host: string | undefined; port: number } {
  const all = /^:(\d{1,5})$/.exec(value);
  if (all !== null && Number(all[1]) <= 65535) return { host: undefined, port: Number(all[1]) };
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  const ok = m !== null && host !== undefined && port <= 65535 && (m[1] !== undefined ? isIP(host) === 6 : host === 'localhost' || isIP(host) === 4);
  if (!ok) {
    throw new UsageError(
      `${what} must be HOST:PORT, [IPv6]:PORT or :PORT, with an IPv4 address or localhost as HOST and a port 0-65535, got '${value}'`,
    );
  }
  return { host, port };
}

/** Listens on HOST:PORT (every address without HOST); a refusal says why in the words of --listen. */
export function listen(server: Server | HttpsServer, host: string | undefined, port: number): Promise<void> {
  const where = host ?? 'every address';
  return new Promise((resolve, reject) => {
    server.once('error', (err) => {
      const code = (err as NodeJS.ErrnoException).code;
      const why =
        code === 'EADDRINUSE'
          ? `port ${port} on ${where} is already in use; pick another with --listen`
          : code === 'EADDRNOTAVAIL'
            ? `${host} is not an address of this host`
            : code === 'EACCES'
              ? `binding port ${port} needs privileges; use a port above 1023`
              : `cannot listen on ${where} port ${port}: ${err.message}`;
      reject(explain(err, why));
    });
    server.listen(port, host, () => resolve());
  });
}

export async function run(args: string[]): Promise<number> {
  boundMemory();
  const { values } = parse('serve', args, {
    options: { listen: { type: 'string' }, 'no-node-ksmd': { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...FLEET_SERVE_FLAGS },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const { host, port } = parseListen(values.listen ?? `127.0.0.1:${DEFAULT_PORT}`);
  const fleet = await fleetServeOptions(values);
  const sampler = new Sampler(hostSource(), { capacity: 2 });
  const registry = metricsRegistry(() => sampler.sampleNow(), { nodeKsmd: values['no-node-ksmd'] !== true });
  // One exposition for every scrape that comes while it is being made. Each scrape made its own before, and one
  // connection sending 10,000 pipelined requests (no token needed) took serve to 1.3 GB and 20 CPU-seconds.
  let rendering: Promise<string> | undefined;
  const render = (): Promise<string> =>
    (rendering ??= registry.metrics().finally(() => {
      rendering = undefined;
    }));
  // Requests a connection may have in flight at once; those past it are answered 503 at once, without work.
  // Node dispatches every pipelined request as it arrives and keeps each answer until those before it are sent,
  // so an unbounded pipeline held one full answer per request. Prometheus sends one request at a time.
  const inFlight = new WeakMap<object, number>();
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    const pending = inFlight.get(req.socket) ?? 0;
    if (pending >= MAX_PIPELINED) {
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' }).end('too many requests in flight on this connection\n');
      return;
    }
    inFlight.set(req.socket, pending + 1);
    res.once('close', () => inFlight.set(req.socket, (inFlight.get(req.socket) ?? 1) - 1));
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === SKETCH_PATH && fleet.endpoint !== undefined) {
      fleet.endpoint.handle(req, res);
    } else if (path === '/metrics') {
      render().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message.split('\n')[0]}\n`),
      );
    } else if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>pagefuse</title><a href="/metrics">metrics</a>\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; metrics are at /metrics\n');
    }
  };
  const server = fleet.tls === undefined ? createServer(handler) : createTlsServer(fleet.tls, handler);
  await listen(server, host, port);
  const addr = server.address();
  const bound = typeof addr === 'object' && addr !== null ? addr : { address: host ?? '::', port, family: 'IPv6' };
  const shown = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  const scheme = fleet.tls === undefined ? 'http' : 'https';
  process.stdout.write(`pagefuse serve: listening on ${scheme}://${shown}:${bound.port}/metrics\n`);
  if (fleet.endpoint !== undefined) process.stdout.write(`pagefuse serve: fleet sketches at ${scheme}://${shown}:${bound.port}${SKETCH_PATH} (${fleet.access})\n`);
  return untilStopped(server);
}

/** How long requests in flight at SIGTERM or SIGINT may take to be answered before their connections are closed. */
export const STOP_GRACE_MS = 2000;

/**
 * Resolves 0 once SIGINT or SIGTERM has stopped `server`: it takes no new connection, closes the idle ones, and
 * gives the requests in flight STOP_GRACE_MS to be answered (they were cut off at once: a scrape under way at a
 * restart got no answer), then closes what is left; a second signal closes it at once. `onStop` runs first.
 */
export function untilStopped(server: Server | HttpsServer, onStop: () => void = () => undefined): Promise<number> {
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (): void => {
      if (stopping) {
        server.closeAllConnections();
        return;
      }
      stopping = true;
      onStop();
      const force = setTimeout(() => server.closeAllConnections(), STOP_GRACE_MS);
      server.close(() => {
        clearTimeout(force);
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve(0);
      });
      server.closeIdleConnections();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
