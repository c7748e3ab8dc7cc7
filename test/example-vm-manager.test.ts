// examples/vm-manager runs as the README shows it: three VMs launched merged, the Tuner run until
// merging converges, per-VM savings served on loopback, and the knobs put back when it is stopped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { withKsm } from './helpers/ksm.js';

const EXAMPLE = new URL('../examples/vm-manager/vm-manager.ts', import.meta.url).pathname;
// The image must save more than the adaptive policy's 64 MiB minimum, or ksmd rightly stays stopped.
const IMAGE_MIB = 48;
const OWN_MIB = 4;

test('examples/vm-manager as the README runs it', async (t) => {
  await withKsm(t, async (ksm) => {
    const before = (await ksm.read()).settings;
    const stateDir = mkdtempSync(join(tmpdir(), 'pf-vm-manager-'));
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', EXAMPLE, '--vms', '3', '--image-mib', String(IMAGE_MIB), '--own-mib', String(OWN_MIB), '--timeout-s', '50'],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PAGEFUSE_STATE_DIR: stateDir } },
    );
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const lines: string[] = [];
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no 'listening' line within 55 s; output: ${lines.join(' | ')} ${stderr}`)), 55_000);
        createInterface({ input: child.stdout! }).on('line', (line) => {
          lines.push(line);
          const m = /^listening (http:\/\/127\.0\.0\.1:\d+\/vms)$/.exec(line);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]);
          }
        });
        void exited.then((code) => reject(new Error(`exited with ${code} before listening: ${stderr}`)));
      });
      await t.test('it prints that merging converged', () => {
        assert.ok(lines.some((l) => /^converged: merging flattened/.test(l)), lines.join('\n'));
      });
      await t.test('it prints each VM by name once its pages merged', () => {
        assert.deepEqual(lines.filter((l) => / pages merged$/.test(l)).map((l) => l.split(':')[0]).sort(), ['vm-1', 'vm-2', 'vm-3']);
      });
      const vms = (await (await fetch(url)).json()) as { name: string; pid: number; merging_pages: number }[];
      await t.test('GET /vms lists the three VMs by name', () => {
        assert.deepEqual(vms.map((v) => v.name).sort(), ['vm-1', 'vm-2', 'vm-3']);
      });
      await t.test("GET /vms gives each VM's merged pages: its whole image and its zero pages", () => {
        // Every page of the common image is merged in each VM, and so are its zero pages (use_zero_pages=0).
        const floor = ((IMAGE_MIB + OWN_MIB) * 1024 * 1024) / 4096;
        for (const v of vms) assert.ok(v.merging_pages >= floor, `${v.name}: ${v.merging_pages} merged pages, expected at least ${floor}`);
      });
      await t.test('SIGTERM ends it with exit 0 and every knob the Tuner found put back', async () => {
        child.kill('SIGTERM');
        assert.equal(await exited, 0, stderr);
        assert.deepEqual((await ksm.read()).settings, before, 'the Tuner put back every knob it found');
      });
    } finally {
      child.kill('SIGKILL');
      await exited;
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
