// Runs a command while holding the machine-wide KSM test lock (for benches and manual runs that drive ksmd):
//   node --import tsx test/helpers/with-ksm-lock.ts -- node dist/cli/bin.js bench --quick
import { spawnSync } from 'node:child_process';
import { lockKsm } from './lock.js';

const args = process.argv.slice(process.argv.indexOf('--') + 1);
const release = await lockKsm();
try {
  const r = spawnSync(args[0], args.slice(1), { stdio: 'inherit' });
  process.exitCode = r.status ?? 1;
} finally {
  release();
}
