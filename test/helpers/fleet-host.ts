// One simulated host of the fleet test, run as PID 1 of its own PID namespace inside its own network
// namespace: starts its generated guests, registers them (so serve sketches them), writes the
// guests' full keyed hash sets (M = 1, the truth the test checks estimates against), then runs a
// real `pagefuse serve` with the fleet key and waits. When it dies, the kernel kills everything in
// its PID namespace.
import { writeFileSync } from 'node:fs';
import { Workload } from '../../src/workload/workload.js';
import { Registry } from '../../src/safety/registry.js';
import { native } from '../../src/native.js';
import { readFleetKey } from '../../src/fleet/key.js';
import { startCli } from './cli.js';

export interface FleetHostConfig {
  listen: string;
  node: string;
  stateDir: string;
  keyFile: string;
  tokenFile: string;
  modulus: number;
  capacityBytes: number;
  truthFile: string;
  /** The CLI to run (helpers/cli.ts builtBin(), compiled once by the test, not by each host). */
  bin: string;
  guests: { name: string; seed: number; layers: { seed: number; pages: number }[]; ownPages: number }[];
}

const config = JSON.parse(process.argv[2]) as FleetHostConfig;
const workloads = await Promise.all(
  config.guests.map((g) => Workload.start({ processes: 1, imagePages: 0, layers: g.layers, uniquePages: g.ownPages, seed: g.seed })),
);
const registry = new Registry({ stateDir: config.stateDir });
const key = await readFleetKey(config.keyFile);
const truth: Record<string, string[]> = {};
for (const [i, g] of config.guests.entries()) {
  const pid = workloads[i].pids[0];
  registry.add({ pid, name: g.name, merge: true, via: 'register' });
  const full = await native.sketchProcess(pid, key.key, 1, true);
  truth[g.name] = Array.from(full.values, (v) => v.toString(16));
}
writeFileSync(config.truthFile, JSON.stringify(truth));
const serve = startCli(
  ['serve', '--listen', config.listen, '--fleet-key', config.keyFile, '--fleet-token', config.tokenFile,
    '--fleet-modulus', String(config.modulus), '--fleet-node', config.node, '--fleet-capacity', String(config.capacityBytes)],
  { bin: config.bin, env: { PAGEFUSE_STATE_DIR: config.stateDir } },
);
serve.child.stderr!.pipe(process.stderr);
void serve.next((l) => String(l.text).includes('fleet sketches at'), 24 * 3600_000, 'serve publishing sketches').then(() => process.stdout.write('READY\n'));
void serve.exited.then(({ status }) => process.exit(status ?? 1));
