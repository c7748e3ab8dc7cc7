// serve's fleet options: the keyed sketch endpoint, who may read it, and HTTPS.
import type { ServerOptions } from 'node:https';
import { hostname } from 'node:os';
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { PagefuseError } from '../errors.js';
import { UsageError, intFlag, readFlagFile, readSecretFlagFile, wholeNumber, type Options } from './common.js';
import { readFleetKey } from '../fleet/key.js';
import { sketchHost, checkModulus, DEFAULT_MODULUS } from '../fleet/collect.js';
import { SketchEndpoint } from '../fleet/endpoint.js';
import { isSketchHostName } from '../fleet/sketch.js';
import { Registry } from '../safety/registry.js';

export const FLEET_SERVE_FLAGS = {
  'fleet-key': { type: 'string' },
  'fleet-token': { type: 'string' },
  'fleet-modulus': { type: 'string' },
  'fleet-node': { type: 'string' },
  'fleet-capacity': { type: 'string' },
  'fleet-max-age': { type: 'string' },
  'fleet-all-memory': { type: 'boolean' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-client-ca': { type: 'string' },
} satisfies Options;

export const FLEET_SERVE_HELP = `
Fleet sketches (for 'pagefuse plan'), only when a fleet key is given; never on /metrics:
  --fleet-key FILE      the fleet's secret key (mode 600): serve keyed sketches of this host's VMs at
                        /fleet/sketch. Only keyed, sampled values leave the host, never page hashes.
  --fleet-token FILE    callers must send 'Authorization: Bearer <the file's content>'
  --tls-cert FILE --tls-key FILE
                        serve over HTTPS (metrics too)
  --tls-client-ca FILE  callers with a client certificate this CA signed may read sketches
  --fleet-modulus M     sample 1 page content in M (a power of two; default ${DEFAULT_MODULUS}: ~8 KiB per GiB)
  --fleet-node NAME     this host's name for planners: its Kubernetes node name (default: hostname)
  --fleet-capacity BYTES memory this host offers to VMs (default: MemTotal)
  --fleet-max-age SECONDS re-read VM memory at most this often (default 300)
  --fleet-all-memory    sketch all private anonymous memory, not only what is marked mergeable
`;

type Values = { [K in keyof typeof FLEET_SERVE_FLAGS]?: (typeof FLEET_SERVE_FLAGS)[K]['type'] extends 'boolean' ? boolean : string };

export interface FleetServe {
  endpoint?: SketchEndpoint;
  tls?: ServerOptions;
  /** Who may read sketches, for the startup line. */
  access?: string;
}

/**
 * Checks PEM files before they are used, so a bad one is named by its flag: OpenSSL's own words alone
 * ('error:0480006C:PEM routines::no start line') said neither which file nor which flag, and plan met a bad CA
 * only host by host. `flags.ca` is the CA's flag in the command's words.
 */
export function checkTlsFiles(files: { ca?: string; cert?: string; key?: string }, flags: { ca: string }): void {
  const attempt = (what: string, check: () => void): void => {
    try {
      check();
    } catch (err) {
      throw new PagefuseError('EINVAL', `${what}: ${(err as Error).message.replace(/^error:[0-9A-F]+:/, '')}`);
    }
  };
  // createSecureContext passes a CA file that holds no certificate; X509Certificate reads the first one or throws.
  if (files.ca !== undefined) attempt(`--${flags.ca} holds no PEM certificate`, () => new X509Certificate(files.ca as string));
  if (files.cert !== undefined && files.key !== undefined) {
    attempt('--tls-cert and --tls-key are not a PEM certificate and its private key', () => createSecureContext({ cert: files.cert, key: files.key }));
  }
}

export async function fleetServeOptions(values: Values): Promise<FleetServe> {
  const out: FleetServe = {};
  const cert = values['tls-cert'];
  const key = values['tls-key'];
  const ca = values['tls-client-ca'];
  if ((cert === undefined) !== (key === undefined)) throw new UsageError('pagefuse serve: --tls-cert and --tls-key go together');
  if (ca !== undefined && cert === undefined) throw new UsageError('pagefuse serve: --tls-client-ca needs --tls-cert and --tls-key (HTTPS)');
  if (cert !== undefined && key !== undefined) {
    out.tls = {
      cert: await readFlagFile('tls-cert', cert),
      key: await readFlagFile('tls-key', key),
      // Asked for, not required: /metrics stays open to scrapers; /fleet/sketch checks it.
      ...(ca === undefined ? {} : { ca: await readFlagFile('tls-client-ca', ca), requestCert: true, rejectUnauthorized: false }),
    };
    checkTlsFiles(out.tls as { ca?: string; cert: string; key: string }, { ca: 'tls-client-ca' });
  }
  const keyFile = values['fleet-key'];
  const fleetOnly = (['fleet-token', 'fleet-modulus', 'fleet-node', 'fleet-capacity', 'fleet-max-age', 'fleet-all-memory'] as const).find((f) => values[f] !== undefined);
  if (keyFile === undefined) {
    if (fleetOnly !== undefined) throw new UsageError(`pagefuse serve: --${fleetOnly} needs --fleet-key`);
    return out;
  }
  const tokenFile = values['fleet-token'];
  if (tokenFile === undefined && ca === undefined) {
    throw new UsageError('pagefuse serve: --fleet-key needs --fleet-token FILE or --tls-client-ca FILE: sketches are never served to anyone who asks');
  }
  let modulus = DEFAULT_MODULUS;
  if (values['fleet-modulus'] !== undefined) {
    try {
      modulus = checkModulus(wholeNumber(values['fleet-modulus']));
    } catch {
      throw new UsageError(`pagefuse serve: --fleet-modulus must be a power of two from 1 to 2^30, got '${values['fleet-modulus']}'`);
    }
  }
  const node = values['fleet-node'];
  if (node !== undefined && !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(node)) {
    throw new UsageError(`pagefuse serve: --fleet-node must be a DNS name (a Kubernetes node name), got '${node}'`);
  }
  if (node === undefined && !isSketchHostName(hostname())) {
    throw new UsageError(`pagefuse serve: this host's name ${JSON.stringify(hostname())} is not one a planner takes (letters, digits, '-', '.', '_'); give --fleet-node NAME`);
  }
  const capacity = intFlag('serve', 'fleet-capacity', values['fleet-capacity'], 1);
  const maxAge = intFlag('serve', 'fleet-max-age', values['fleet-max-age'], 0, 86_400) ?? 300;
  const fleetKey = await readFleetKey(keyFile);
  const token = tokenFile === undefined ? undefined : await readSecretFlagFile('fleet-token', tokenFile);
  if (token !== undefined && !/^[\x21-\x7e]{16,4096}$/.test(token)) {
    throw new UsageError(`pagefuse serve: the --fleet-token file must hold 16-4096 printable characters without spaces`);
  }
  const registry = new Registry();
  out.endpoint = new SketchEndpoint({
    take: () =>
      sketchHost({
        key: fleetKey,
        modulus,
        mergeableOnly: values['fleet-all-memory'] !== true,
        registered: new Map(registry.list().map((r) => [r.pid, r.name ?? `pid-${r.pid}`])),
        ...(node === undefined ? {} : { host: node }),
        ...(capacity === undefined ? {} : { capacityBytes: capacity }),
      }),
    ...(token === undefined ? {} : { token }),
    clientCertificates: ca !== undefined,
    maxAgeMs: maxAge * 1000,
  });
  out.access = [token === undefined ? '' : 'bearer token', ca === undefined ? '' : 'client certificates'].filter(Boolean).join(' or ');
  return out;
}
