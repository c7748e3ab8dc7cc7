// The sketch endpoint `serve` adds when a fleet key is configured: GET /fleet/sketch answers this
// host's keyed sketch to a caller that shows the bearer token or a TLS client certificate the
// configured CA signed. Never on /metrics, never without one of the two.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { encodeHostSketch, type HostSketch } from './sketch.js';

export const SKETCH_PATH = '/fleet/sketch';

export interface SketchEndpointOptions {
  /** Takes a fresh sketch of the host. */
  take: () => Promise<HostSketch>;
  /** The bearer token callers must send (`Authorization: Bearer …`), if tokens are accepted. */
  token?: string;
  /** Callers with a client certificate the server's CA verified are let in (HTTPS only). */
  clientCertificates?: boolean;
  /** A sketch younger than this is served again instead of reading the VMs' memory anew. */
  maxAgeMs: number;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export class SketchEndpoint {
  private readonly tokenDigest: Buffer | undefined;
  private cached: { at: number; body: string } | undefined;
  private pending: Promise<string> | undefined;

  constructor(private readonly options: SketchEndpointOptions) {
    if (options.token === undefined && options.clientCertificates !== true) {
      throw new RangeError('the sketch endpoint needs a bearer token or client certificates');
    }
    this.tokenDigest = options.token === undefined ? undefined : digest(options.token);
  }

  /** Who may read: a valid client certificate, or the bearer token (compared in constant time). */
  authorized(req: IncomingMessage): boolean {
    const socket = req.socket as Partial<TLSSocket>;
    if (this.options.clientCertificates === true && socket.authorized === true) return true;
    if (this.tokenDigest === undefined) return false;
    const m = /^Bearer ([\x21-\x7e]{1,4096})$/.exec(req.headers.authorization ?? '');
    return m !== null && timingSafeEqual(digest(m[1]), this.tokenDigest);
  }

  private body(): Promise<string> {
    const now = Date.now();
    if (this.cached !== undefined && now - this.cached.at < this.options.maxAgeMs) return Promise.resolve(this.cached.body);
    this.pending ??= this.options
      .take()
      .then((sketch) => {
        const body = `${JSON.stringify(encodeHostSketch(sketch))}\n`;
        this.cached = { at: Date.now(), body };
        return body;
      })
      .finally(() => {
        this.pending = undefined;
      });
    return this.pending;
  }

  /** Answers a request for SKETCH_PATH. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    if (!this.authorized(req)) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="pagefuse fleet"' }).end('sketches need the fleet bearer token or a client certificate\n');
      return;
    }
    this.body().then(
      (body) => res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : body),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`sketch failed: ${err.message.split('\n')[0]}\n`),
    );
  }
}
