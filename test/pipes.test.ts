// A closed stdout (`pagefuse audit | head -1`) ends every command quietly with 141 (128 + SIGPIPE, as a shell
// reports a command killed by SIGPIPE): no stack trace, no 'write EPIPE'. Runs the built CLI, as installed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO } from './helpers/cli.js';
import { lockKsm } from './helpers/lock.js';
import { startGuests, type Guests } from './helpers/tune-guests.js';

const BIN = join(REPO, 'dist/cli/bin.js');
const DIR = mkdtempSync(join(tmpdir(), 'pagefuse-pipes-'));
const ENV = { PAGEFUSE_TUNER_STATE: join(DIR, 'tuner.json'), PAGEFUSE_TUNE_LOCK: join(DIR, 'tune.lock') };

/** Runs the CLI with a stdout pipe whose reading end is closed before the command writes anything. */
function runIntoClosedPipe(args: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...ENV } });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}

// Two small guests, so that `scan --vms` has VMs to print.
let guests: Guests;
before(async () => {
  guests = await startGuests(2, { commonMiB: 1, uniqueMiB: 1, zeroMiB: 0, changingMiB: 0 }, 'pipes');
});
after(() => guests.stop());

const COMMANDS: string[][] = [
  ['--help'],
  ['status'],
  ['status', '--json'],
  ['numa'],
  ['audit'],
  ['audit', '--json'],
  ['scan', '--vms'],
  ['scan', '--pid', String(process.pid), '--json'],
  ['top', '--interval', '0.2'],
  ['serve', '--listen', '127.0.0.1:0'],
  ['report', '--html', join(DIR, 'report.html'), '--duration', '0.2', '--interval', '0.1'],
  ['tune', '--dry-run', '--once', '--force'],
  ['tune', '--dry-run', '--force', '--interval', '0.2'],
  ['bench', '--help'],
  ['set', '--help'],
  ['start', '--help'],
  ['stop', '--help'],
  ['unmerge', '--help'],
  ['exec', '--help'],
];

for (const args of COMMANDS) {
  test(`pagefuse ${args.join(' ')} into a closed pipe: exit 141, no stack trace`, async () => {
    const release = args[0] === 'tune' ? await lockKsm() : () => undefined;
    try {
      const r = await runIntoClosedPipe(args);
      assert.doesNotMatch(r.stderr, /^\s+at |EPIPE/m);
      assert.deepEqual({ code: r.code, signal: r.signal }, { code: 141, signal: null }, r.stderr);
    } finally {
      release();
    }
  });
}

for (const command of ['scan --vms', 'audit']) {
  test(`pagefuse ${command} | head -1: nothing on stderr but what the command itself says`, () => {
    const r = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${BIN}" ${command} | head -1 >/dev/null; echo "status $?"`], {
      cwd: REPO,
      encoding: 'utf8',
    });
    assert.doesNotMatch(r.stderr, /^\s+at |EPIPE/m);
    assert.match(r.stdout, /^status (0|141)\n$/);
  });
}
