// Finding the fleet's hosts (a host list file or Prometheus http_sd JSON, from a file or a URL) and
// reading their sketches concurrently, each with a timeout. A host that fails, answers garbage or
// answers under another fleet key is reported and left out; it never stops the others.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { PagefuseError } from '../errors.js';
import { SKETCH_PATH } from './endpoint.js';
import { decodeHostSketch, type HostSketch } from './sketch.js';
import { readRegularFile } from '../host/regular-file.js';

export interface Target {
  /** Where the sketch is read. */
  url: string;
  /** The target as written in the list (host:port or URL). */
  name: string;
}

export interface HostFailure {
  target: string;
  /** One line: what went wrong. */
  reason: string;
}

export interface TlsFiles {
  /** CA to verify the hosts' certificates (PEM). */
  ca?: string;
  /** Client certificate and key (PEM) for hosts that ask for one. */
  cert?: string;
  key?: string;
}

export interface FetchOptions {
  token?: string;
  tls?: TlsFiles;
  timeoutMs?: number;
  concurrency?: number;
  /** The fleet key's id: answers under another key are refused. */
  keyId?: string;
  /** Largest answer accepted (default 256 MiB). */
  maxBytes?: number;
  /**
   * Most bytes of answers held at once across the hosts being read (default 1 GiB): 32 hosts at a time, each
   * sending up to maxBytes, took plan to 7-10 GB. A host whose answer would pass it is left out, with the reason.
   */
  maxTotalBytes?: number;
}

const HOSTPORT_RE = /^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):\d{1,5}$/;

function targetUrl(entry: string, scheme: string, where: string): Target {
  if (/^https?:\/\//.test(entry)) {
    let u: URL;
    try {
      u = new URL(entry);
    } catch {
      throw new PagefuseError('EINVAL', `${where}: not a valid URL`);
    }
    if (u.pathname === '/' || u.pathname === '') u.pathname = SKETCH_PATH;
    return { url: u.toString(), name: entry };
  }
  // The entry is not repeated: as root the list may be any file (plan --hosts /etc/shadow, or a token file).
  if (!HOSTPORT_RE.test(entry)) throw new PagefuseError('EINVAL', `${where}: neither HOST:PORT nor an http(s) URL`);
  return hostPortTarget(entry, scheme);
}

/** A HOST:PORT (HOSTPORT_RE, checked by the caller) as a target: its sketch endpoint under `scheme`. */
function hostPortTarget(entry: string, scheme: string): Target {
  return { url: `${scheme}://${entry}${SKETCH_PATH}`, name: entry };
}

/** A host list: one HOST:PORT or URL per line; '#' starts a comment. */
export function parseHostList(text: string, source: string, scheme = 'http'): Target[] {
  const out: Target[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (line !== '') out.push(targetUrl(line, scheme, `${source}:${i + 1}`));
  });
  return out;
}

/**
 * Prometheus http_sd: [{ "targets": ["host:port", …], "labels": { "__scheme__": "https", … } }, …]. Targets are
 * HOST:PORT, as Prometheus has them, and `__scheme__` may raise http to https but not lower https to http: the
 * document may come over plain http, and a URL target or a lowered scheme sent the fleet token where it said.
 */
export function parseHttpSd(json: unknown, source: string, scheme = 'http'): Target[] {
  if (!Array.isArray(json)) throw new PagefuseError('EINVAL', `${source}: http_sd must be a JSON list of target groups`);
  const out: Target[] = [];
  json.forEach((group: unknown, i: number) => {
    const g = group as { targets?: unknown; labels?: unknown };
    if (g === null || typeof g !== 'object' || !Array.isArray(g.targets) || !g.targets.every((t) => typeof t === 'string')) {
      throw new PagefuseError('EINVAL', `${source}: group ${i} needs "targets", a list of strings`);
    }
    const labels = (g.labels ?? {}) as Record<string, unknown>;
    if (scheme === 'https' && labels.__scheme__ === 'http') {
      throw new PagefuseError('EINVAL', `${source}: group ${i} asks for http (__scheme__) where --scheme is https: the hosts would be read, and the token sent, in clear`);
    }
    const s = labels.__scheme__ === 'https' || labels.__scheme__ === 'http' ? labels.__scheme__ : scheme;
    (g.targets as string[]).forEach((t, j) => {
      if (!HOSTPORT_RE.test(t)) throw new PagefuseError('EINVAL', `${source}: group ${i}, target ${j} is not HOST:PORT`);
      out.push(hostPortTarget(t, s));
    });
  });
  return out;
}

/** Reads a host list or http_sd document from a file, or http_sd from an http(s) URL. */
export async function readTargets(source: { hosts?: string; httpSd?: string }, options: FetchOptions & { scheme?: string } = {}): Promise<Target[]> {
  const scheme = options.scheme ?? 'http';
  if (source.hosts !== undefined) {
    const text = await readRegularFile(source.hosts, { what: 'the host list' });
    return parseHostList(text, source.hosts, scheme);
  }
  const sd = source.httpSd;
  if (sd === undefined) throw new PagefuseError('EINVAL', 'no hosts: give a host list or an http_sd source');
  let text: string;
  if (/^https?:\/\//.test(sd)) {
    text = (
      await get(sd, { ...options, token: undefined }).catch((err: Error & { code?: string }) => {
        throw new PagefuseError(err.code ?? 'EIO', `cannot read the http_sd URL ${sd}: ${err.message}`);
      })
    ).toString('utf8');
  } else {
    text = await readRegularFile(sd, { what: 'the http_sd file' });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new PagefuseError('EINVAL', `${sd}: http_sd is not JSON`);
  }
  return parseHttpSd(json, sd, scheme);
}

/**
 * GET with a deadline over the whole exchange and a size limit. It settles exactly once, whatever the peer does:
 * a peer that answered `101 Switching Protocols` had Node hand the socket to an 'upgrade' listener there was
 * none of, with no 'response' or 'error' event, and the deadline (an AbortSignal, whose timer keeps nothing
 * alive) could not fire: `plan` exited 13 with nothing said, the other hosts' sketches lost.
 */
function get(url: string, options: FetchOptions, held: { bytes: number } = { bytes: 0 }): Promise<Buffer> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxBytes = options.maxBytes ?? 256 << 20;
  const maxTotal = options.maxTotalBytes ?? 1 << 30;
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    let settled = false;
    let size = 0;
    const done = (err: Error | undefined, body?: Buffer): void => {
      if (settled) return;
      settled = true;
      held.bytes -= size; // what the caller decodes from a body is its own
      clearTimeout(deadline);
      if (err !== undefined) {
        reject(err);
        req.destroy();
      } else resolve(body as Buffer);
    };
    // A timer of its own, which keeps the process alive until the exchange ends one way or another.
    const deadline = setTimeout(() => done(new PagefuseError('ETIMEDOUT', `no answer within ${timeoutMs} ms`)), timeoutMs);
    const onResponse = (res: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        size += c.length;
        held.bytes += c.length;
        if (size > maxBytes) {
          done(new PagefuseError('EMSGSIZE', `answer larger than ${maxBytes} bytes`));
          return;
        }
        if (held.bytes > maxTotal) {
          done(new PagefuseError('EMSGSIZE', `the answers being read together passed ${maxTotal} bytes; read fewer hosts at once (--concurrency)`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => {
        if (res.statusCode === 200) return done(undefined, Buffer.concat(chunks));
        const first = Buffer.concat(chunks).toString('utf8').split('\n')[0].slice(0, 200).replace(/[^\x20-\x7e]/g, '?');
        done(new PagefuseError('EPROTO', `HTTP ${res.statusCode}${first ? `: ${first}` : ''}`));
      });
      res.on('error', (err) => done(err));
    };
    const tls = options.tls ?? {};
    const req =
      u.protocol === 'https:'
        ? httpsRequest(u, { headers, ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}) }, onResponse)
        : httpRequest(u, { headers }, onResponse);
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      done(new PagefuseError('EPROTO', `HTTP ${res.statusCode}: the host switched protocols instead of answering`));
    });
    req.on('error', (err: Error & { code?: string }) => {
      done(err.code !== undefined && !(err instanceof PagefuseError) ? new PagefuseError(err.code, `${err.message}`) : err);
    });
    req.on('close', () => done(new PagefuseError('ECONNRESET', 'the connection closed without an answer')));
    req.end();
  });
}

export interface FetchResult {
  hosts: { target: Target; sketch: HostSketch }[];
  failures: HostFailure[];
}

/** Reads every target's sketch, `concurrency` at a time. */
export async function fetchSketches(targets: Target[], options: FetchOptions = {}): Promise<FetchResult> {
  const hosts: FetchResult['hosts'] = [];
  const failures: HostFailure[] = [];
  let next = 0;
  const held = { bytes: 0 };
  const worker = async (): Promise<void> => {
    while (next < targets.length) {
      const target = targets[next++];
      try {
        const body = await get(target.url, options, held);
        let json: unknown;
        try {
          json = JSON.parse(body.toString('utf8'));
        } catch {
          throw new PagefuseError('EBADMSG', 'not a pagefuse sketch: the answer is not JSON');
        }
        const sketch = decodeHostSketch(json, target.name);
        if (options.keyId !== undefined && sketch.keyId !== options.keyId) {
          throw new PagefuseError('EKEYREJECTED', `sketched under fleet key ${sketch.keyId}, not this fleet's key ${options.keyId}: its values cannot be compared`);
        }
        hosts.push({ target, sketch });
      } catch (err) {
        const msg = (err as Error).message.split('\n')[0].replace(new RegExp(`^${target.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `), '');
        failures.push({ target: target.name, reason: msg });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency ?? 32, Math.max(1, targets.length)) }, worker));
  const order = new Map(targets.map((t, i) => [t.name, i]));
  hosts.sort((a, b) => (order.get(a.target.name) ?? 0) - (order.get(b.target.name) ?? 0));
  failures.sort((a, b) => (order.get(a.target) ?? 0) - (order.get(b.target) ?? 0));
  return { hosts, failures };
}
