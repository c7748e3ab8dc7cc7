// Keyed content sketches of VMs and hosts, and their wire format. A sample is a multiset of keyed
// values (distinct values ascending, with the number of pages carrying each): a host's sample is
// the sum of its VMs' samples, and a VM leaving is an exact subtraction. No addon needed here.
import { PagefuseError } from '../errors.js';

export const SKETCH_FORMAT = 'pagefuse.sketch/1';

export interface Sample {
  /** Distinct keyed values, ascending; each is 0 modulo the sketch's modulus. */
  readonly values: BigUint64Array;
  /** Pages carrying each value (≥ 1). */
  readonly counts: Uint32Array;
}

export interface VmSketch {
  /** The VM's name (libvirt domain, KubeVirt namespace/name, or the name it was registered with). */
  name: string;
  /** Its VMM process on the host that took the sketch. */
  pid: number;
  vmm: string;
  /** Memory the VM needs where it runs: its configured guest RAM when known, else its resident memory. */
  memoryBytes: number;
  /** Resident pages read (zero pages included). */
  pages: number;
  /** Zero-filled pages: counted, never sampled (KSM's use_zero_pages handles them anywhere). */
  zeroPages: number;
  /** Pages inside transparent huge pages; null when the host could not tell (no /proc/kpageflags). */
  thpPages: number | null;
  takenAt: string;
  sample: Sample;
}

export interface HostSketch {
  format: typeof SKETCH_FORMAT;
  /** Id of the fleet key the values were keyed with (never the key). */
  keyId: string;
  /** M: a page is sampled when its keyed value is 0 modulo M. A power of two. */
  modulus: number;
  pageSize: number;
  /** The host's name: its Kubernetes node name or hostname. */
  host: string;
  takenAt: string;
  /** Memory the host offers to VMs, in bytes. */
  capacityBytes: number;
  vms: VmSketch[];
}

export const EMPTY_SAMPLE: Sample = { values: new BigUint64Array(0), counts: new Uint32Array(0) };

/** The multiset sum of samples (a host is the sum of its VMs). */
export function addSamples(...samples: Sample[]): Sample {
  let acc = EMPTY_SAMPLE;
  for (const s of samples) acc = merge(acc, s, 1);
  return acc;
}

/** The multiset difference a − b; b must be contained in a (a VM leaving its host). */
export function subtractSample(a: Sample, b: Sample): Sample {
  return merge(a, b, -1);
}

function merge(a: Sample, b: Sample, sign: 1 | -1): Sample {
  const values = new BigUint64Array(a.values.length + (sign === 1 ? b.values.length : 0));
  const counts = new Uint32Array(values.length);
  let i = 0;
  let j = 0;
  let n = 0;
  const push = (v: bigint, c: number): void => {
    if (c === 0) return;
    values[n] = v;
    counts[n++] = c;
  };
  while (i < a.values.length || j < b.values.length) {
    const av = i < a.values.length ? a.values[i] : undefined;
    const bv = j < b.values.length ? b.values[j] : undefined;
    if (bv === undefined || (av !== undefined && av < bv)) {
      push(av as bigint, a.counts[i++]);
    } else if (av === undefined || bv < av) {
      if (sign === -1) throw new RangeError('subtractSample: the sample taken away is not part of the other');
      push(bv, b.counts[j++]);
    } else {
      const c = a.counts[i++] + sign * b.counts[j++];
      if (c < 0) throw new RangeError('subtractSample: the sample taken away is not part of the other');
      push(av, c);
    }
  }
  return { values: values.slice(0, n), counts: counts.slice(0, n) };
}

/** Distinct sampled values present in both samples. */
export function commonValues(a: Sample, b: Sample): number {
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < a.values.length && j < b.values.length) {
    if (a.values[i] === b.values[j]) {
      n++;
      i++;
      j++;
    } else if (a.values[i] < b.values[j]) i++;
    else j++;
  }
  return n;
}

/** Σ counts: sampled pages. */
export function sampledPages(s: Sample): number {
  let n = 0;
  for (const c of s.counts) n += c;
  return n;
}

// ---- wire format (JSON, snake_case) ----

/** What `serve` answers at /fleet/sketch. Values are little-endian u64 in base64; `repeats` lists the counts above 1. */
export interface SketchWire {
  format: string;
  key_id: string;
  modulus: number;
  page_size: number;
  host: string;
  taken_at: string;
  capacity_bytes: number;
  vms: {
    name: string;
    pid: number;
    vmm: string;
    memory_bytes: number;
    pages: number;
    zero_pages: number;
    thp_pages: number | null;
    taken_at: string;
    sampled_values: number;
    /** base64 of the distinct values, u64 little-endian, ascending. */
    values: string;
    /** base64 of (index, count) u32 little-endian pairs for the values carried by more than one page. */
    repeats: string;
  }[];
}

export function encodeSample(s: Sample): { values: string; repeats: string } {
  const values = Buffer.from(s.values.buffer, s.values.byteOffset, s.values.byteLength).toString('base64');
  const pairs: number[] = [];
  for (let i = 0; i < s.counts.length; i++) if (s.counts[i] !== 1) pairs.push(i, s.counts[i]);
  return { values, repeats: Buffer.from(new Uint32Array(pairs).buffer).toString('base64') };
}

export function encodeHostSketch(h: HostSketch): SketchWire {
  return {
    format: h.format,
    key_id: h.keyId,
    modulus: h.modulus,
    page_size: h.pageSize,
    host: h.host,
    taken_at: h.takenAt,
    capacity_bytes: h.capacityBytes,
    vms: h.vms.map((v) => ({
      name: v.name,
      pid: v.pid,
      vmm: v.vmm,
      memory_bytes: v.memoryBytes,
      pages: v.pages,
      zero_pages: v.zeroPages,
      thp_pages: v.thpPages,
      taken_at: v.takenAt,
      sampled_values: v.sample.values.length,
      ...encodeSample(v.sample),
    })),
  };
}

/** Limits a decoder holds an answer to: a host's answer is untrusted input. */
export const MAX_VMS_PER_HOST = 4096;
export const MAX_VALUES_PER_VM = 1 << 24;
/**
 * A VM's name or VMM: printable in any script (libvirt takes UTF-8 domain names; ASCII only left out a whole host
 * over one VM named café), 1-253 characters, none of them a control or format character (an escape sequence, a
 * bidirectional override) nor a line break, and not starting with a blank.
 */
const NAME_RE = /^[^\p{C}\p{Z}][^\p{C}\p{Zl}\p{Zp}]{0,252}$/u;
/**
 * The host's name: what `plan --format virsh` puts into a libvirt URI (qemu+ssh://HOST/system). Any printable
 * text let a peer name itself 'h/system?command=/tmp/x&x=' and choose the program libvirt runs for the ssh transport.
 */
const HOST_RE = /^[A-Za-z0-9](?:[-A-Za-z0-9._]{0,251}[A-Za-z0-9])?$/;

/** Whether a sketch may carry `name` as its host's name (HOST_RE). */
export function isSketchHostName(name: string): boolean {
  return HOST_RE.test(name);
}

/**
 * `raw` as a sketch may carry it as a name (NAME_RE): what it cannot hold becomes '?', and at most 240 characters,
 * leaving room for the '#PID' that keeps two VMs of one name apart.
 */
export function sketchName(raw: string, fallback: string): string {
  const name = [...raw.replace(/[\p{C}\p{Zl}\p{Zp}]/gu, '?').replace(/^\p{Z}+/u, '')].slice(0, 240).join('');
  return name === '' ? fallback : name;
}

function bad(source: string, what: string): PagefuseError {
  return new PagefuseError('EBADMSG', `${source}: not a pagefuse sketch: ${what}`);
}

function whole(o: Record<string, unknown>, key: string, source: string, where: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(source, `${where}${key} must be a whole number ≥ 0`);
  return v;
}

function text(o: Record<string, unknown>, key: string, source: string, where: string, re = NAME_RE, what = 'a printable string of 1-253 characters'): string {
  const v = o[key];
  if (typeof v !== 'string' || !re.test(v)) throw bad(source, `${where}${key} must be ${what}`);
  return v;
}

function time(o: Record<string, unknown>, key: string, source: string, where: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v.length > 40 || Number.isNaN(Date.parse(v))) throw bad(source, `${where}${key} must be an ISO 8601 time`);
  return v;
}

/**
 * The bytes of canonical base64 (what Buffer writes), or null for anything else. Buffer.from skips
 * what is not base64, so the bytes are written back and compared: natively, where a regular
 * expression over every character cost 1.6 s across a 20,000-VM fleet.
 */
function base64(s: string): Buffer | null {
  const b = Buffer.from(s, 'base64');
  return b.toString('base64') === s ? b : null;
}

function decodeSample(values: unknown, repeats: unknown, modulus: bigint, source: string, where: string): Sample {
  const vb = typeof values === 'string' ? base64(values) : null;
  const rb = typeof repeats === 'string' ? base64(repeats) : null;
  if (vb === null || rb === null) throw bad(source, `${where}values and repeats must be base64`);
  if (vb.length % 8 !== 0 || vb.length / 8 > MAX_VALUES_PER_VM) throw bad(source, `${where}values must be whole u64s, at most ${MAX_VALUES_PER_VM}`);
  const out = new BigUint64Array(vb.length / 8);
  new Uint8Array(out.buffer).set(vb);
  // Checked on 32-bit words (the wire is little-endian, as is this machine): BigInt arithmetic per value
  // cost seconds over a 20,000-VM fleet. The modulus is at most 2^30, so it only constrains the low word.
  const words = new Uint32Array(out.buffer, out.byteOffset, out.length * 2);
  const mask = Number(modulus) - 1;
  for (let i = 0; i < out.length; i++) {
    const lo = words[2 * i];
    if ((lo & mask) !== 0) throw bad(source, `${where}a value is not 0 modulo the modulus`);
    if (i > 0) {
      const hi = words[2 * i + 1];
      const hiBefore = words[2 * i - 1];
      if (hi < hiBefore || (hi === hiBefore && lo <= words[2 * i - 2])) throw bad(source, `${where}values must be distinct and ascending`);
    }
  }
  const counts = new Uint32Array(out.length).fill(1);
  if (rb.length % 8 !== 0) throw bad(source, `${where}repeats must be u32 pairs`);
  const pairs = new Uint32Array(rb.length / 4);
  new Uint8Array(pairs.buffer).set(rb);
  for (let k = 0; k < pairs.length; k += 2) {
    const index = pairs[k];
    if (index >= counts.length || pairs[k + 1] < 2 || (k > 0 && index <= pairs[k - 2])) throw bad(source, `${where}repeats must name values in order, with counts ≥ 2`);
    counts[index] = pairs[k + 1];
  }
  return { values: out, counts };
}

/** Checks and decodes one host's answer; throws a PagefuseError (EBADMSG) saying what is wrong. */
export function decodeHostSketch(json: unknown, source: string): HostSketch {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw bad(source, 'the answer is not a JSON object');
  const o = json as Record<string, unknown>;
  if (o.format !== SKETCH_FORMAT) throw bad(source, `format must be '${SKETCH_FORMAT}'`);
  const keyId = text(o, 'key_id', source, '', /^[0-9a-f]{16}$/);
  const modulus = whole(o, 'modulus', source, '');
  if (modulus < 1 || modulus > 2 ** 30 || (modulus & (modulus - 1)) !== 0) throw bad(source, 'modulus must be a power of two up to 2^30');
  const pageSize = whole(o, 'page_size', source, '');
  if (pageSize < 4096 || (pageSize & (pageSize - 1)) !== 0) throw bad(source, 'page_size must be a power of two ≥ 4096');
  const host = text(o, 'host', source, '', HOST_RE, "a host name (letters, digits, '-', '.' and '_', at most 253)");
  const takenAt = time(o, 'taken_at', source, '');
  const capacityBytes = whole(o, 'capacity_bytes', source, '');
  if (!Array.isArray(o.vms) || o.vms.length > MAX_VMS_PER_HOST) throw bad(source, `vms must be a list of at most ${MAX_VMS_PER_HOST}`);
  const names = new Set<string>();
  const vms = o.vms.map((raw: unknown, i: number): VmSketch => {
    const where = `vms[${i}].`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad(source, `vms[${i}] is not an object`);
    const v = raw as Record<string, unknown>;
    const name = text(v, 'name', source, where);
    if (names.has(name)) throw bad(source, `two VMs are named ${JSON.stringify(name)}`);
    names.add(name);
    const thp = v.thp_pages === null ? null : whole(v, 'thp_pages', source, where);
    const sample = decodeSample(v.values, v.repeats, BigInt(modulus), source, where);
    return {
      name,
      pid: whole(v, 'pid', source, where),
      vmm: text(v, 'vmm', source, where),
      memoryBytes: whole(v, 'memory_bytes', source, where),
      pages: whole(v, 'pages', source, where),
      zeroPages: whole(v, 'zero_pages', source, where),
      thpPages: thp,
      takenAt: time(v, 'taken_at', source, where),
      sample,
    };
  });
  return { format: SKETCH_FORMAT, keyId, modulus, pageSize, host, takenAt, capacityBytes, vms };
}
