// Soak of the tuner daemon: `pagefuse tune` (the built CLI, --dry-run so no knob changes) runs while a VM
// (a generated guest, src/workload, seen as qemu-system-x86_64 with -name guest=soak-N) starts every second
// (or as fast as guests can start) and the oldest stops while more than three run. Every VM must be seen (a vm_added line), and the daemon's fds and RSS must
// not grow.
//   node --import tsx scripts/soak-tune.ts [SECONDS=600]
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGuests, type Guests } from '../test/helpers/tune-guests.js';
import { processUse, type ProcessUse } from '../bench/serve-load.js';

const seconds = Number(process.argv[2] ?? 600);
const BIN = fileURLToPath(new URL('../dist/cli/bin.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'pagefuse-soak-'));
const tune = spawn(process.execPath, [BIN, 'tune', '--dry-run', '--force', '--json', '--interval', '1'], {
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { ...process.env, PAGEFUSE_TUNER_STATE: join(dir, 'tuner.json'), PAGEFUSE_TUNE_LOCK: join(dir, 'tune.lock') },
});
const seen = new Set<number>();
let buf = '';
tune.stdout.on('data', (d: Buffer) => {
  buf += d.toString();
  let nl;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = JSON.parse(buf.slice(0, nl)) as { event: string; pid?: number };
    buf = buf.slice(nl + 1);
    if (line.event === 'vm_added' && line.pid !== undefined) seen.add(line.pid);
  }
});

const started: number[] = [];
const alive: Guests[] = [];
const samples: { at: number; use: ProcessUse }[] = [];
const t0 = Date.now();
try {
  await sleep(3000); // the daemon's first decision
  let n = 0;
  while (Date.now() - t0 < seconds * 1000) {
    const tick = Date.now();
    const g = await startGuests(1, { commonMiB: 1, uniqueMiB: 1, zeroMiB: 0, changingMiB: 0 }, `soak-${++n}-`);
    started.push(...g.pids);
    alive.push(g);
    if (alive.length > 3) await alive.shift()!.stop();
    if (n % 10 === 0) samples.push({ at: (Date.now() - t0) / 1000, use: processUse(tune.pid!) });
    await sleep(Math.max(0, 1000 - (Date.now() - tick)));
  }
  for (const g of alive.splice(0)) await g.stop();
  await sleep(2500);
} finally {
  for (const g of alive) await g.stop();
  tune.kill('SIGTERM');
}
const missed = started.filter((pid) => !seen.has(pid));
const mib = (b: number) => (b / 1048576).toFixed(1);
const first = samples[0];
const last = samples[samples.length - 1];
process.stdout.write(
  `pagefuse tune soak: ${seconds} s, ${started.length} VMs started (${(started.length / seconds).toFixed(2)} a second; a guest takes a while to start on a loaded machine), ${started.length - missed.length} seen, ${missed.length} missed\n` +
    (first && last
      ? `  tune RSS ${mib(first.use.rssBytes)} MiB at ${first.at.toFixed(0)} s → ${mib(last.use.rssBytes)} MiB at ${last.at.toFixed(0)} s; ` +
        `fds ${first.use.fds} → ${last.use.fds}; max RSS ${mib(Math.max(...samples.map((s) => s.use.rssBytes)))} MiB\n`
      : ''),
);
process.exitCode = missed.length === 0 && last !== undefined && first !== undefined && last.use.fds <= first.use.fds ? 0 : 1;
