// The one way tests run the CLI, as an install runs it: `node dist/cli/bin.js ARGS…` from the repo root,
// compiled first when any file under src/ is newer (npm test builds it just before the tests). The built
// CLI starts on about a quarter of the CPU tsx needs (0.26 against 0.97 CPU-s here), and the suite starts
// the CLI hundreds of times. options.bin runs another bin.js (an install's); SOURCE_CLI runs src/ through tsx.
//   runCli(args, options)       wait for it: { status, signal, stdout, stderr }
//   runCliAsync(args, options)  the same as a Promise (the test's event loop keeps running)
//   startCli(args, options)     a long-running command (tune, serve…): its stdout lines as they come,
//                               parsed as JSON with json: true, next(pred) to wait for one, signals, exit;
//                               stdin: true gives it a pipe (child.stdin) instead of /dev/null
//   cliArgv(args)               the argv the others run (for a pty, setpriv, or a spawn of your own)
//   CLI                         node's arguments for the CLI: [dist/cli/bin.js]
//   builtBin()                  dist/cli/bin.js, compiled first when src/ is newer
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));
/** node's arguments that run the CLI from source, through tsx. */
export const SOURCE_CLI = ['--import', 'tsx', BIN];

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * The built CLI, as an install runs it (node dist/cli/bin.js), for tests that start it many times
 * (tsx costs about a second a start). Compiled first when any file under src/ is newer than dist/.
 */
export function builtBin(): string {
  const bin = join(REPO, 'dist', 'cli', 'bin.js');
  let stale: boolean;
  try {
    // tsc writes every output on each build: dist/index.js dates the last one.
    stale = newest(join(REPO, 'src')) > statSync(join(REPO, 'dist', 'index.js')).mtimeMs;
  } catch {
    stale = true;
  }
  if (stale) execFileSync(process.execPath, [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: REPO, stdio: 'inherit' });
  return bin;
}

/** node's arguments that run the CLI as the tests do: the built one. */
export const CLI = [builtBin()];

export interface CliResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Added to (not replacing) this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** stdin (default: empty). */
  input?: string;
  uid?: number;
  gid?: number;
  /** Killed with SIGKILL after this long (default 60 s). */
  timeoutMs?: number;
  /** Another bin.js (an install's) instead of the built dist/cli/bin.js; BIN runs src/cli/bin.ts through tsx. */
  bin?: string;
}

/** [node, …args] for `pagefuse ARGS…`. */
export function cliArgv(args: string[], bin?: string): string[] {
  return [process.execPath, ...(bin === undefined ? CLI : bin === BIN ? SOURCE_CLI : [bin]), ...args];
}

function spawnOptions(options: CliOptions) {
  return {
    cwd: REPO,
    env: { ...process.env, ...options.env },
    ...(options.uid === undefined ? {} : { uid: options.uid }),
    ...(options.gid === undefined ? {} : { gid: options.gid }),
  };
}

export function runCli(args: string[], options: CliOptions = {}): CliResult {
  const [node, ...argv] = cliArgv(args, options.bin);
  const r = spawnSync(node, argv, { ...spawnOptions(options), encoding: 'utf8', input: options.input ?? '', timeout: options.timeoutMs ?? 60_000, killSignal: 'SIGKILL' });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

export function runCliAsync(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const [node, ...argv] = cliArgv(args, options.bin);
    const child = spawn(node, argv, { ...spawnOptions(options), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.on('error', () => undefined); // a command that exits without reading its input
    child.stdin.end(options.input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

export type Line = Record<string, unknown>;

export interface StartOptions extends CliOptions {
  /** Parse each stdout line as JSON. */
  json?: boolean;
  /** A pipe for stdin (child.stdin) instead of /dev/null. */
  stdin?: boolean;
}

/** A running command: stdout line by line (JSON objects with json: true, else { text }). */
export class CliProcess {
  readonly child: ChildProcess;
  readonly lines: Line[] = [];
  stderr = '';
  readonly exited: Promise<{ status: number | null; signal: NodeJS.Signals | null }>;
  private waiters: { pred: (l: Line) => boolean; resolve: (l: Line) => void }[] = [];
  private seen = 0;

  constructor(args: string[], options: StartOptions = {}) {
    const [node, ...argv] = cliArgv(args, options.bin);
    this.child = spawn(node, argv, { ...spawnOptions(options), stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let buf = '';
    this.child.stdout!.on('data', (b: Buffer) => {
      buf += b.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const text = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let line: Line;
        try {
          line = options.json ? (JSON.parse(text) as Line) : { text };
        } catch {
          line = { text, notJson: true };
        }
        this.lines.push(line);
        this.waiters = this.waiters.filter((w) => (w.pred(line) ? (w.resolve(line), false) : true));
      }
    });
    this.child.stderr!.on('data', (b: Buffer) => (this.stderr += b.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (status, signal) => resolve({ status, signal })));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The first line from now on (or already seen since the last call) that matches, within ms. */
  next(pred: (l: Line) => boolean, ms: number, what: string): Promise<Line> {
    const earlier = this.lines.slice(this.seen).find(pred);
    this.seen = this.lines.length;
    if (earlier) return Promise.resolve(earlier);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms; lines: ${JSON.stringify(this.lines.slice(-5))} stderr: ${this.stderr}`)), ms);
      this.waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          this.seen = this.lines.length;
          resolve(l);
        },
      });
    });
  }

  kill(signal: NodeJS.Signals): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }
}

export function startCli(args: string[], options: StartOptions = {}): CliProcess {
  return new CliProcess(args, options);
}
