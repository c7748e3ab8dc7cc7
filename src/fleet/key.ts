// The fleet key: a secret file shared by every host of a fleet. Sketch values are keyed with it
// (SipHash-2-4 in the addon), so a sketch says nothing about page contents to whoever lacks the key,
// and sketches made under different keys have no value in common. The key's id travels with each
// sketch so a planner can tell keys apart without learning the key.
import { createHash } from 'node:crypto';
import { PagefuseError } from '../errors.js';
import { readRegularFileBytes } from '../host/regular-file.js';

export interface FleetKey {
  /** 16 bytes for SipHash-2-4, derived from the file's bytes. */
  readonly key: Uint8Array;
  /** 16 hex digits naming the key (a hash of it under another label): safe to publish. */
  readonly id: string;
}

/** Fewer bytes than this cannot be a secret worth the name. */
export const MIN_KEY_BYTES = 16;

function derive(label: string, secret: Uint8Array): Buffer {
  return createHash('sha256').update(`pagefuse fleet ${label} v1\0`).update(secret).digest();
}

/** The key and id for a secret's bytes (surrounding whitespace ignored, so `openssl rand -hex 32 > key` works). */
export function fleetKeyFromBytes(bytes: Uint8Array): FleetKey {
  const secret = Buffer.from(Buffer.from(bytes).toString('latin1').trim(), 'latin1');
  if (secret.length < MIN_KEY_BYTES) {
    throw new PagefuseError('EINVAL', `the fleet key must hold at least ${MIN_KEY_BYTES} bytes, got ${secret.length}; make one with 'openssl rand -hex 32'`);
  }
  return { key: new Uint8Array(derive('key', secret).subarray(0, 16)), id: derive('key id', secret).subarray(0, 8).toString('hex') };
}

/**
 * Reads a secret file (the fleet key, a bearer token). It must be a regular file that neither group nor others can
 * read or write, owned by root or by this user: another owner could replace it (a mode-600 key owned by nobody was
 * taken by root's serve), and a token readable by all (mode 644) was taken where a key of mode 640 was refused.
 */
export async function readSecretFile(path: string, what: string, maxBytes = 64 * 1024): Promise<Buffer> {
  const { bytes, stats: info } = await readRegularFileBytes(path, { what, maxBytes });
  if ((info.mode & 0o077) !== 0) {
    throw new PagefuseError('EPERM', `${what} ${path} is readable or writable by group or others (mode ${(info.mode & 0o777).toString(8)}); run 'chmod 600 ${path}'`);
  }
  const uid = process.geteuid?.() ?? 0;
  if (info.uid !== 0 && info.uid !== uid) {
    throw new PagefuseError('EPERM', `${what} ${path} is owned by uid ${info.uid}, neither root nor this user (uid ${uid}), who could replace it; run 'chown ${uid} ${path}'`);
  }
  return bytes;
}

/** Reads the fleet key file (readSecretFile's rules): the key is what keeps sketches from being a content oracle. */
export async function readFleetKey(path: string): Promise<FleetKey> {
  return fleetKeyFromBytes(await readSecretFile(path, 'the fleet key'));
}
