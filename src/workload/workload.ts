// Generated multi-process workloads with known duplicate structure, for tests, benches and the
// tuner: each child holds a common "guest image" shared by all, zero pages, pages of its own, and
// pages it rewrites at a chosen rate. Children are stopped with stop(), and die with their parent.
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PAGE_SIZE } from '../region.js';
import { PagefuseError, invalidNumber } from '../errors.js';
import { mix } from './content.js';
import { achievablePages, layoutPages, type GuestLayout } from './layout.js';

export interface WorkloadSpec {
  /** Number of child processes. */
  processes: number;
  /** Pages of the common image, identical in every child (distinct from each other). */
  imagePages: number;
  /** Zero-filled pages per child, written so they are resident. */
  zeroPages?: number;
  /** Pages per child with content of its own. */
  uniquePages?: number;
  /** Further images shared by every child, each distinct from the others by its seed (layers of a guest: OS, version, application). */
  layers?: { seed: number; pages: number }[];
  /** Pages per child rewritten every rewriteIntervalMs (0: written once). */
  volatilePages?: number;
  rewriteIntervalMs?: number;
  /** Seed of the image and of each child's own pages (different seeds: different images). */
  seed?: number;
  /** MADV_MERGEABLE on the memory. Default true. */
  mergeable?: boolean;
  /** Transparent huge pages for the memory. Default 'never' (keeps KSM's counts exact). */
  hugepages?: 'default' | 'never' | 'always';
  /** How long to wait for the children to be ready. Default 30 s. */
  timeoutMs?: number;
  /**
   * A memory cgroup directory (v1 or v2) each child joins (writes its pid to cgroup.procs) before it
   * allocates, so the cgroup is charged for the workload's memory (root).
   */
  cgroup?: string;
  /**
   * Start each child as a VM monitor is seen: through a `qemu-system-x86_64` symlink to node, with
   * `-name guest=<namePrefix><i>` (i from 1) and `-m <MiB>` on its command line, so VM discovery, the
   * tuner and the daemon find it. Default: plain node children (found only when registered).
   */
  asQemu?: { namePrefix: string };
}

/** @internal The spec each child gets: its layout, and how to run it. */
export interface ChildSpec extends GuestLayout {
  rewriteIntervalMs: number;
  mergeable: boolean;
  hugepages: 'default' | 'never' | 'always';
  cgroup?: string;
}

/** @internal The child's first message. */
export interface ChildReady {
  type: 'ready';
  pid: number;
  pages: number;
}

/** What an exact scan of all children (mergeable memory only) must find, and what ksmd can merge. */
export interface WorkloadExpectation {
  pages: number;
  zeroPages: number;
  /** Pages that change between scans (and that ksmd will not keep merged). */
  volatilePages: number;
  /** Distinct non-zero stable contents: the image once, every child's own pages. */
  uniquePages: number;
  /** Stable non-zero pages beyond the first copy of each content: (processes − 1) × imagePages. */
  duplicatePages: number;
  /** Pages of contents present twice or more (what Σ ksm_merging_pages reaches, zero pages aside). */
  mergingPages: number;
  /** Pages KSM saves once every stable page has merged, use_zero_pages=0: duplicates plus all zero pages but one. */
  achievablePages: number;
}

export interface WorkloadChild {
  pid: number;
  pages: number;
}

function childEntry(): { path: string; execArgv: string[] } {
  const js = fileURLToPath(new URL('./child.js', import.meta.url));
  if (existsSync(js)) return { path: js, execArgv: [] };
  // Running from the TypeScript sources (tests, benches through tsx).
  return { path: fileURLToPath(new URL('./child.ts', import.meta.url)), execArgv: ['--import', 'tsx'] };
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Children also exit when the IPC channel closes; this covers a parent that exits normally first.
  process.on('exit', () => {
    for (const c of live) c.kill('SIGKILL');
  });
}

export class Workload {
  readonly children: readonly WorkloadChild[];
  readonly expected: WorkloadExpectation;
  private readonly procs: ChildProcess[];
  private readonly cleanup: () => void;
  private stopped = false;

  private constructor(procs: ChildProcess[], children: WorkloadChild[], expected: WorkloadExpectation, cleanup: () => void) {
    this.procs = procs;
    this.children = children;
    this.expected = expected;
    this.cleanup = cleanup;
  }

  get pids(): number[] {
    return this.children.map((c) => c.pid);
  }

  static async start(spec: WorkloadSpec): Promise<Workload> {
    const n = spec.processes;
    if (!Number.isInteger(n) || n < 1 || n > 256) throw invalidNumber(`Workload: processes must be 1 to 256`, n);
    const layers = (spec.layers ?? []).map((l) => ({ seed: l.seed, pages: l.pages }));
    for (const l of layers) {
      if (!Number.isInteger(l.seed) || !Number.isInteger(l.pages) || l.pages < 0) throw new RangeError(`Workload: a layer needs whole numbers seed and pages ≥ 0, got ${JSON.stringify(l)}`);
    }
    const child: ChildSpec = {
      imagePages: spec.imagePages,
      layers,
      zeroPages: spec.zeroPages ?? 0,
      uniquePages: spec.uniquePages ?? 0,
      volatilePages: spec.volatilePages ?? 0,
      rewriteIntervalMs: spec.rewriteIntervalMs ?? 0,
      imageSeed: spec.seed ?? 1,
      seed: 0,
      mergeable: spec.mergeable ?? true,
      hugepages: spec.hugepages ?? 'never',
      ...(spec.cgroup === undefined ? {} : { cgroup: spec.cgroup }),
    };
    for (const [k, v] of Object.entries(child)) {
      if (typeof v === 'number' && (!Number.isInteger(v) || v < 0)) throw invalidNumber(`Workload: ${k} must be a whole number ≥ 0`, v);
    }
    installExitHook();
    const entry = childEntry();
    const procs: ChildProcess[] = [];
    const ready: Promise<ChildReady>[] = [];
    // A directory holding the qemu-system-x86_64 symlink, removed by stop() (or here on failure).
    const qemuDir = spec.asQemu === undefined ? undefined : mkdtempSync(join(tmpdir(), 'pagefuse-guests-'));
    const execPath = qemuDir === undefined ? process.execPath : join(qemuDir, 'qemu-system-x86_64');
    if (qemuDir !== undefined) symlinkSync(process.execPath, execPath);
    const removeQemuDir = (): void => {
      if (qemuDir !== undefined) rmSync(qemuDir, { recursive: true, force: true });
    };
    for (let i = 0; i < n; i++) {
      const mine: ChildSpec = { ...child, seed: mix(spec.seed ?? 1, i + 1) };
      const vmArgs =
        spec.asQemu === undefined ? [] : ['-name', `guest=${spec.asQemu.namePrefix}${i + 1}`, '-m', String(Math.ceil((layoutPages(mine) * PAGE_SIZE) / 2 ** 20))];
      const cp = fork(entry.path, [JSON.stringify(mine), ...vmArgs], { execPath, execArgv: entry.execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
      live.add(cp);
      cp.once('exit', () => live.delete(cp));
      procs.push(cp);
      ready.push(
        new Promise<ChildReady>((resolve, reject) => {
          cp.once('message', (m) => resolve(m as ChildReady));
          cp.once('error', reject);
          cp.once('exit', (code, signal) => reject(new PagefuseError('ECHILD', `Workload: child ${i} exited early (${signal ?? code})`)));
        }),
      );
    }
    const timeoutMs = spec.timeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const reports = await Promise.race([
        Promise.all(ready),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new PagefuseError('ETIMEDOUT', `Workload: children not ready after ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      const I = child.imagePages + layers.reduce((a, l) => a + l.pages, 0);
      const expected: WorkloadExpectation = {
        pages: n * (I + child.zeroPages + child.uniquePages + child.volatilePages),
        zeroPages: n * child.zeroPages,
        volatilePages: n * child.volatilePages,
        uniquePages: I + n * child.uniquePages,
        duplicatePages: (n - 1) * I,
        mergingPages: n > 1 ? n * I : 0,
        achievablePages: achievablePages(child, n),
      };
      return new Workload(procs, reports.map((r) => ({ pid: r.pid, pages: r.pages })), expected, removeQemuDir);
    } catch (err) {
      for (const cp of procs) cp.kill('SIGKILL');
      removeQemuDir();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops every child and waits until they have exited. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(
      this.procs.map(
        (cp) =>
          new Promise<void>((resolve) => {
            if (cp.exitCode !== null || cp.signalCode !== null) return resolve();
            cp.once('exit', () => resolve());
            cp.kill('SIGKILL');
          }),
      ),
    );
    this.cleanup();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

