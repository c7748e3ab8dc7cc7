// A small VM manager built on pagefuse's embedding API. It launches "VMs" merged from their first
// instruction (spawnMerged), runs the Tuner in-process, waits until merging has converged, and serves
// each VM's savings over HTTP on loopback. SIGINT/SIGTERM stop it: the Tuner puts back the knobs it found.
//
//   node --import tsx examples/vm-manager/vm-manager.ts [--vms 3] [--image-mib 48] [--own-mib 4] [--port 0]
//   curl http://127.0.0.1:PORT/vms
//
// The "VMs" are guest.mjs processes: an OS image common to all, zero pages and pages of their own.
// Launching qemu-system-x86_64 or firecracker instead is one argument to spawnMerged.
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ChildProcess } from 'node:child_process';
import { Tuner, registeredSavings, spawnMerged, type RegisteredSavings, type VmFigures } from 'pagefuse';

const { values } = parseArgs({
  options: {
    vms: { type: 'string', default: '3' },
    'image-mib': { type: 'string', default: '48' },
    'own-mib': { type: 'string', default: '4' },
    port: { type: 'string', default: '0' },
    'timeout-s': { type: 'string', default: '120' },
  },
});
const count = Number(values.vms);
const GUEST = fileURLToPath(new URL('./guest.mjs', import.meta.url));

/** Starts one VM, merged, under its name; resolves once its memory is written. */
async function launch(name: string): Promise<ChildProcess> {
  const vm = spawnMerged(process.execPath, [GUEST, values['image-mib'], values['own-mib']], { name, stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = (await once(createInterface({ input: vm.stdout! }), 'line')) as [string];
  if (line !== 'ready') throw new Error(`${name}: unexpected first line ${JSON.stringify(line)}`);
  return vm;
}

/** What the HTTP API serves per VM: its name, pid and what KSM saves in it. */
function vmJson(s: RegisteredSavings) {
  return { name: s.name, pid: s.pid, merging_pages: s.ksm?.mergingPages ?? null, profit_bytes: s.ksm?.profitBytes ?? null };
}

const vms: ChildProcess[] = [];
// This manager stops on SIGINT/SIGTERM itself (below), so the Tuner leaves those signals to it; it still
// puts the knobs back on exit and on an uncaught exception.
const tuner = new Tuner({ policy: 'adaptive', cpuBudget: 0.5, handleSignals: false });
const shutdown = new AbortController();
let server: Server | undefined;

async function stop(code: number): Promise<void> {
  shutdown.abort();
  server?.close();
  await tuner.stop(); // puts back the knobs it found
  for (const vm of vms) vm.kill('SIGKILL');
  process.exitCode = code;
}
process.once('SIGINT', () => void stop(0));
process.once('SIGTERM', () => void stop(0));

try {
  for (let i = 1; i <= count; i++) vms.push(await launch(`vm-${i}`));
  tuner.on('error', (err) => console.error(`tuner: ${err.message}`));
  tuner.on('vm-merged', (vm: VmFigures) => console.log(`${vm.name}: ${vm.mergingPages} pages merged`));
  tuner.on('vm-exited', (vm: VmFigures) => console.log(`${vm.name} exited (${vm.mergingPages} pages were merged)`));
  await tuner.start({ signal: shutdown.signal });
  const converged = await tuner.waitForConvergence({ signal: shutdown.signal, timeoutMs: Number(values['timeout-s']) * 1000 });
  console.log(`converged: ${converged.reasons.at(-1)}`);

  const ours = new Set(vms.map((vm) => vm.pid));
  server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/vms') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /vms\n');
      return;
    }
    registeredSavings({ signal: shutdown.signal })
      .then((all) => {
        const body = all.filter((s) => ours.has(s.pid)).map(vmJson);
        res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
      })
      .catch((err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`));
  });
  server.listen(Number(values.port), '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  console.log(`listening http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : values.port}/vms`);
} catch (err) {
  if ((err as { code?: string }).code !== 'ABORT_ERR') {
    console.error(`vm-manager: ${(err as Error).message}`);
    await stop(1);
  }
}
