// Fleet-scale planning from recorded sketches:
//   node --import tsx bench/fleet.ts [--hosts 1000] [--vms 20000] [--modulus 256] [--gib 1] [--dir DIR] [--max-moves N] [--out PLAN.json]
// Generates a fleet of VMs built from templates (OS, version, application layers plus pages of their
// own, each layer page resident with probability 0.95), scattered over hosts, and records every
// host's sketch in the wire format /fleet/sketch serves. It then times, in this process, what
// `pagefuse plan` does with them: decode and check every answer, build the fleet model, plan. The
// figures (seconds, CPU seconds, peak RSS, load average) are printed as JSON; the targets are ≤ 30 s
// and ≤ 2 GiB. A --dir that already holds sketches is planned as it is, without generating (and is kept).
import { mkdirSync, mkdtempSync, writeFileSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { encodeHostSketch, decodeHostSketch, SKETCH_FORMAT, type HostSketch } from '../src/fleet/sketch.js';
import { planMigrations } from '../src/fleet/plan.js';
import { mix } from '../src/workload/content.js';

const { values } = parseArgs({
  options: { hosts: { type: 'string' }, vms: { type: 'string' }, modulus: { type: 'string' }, gib: { type: 'string' }, dir: { type: 'string' }, 'max-moves': { type: 'string' }, out: { type: 'string' } },
});
const HOSTS = Number(values.hosts ?? 1000);
const VMS = Number(values.vms ?? 20000);
const M = Number(values.modulus ?? 256);
const GIB = Number(values.gib ?? 1);
const PAGE = 4096;
const pages = (GIB * 2 ** 30) / PAGE;
const layers = { os: 0.4, version: 0.2, app: 0.15 };
const OSES = 12;
const VERSIONS = 4;
const APPS = 8;

/** A keyed-looking sampled value for content (kind, a, b): 64 bits, 0 modulo M. */
function value(kind: number, a: number, b: number): bigint {
  const hi = mix(kind, a, b, 1);
  const lo = mix(kind, a, b, 2);
  return ((BigInt(hi) << 32n) | BigInt(lo)) & ~BigInt(M - 1);
}

/** The sampled contents of a layer of `n` pages: each page is in the sample with probability 1/M (its value decides). */
function layerSample(kind: number, seed: number, n: number): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < n; i++) if (mix(kind, seed, i, 3) % M === 0) out.push(value(kind, seed, i));
  return out;
}

/**
 * A VM's own pages, which no other VM holds: only how many are sampled matters to the planner, so
 * the expected number of values (n / M) is drawn directly instead of testing every page (which cost
 * 65,536 hashes per 1 GiB VM and stalled the 20,000-VM generator).
 */
function ownSample(seed: number, n: number): bigint[] {
  return Array.from({ length: Math.round(n / M) }, (_, i) => value(4, seed, i));
}

const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'pagefuse-fleet-bench-'));
mkdirSync(dir, { recursive: true });
// A --dir that already holds sketches is read as it is (a recorded fleet): nothing is generated.
const recorded = readdirSync(dir).some((f) => f.endsWith('.json'));
const t0 = performance.now();
let wireBytes = 0;
if (!recorded) generate();
const generated = (performance.now() - t0) / 1000;

function generate(): void {
  const osS = Array.from({ length: OSES }, (_, o) => layerSample(1, o, pages * layers.os));
  const verS = Array.from({ length: OSES * VERSIONS }, (_, v) => layerSample(2, v, pages * layers.version));
  const appS = Array.from({ length: OSES * VERSIONS * APPS }, (_, a) => layerSample(3, a, pages * layers.app));
  const ownPages = pages * (1 - layers.os - layers.version - layers.app);
  const capacity = Math.ceil((VMS / HOSTS) * 1.25) * GIB * 2 ** 30;
  const hostVms: HostSketch['vms'][] = Array.from({ length: HOSTS }, () => []);
  for (let v = 0; v < VMS; v++) {
    // Popular templates more often (Zipf-like), VMs scattered over hosts.
    const os = mix(v, 11) % OSES < 8 ? mix(v, 12) % 3 : mix(v, 13) % OSES;
    const ver = os * VERSIONS + (mix(v, 14) % VERSIONS);
    const app = ver * APPS + (mix(v, 15) % APPS);
    const resident = (x: bigint, i: number): boolean => mix(v, i, 16) % 20 !== 0; // 95 % of a layer's pages resident
    const set: bigint[] = [];
    [osS[os], verS[ver], appS[app]].forEach((layer, l) => layer.forEach((x, i) => resident(x, i + l * 1e7) && set.push(x)));
    set.push(...ownSample(v, ownPages));
    set.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const values = BigUint64Array.from(new Set(set));
    hostVms[mix(v, 17) % HOSTS].push({
      name: `ns-${os}/vm-${v}`,
      pid: 1000 + v,
      vmm: 'qemu',
      memoryBytes: GIB * 2 ** 30,
      pages,
      zeroPages: 0,
      thpPages: null,
      takenAt: new Date().toISOString(),
      sample: { values, counts: new Uint32Array(values.length).fill(1) },
    });
  }
  hostVms.forEach((vms, h) => {
    const text = JSON.stringify(encodeHostSketch({ format: SKETCH_FORMAT, keyId: '0123456789abcdef', modulus: M, pageSize: PAGE, host: `node-${h}`, takenAt: new Date().toISOString(), capacityBytes: capacity, vms }));
    wireBytes += text.length;
    writeFileSync(join(dir, `node-${h}.json`), text);
  });
}

const t1 = performance.now();
const cpu1 = process.cpuUsage();
const sketches = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => {
    const text = readFileSync(join(dir, f), 'utf8');
    if (recorded) wireBytes += text.length;
    return decodeHostSketch(JSON.parse(text), f);
  });
const t2 = performance.now();
const plan = planMigrations(sketches, values['max-moves'] === undefined ? {} : { maxMoves: Number(values['max-moves']) });
const t3 = performance.now();
const cpu3 = process.cpuUsage(cpu1);
if (values.dir === undefined) rmSync(dir, { recursive: true, force: true });
// The plan itself, to compare plans across changes (its sha256 is in the report either way).
const planText = JSON.stringify(plan);
if (values.out !== undefined) writeFileSync(values.out, planText);
const report = {
  hosts: sketches.length,
  vms: sketches.reduce((n, s) => n + s.vms.length, 0),
  modulus: sketches[0]?.modulus,
  sketch_bytes_per_vm: Math.round(wireBytes / sketches.reduce((n, s) => n + s.vms.length, 0)),
  generate_seconds: +generated.toFixed(1),
  read_and_check_seconds: +((t2 - t1) / 1000).toFixed(2),
  plan_seconds: +((t3 - t2) / 1000).toFixed(2),
  total_seconds: +((t3 - t1) / 1000).toFixed(2),
  // CPU seconds of this process for the same span: on a loaded machine wall time says more about the others.
  total_cpu_seconds: +((cpu3.user + cpu3.system) / 1e6).toFixed(2),
  peak_rss_mib: Math.round(process.resourceUsage().maxRSS / 1024),
  moves: plan.moves.length,
  expected_saving_gib: +(plan.expected_saving_bytes / 2 ** 30).toFixed(1),
  bound_gib: +(plan.bound_bytes / 2 ** 30).toFixed(1),
  plan_sha256: createHash('sha256').update(planText).digest('hex').slice(0, 16),
  load_average: loadavg().map((l) => +l.toFixed(1)),
};
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
