// Estimate error of keyed sketches against M, measured with the addon on planted VM memory:
//   node --import tsx bench/fleet-error.ts [--mib 128] [--vms 6]
// VMs share layers (OS 40 %, version 20 %, application 15 %; the rest their own) in a pattern that
// gives pairs every overlap from 0 to 75 %. The truth is each pair's overlap from the full keyed hash
// sets (M = 1); for each M the overlap estimate M·X is compared with it, and with its stated bound.
import { parseArgs } from 'node:util';
import { native } from '../src/native.js';
import { fleetKeyFromBytes } from '../src/fleet/key.js';
import { commonValues, encodeSample, type Sample } from '../src/fleet/sketch.js';
import { estimateFromSample } from '../src/fleet/estimate.js';
import { KIND_IMAGE, KIND_UNIQUE, writePage } from '../src/workload/content.js';

const { values } = parseArgs({ options: { mib: { type: 'string' }, vms: { type: 'string' } } });
const MIB = Number(values.mib ?? 128);
const VMS = Number(values.vms ?? 6);
const PAGE = native.pageSize;
const pages = (MIB << 20) / PAGE;
const key = fleetKeyFromBytes(Buffer.from('fleet-error-bench-key-0123456789'));
const split = [0.4, 0.2, 0.15];
const samples: Sample[][] = [];
const moduli = [1, 16, 64, 256, 1024, 4096];
for (let v = 0; v < VMS; v++) {
  const buf = new ArrayBuffer(pages * PAGE);
  const words = new Uint32Array(buf);
  const per = PAGE / 4;
  let at = 0;
  // VM v: OS v % 2, version v % 3 (over both OSes), app v % 4.
  const seeds = [100 + (v % 2), 200 + (v % 3), 300 + (v % 4)];
  split.forEach((f, l) => {
    for (let i = 0; i < Math.floor(pages * f); i++, at++) writePage(words.subarray(at * per, (at + 1) * per), KIND_IMAGE, seeds[l], i);
  });
  for (let i = 0; at < pages; i++, at++) writePage(words.subarray(at * per, (at + 1) * per), KIND_UNIQUE, 1000 + v, i);
  samples.push(moduli.map((m) => {
    const s = native.sketchBuffer(buf, key.key, m);
    return { values: s.values, counts: s.counts };
  }));
}
const rows = moduli.slice(1).map((m, k) => {
  let sumAbs = 0;
  let worst = 0;
  let within = 0;
  let n = 0;
  let worstRatio = 0;
  let bytes = 0;
  for (let a = 0; a < VMS; a++) {
    const e = encodeSample(samples[a][k + 1]);
    bytes += Buffer.byteLength(e.values, 'base64') + Buffer.byteLength(e.repeats, 'base64');
    for (let b = a + 1; b < VMS; b++) {
      const truth = commonValues(samples[a][0], samples[b][0]);
      const est = estimateFromSample(commonValues(samples[a][k + 1], samples[b][k + 1]), m);
      const err = Math.abs(est.pages - truth);
      sumAbs += err;
      worst = Math.max(worst, err);
      worstRatio = Math.max(worstRatio, err / Math.max(1, est.bound));
      if (err <= est.bound) within++;
      n++;
    }
  }
  return {
    modulus: m,
    sketch_kib_per_gib: +((bytes / VMS) * (1024 / MIB) / 1024).toFixed(1),
    mean_abs_error_pct_of_vm: +((100 * sumAbs) / n / pages).toFixed(2),
    worst_abs_error_pct_of_vm: +((100 * worst) / pages).toFixed(2),
    within_bound: `${within}/${n}`,
    worst_error_over_bound: +worstRatio.toFixed(2),
  };
});
process.stdout.write(`${JSON.stringify({ vm_mib: MIB, vms: VMS, pairs: (VMS * (VMS - 1)) / 2, rows }, null, 2)}\n`);
