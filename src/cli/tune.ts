// pagefuse tune — the tuner daemon: decides, logs each decision with its reasons, restores the knobs on exit.
import { availableParallelism } from 'node:os';
import { batchUnlessChosen } from '../host/scheduling.js';
import { appendRegularFileSync } from '../host/regular-file.js';
import { boundMemory, decimalNumber, durationFlag, formatBytes, parse, UsageError, type CliContext } from './common.js';
import { checkCpuBudget, checkPolicy, defaultConfig, loadConfig, POLICIES, type PolicyName, type TuneConfig } from '../tune/config.js';
import { Tuner, type TuneDecision } from '../tune/tuner.js';
import { findOtherTuners, tuneLockPath } from '../host/lock.js';
import { DEFAULT_KSM_SYSFS, liveRecords, recoverKnobs, recordDir, type RecoveredKnobs } from '../ksm/snapshot.js';
import { publishTuner } from '../report/publish.js';
import { tunerStatePath } from '../report/tuner-state.js';
import { escapeTerminal } from '../report/escape.js';
import { Ksm, ksmOptionsFromEnv } from '../ksm/ksm.js';

const HELP = `usage: pagefuse tune [--policy P] [--cpu-budget F] [--config FILE] [--interval S]
                     [--dry-run] [--once] [--json] [--keep-knobs] [--force] [--history FILE]
       pagefuse tune --restore [--json]

Drives ksmd like ksmtuned, but scans first and merges second.
  --policy P       ${POLICIES.join(' | ')} (default adaptive, or PAGEFUSE_POLICY in the config)
  --cpu-budget F   CPUs ksmd may use, above 0 and at most the number of CPUs (default 0.25)
  --config FILE    ksmtuned.conf-style KEY=VALUE file (ksmtuned's KSM_* keys and PAGEFUSE_* keys)
  --interval S     time between decisions: seconds, or 500ms, 2m… (default: ksmtuned KSM_MONITOR_INTERVAL, else 2s)
  --dry-run        decide and log each change as old → new, write no knob and take no lock (needs no
                   root); its decisions go beside the tuner state, never over it
  --once           make one decision, apply it, keep the knobs and exit (nothing paces ksmd
                   after it: where it left ksmd running, it says so on stderr)
  --json           one JSON object per line
  --keep-knobs     on exit leave the knobs as set (default: put back the ones found at start)
  --force          start even while ksmtuned or another pagefuse tune runs
  --history FILE   keep a history of savings and decisions for 'pagefuse report --html --from FILE'
                   (the daemon; not with --once)
  --restore        put back the knobs a tuner (or set --unmerge-first, or the bench) that died had
                   found, from its record in PAGEFUSE_STATE_DIR (default /run/pagefuse), and exit;
                   the systemd unit runs it as ExecStopPost
Each decision goes to the state file 'pagefuse top' and 'pagefuse serve' read (PAGEFUSE_TUNER_STATE,
default ${tunerStatePath()}). The overcommit guard logs a 'risk' line when the un-share exposure leaves
less than 10 % of RAM in MemAvailable + SwapFree, and again when it clears.
Signals: SIGUSR1 retunes at once, SIGHUP reloads --config (both wait for a start under way),
SIGTERM/SIGINT stop and restore the knobs, at any moment. One tuner per host: the lock (PAGEFUSE_TUNE_LOCK, default
/run/pagefuse/tune.lock) is flock(2)ed while it runs. Before its first write the tuner records the
knobs it found; a start after a crash (SIGKILL, OOM kill) puts those back first and says so.
`;

/** How long an error the tuner keeps meeting goes unrepeated in the log. */
const ERROR_REPEAT_MS = 60_000;

function snake(d: TuneDecision): Record<string, unknown> {
  return {
    event: 'decision',
    time: new Date(d.at).toISOString(),
    policy: d.policy,
    knobs: d.knobs,
    changed: d.changed,
    previous: d.previous,
    dry_run: d.dryRun,
    reasons: d.reasons,
    rescan: d.rescan,
    // What KSM gives back to the tuner's VMs (docs/savings.md), its parts in pages, and the host's figure.
    saved_bytes: d.savedBytes,
    saved_pages: { ksm_pages: d.saved.ksmPages, ksm_zero_pages: d.saved.ksmZeroPages, thp_split_zero_pages: d.savedThpSplitKnown ? d.saved.thpSplitZeroPages : null },
    saved_upper_bound: d.savedUpperBound,
    host_saved_bytes: d.hostSavedBytes,
    estimated_bytes: d.estimatedBytes,
    thp_slow_split_pages: d.thpSlowSplitPages,
    thp_slow_split_zero_bytes: d.thpSlowSplitZeroBytes,
    vms: d.vms,
  };
}

/** Each change as old → new: 'pages_to_scan 100 → 2000, run 0 → 1'. */
function changeText(d: TuneDecision): string {
  const parts = Object.entries(d.changed).map(([key, v]) => `${key} ${String((d.previous as Record<string, unknown>)[key] ?? '?')} → ${v}`);
  return parts.length === 0 ? 'no change' : parts.join(', ');
}

function knobText(k: object): string {
  const parts = Object.entries(k).map(([key, v]) => `${key}=${v}`);
  return parts.length === 0 ? 'no change' : parts.join(' ');
}

/**
 * The daemon's signals, from the first line of the command to its end: SIGTERM/SIGINT end the run
 * (a start under way finishes first, then the knobs go back), SIGUSR1 retunes and SIGHUP reloads, both
 * queued until the tuner runs.
 */
class TuneSignals {
  private stopSignal: NodeJS.Signals | undefined;
  private wake: (signal: NodeJS.Signals) => void = () => undefined;
  private readonly stopped = new Promise<NodeJS.Signals>((resolve) => (this.wake = resolve));
  private actions: { retune(): void; reload(): void } | undefined;
  private retuneQueued = false;
  private reloadQueued = false;
  private readonly onStop = (signal: NodeJS.Signals) => {
    if (this.stopSignal !== undefined) return;
    this.stopSignal = signal;
    this.actions = undefined;
    this.wake(signal);
  };
  private readonly onUsr1 = () => {
    if (this.actions !== undefined) this.actions.retune();
    else this.retuneQueued = true;
  };
  private readonly onHup = () => {
    if (this.actions !== undefined) this.actions.reload();
    else this.reloadQueued = true;
  };

  /** Listens from now on; the SIGUSR1s and SIGHUPs that came before (while the CLI loaded) are queued. */
  install(earlyUsr1 = 0, earlyHup = 0): void {
    process.on('SIGTERM', this.onStop);
    process.on('SIGINT', this.onStop);
    process.on('SIGUSR1', this.onUsr1);
    process.on('SIGHUP', this.onHup);
    if (earlyUsr1 > 0) this.retuneQueued = true;
    if (earlyHup > 0) this.reloadQueued = true;
  }

  uninstall(): void {
    process.off('SIGTERM', this.onStop);
    process.off('SIGINT', this.onStop);
    process.off('SIGUSR1', this.onUsr1);
    process.off('SIGHUP', this.onHup);
  }

  /** The stop signal received so far, if any. */
  get stopping(): NodeJS.Signals | undefined {
    return this.stopSignal;
  }

  /** The tuner runs: play what was queued, then resolve with the signal that stops it. */
  running(actions: { retune(): void; reload(): void }): Promise<NodeJS.Signals> {
    if (this.stopSignal === undefined) {
      this.actions = actions;
      if (this.reloadQueued) actions.reload();
      if (this.retuneQueued) actions.retune();
      this.reloadQueued = this.retuneQueued = false;
    }
    return this.stopped;
  }
}

export async function run(args: string[], context?: CliContext): Promise<number> {
  batchUnlessChosen(); // none of its threads preempts ksmd, nor a VM, when it wakes (host/scheduling.ts)
  boundMemory();
  const signals = new TuneSignals();
  signals.install(context?.takeEarlyUsr1() ?? 0, context?.takeEarlyHup?.() ?? 0);
  try {
    return await runTune(args, signals);
  } finally {
    signals.uninstall();
  }
}

async function runTune(args: string[], signals: TuneSignals): Promise<number> {
  const { values } = parse('tune', args, {
    options: {
      policy: { type: 'string' },
      'cpu-budget': { type: 'string' },
      config: { type: 'string' },
      interval: { type: 'string' },
      'dry-run': { type: 'boolean' },
      once: { type: 'boolean' },
      json: { type: 'boolean' },
      'keep-knobs': { type: 'boolean' },
      history: { type: 'string' },
      force: { type: 'boolean' },
      restore: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.restore) {
    // It only puts back what a dead tuner recorded: any other flag (--dry-run above all) would be ignored.
    const others = Object.keys(values).filter((k) => k !== 'restore' && k !== 'json');
    if (others.length > 0) throw new UsageError(`pagefuse tune: --restore takes only --json, got --${others[0]}`);
    return restore(values.json === true);
  }
  const cpus = availableParallelism();
  let policy: PolicyName | undefined;
  let budget: number | undefined;
  let interval: number | undefined;
  const rawBudget = values['cpu-budget'];
  if (rawBudget !== undefined && Number.isNaN(decimalNumber(rawBudget))) {
    throw new UsageError(`pagefuse tune: --cpu-budget must be a number above 0 and at most the number of CPUs (${cpus}), got '${rawBudget}'`);
  }
  try {
    if (values.policy !== undefined) policy = checkPolicy(values.policy);
    if (rawBudget !== undefined) budget = checkCpuBudget(decimalNumber(rawBudget), cpus, '--cpu-budget');
  } catch (err) {
    throw new UsageError(`pagefuse tune: ${(err as Error).message.replace(/^unknown policy/, '--policy: unknown policy')}`);
  }
  interval = durationFlag('tune', 'interval', values.interval, { min: 0.05, max: 86_400 });
  const configFile = values.config;
  let config: TuneConfig = configFile === undefined ? defaultConfig() : await loadConfig(configFile);
  if (config.cpuBudget !== undefined && budget === undefined) checkCpuBudget(config.cpuBudget, cpus, `${configFile}: PAGEFUSE_CPU_BUDGET`);

  const json = values.json === true;
  const dryRun = values['dry-run'] === true;
  const log = (obj: Record<string, unknown>, text: string) => {
    // The text form names VMs from their argv: escaped for the terminal; JSON keeps them exact.
    const line = json ? JSON.stringify(obj) : `${new Date().toISOString()} ${escapeTerminal(text)}`;
    process.stdout.write(`${line}\n`);
    if (config.logFile !== undefined) {
      try {
        appendRegularFileSync(config.logFile, `${line}\n`, 'LOGFILE');
      } catch (err) {
        process.stderr.write(`pagefuse tune: ${(err as Error).message}\n`);
      }
    }
  };

  // The tuner's own errors recur at every interval while their cause lasts (a VM a dry run as another
  // user cannot read, a state directory it cannot write): each distinct one is logged once a minute,
  // with how often it came back meanwhile.
  const errorsSeen = new Map<string, { at: number; repeats: number }>();
  const logError = (message: string) => {
    const now = Date.now();
    const seen = errorsSeen.get(message);
    if (seen !== undefined && now - seen.at < ERROR_REPEAT_MS) {
      seen.repeats++;
      return;
    }
    if (errorsSeen.size >= 256) for (const [m, e] of errorsSeen) if (now - e.at >= ERROR_REPEAT_MS) errorsSeen.delete(m);
    errorsSeen.set(message, { at: now, repeats: 0 });
    const repeats = seen?.repeats ?? 0;
    log(
      { event: 'error', message, ...(repeats > 0 ? { repeated: repeats } : {}) },
      `error: ${message}${repeats > 0 ? ` (${repeats} more time${repeats === 1 ? '' : 's'} since it was last logged)` : ''}`,
    );
  };

  if (!values.force) {
    // ksmtuned by its process or pid file; another pagefuse tuner by the lock the Tuner takes.
    const others = (await findOtherTuners()).filter((o) => o.kind === 'ksmtuned');
    if (others.length > 0) {
      const list = others.map((o) => `${o.what} (pid ${o.pid})`).join(', ');
      throw Object.assign(new Error(`another tuner is running: ${list}; stop it first (systemctl stop ksmtuned), or pass --force`), { code: 'EBUSY' });
    }
  }

  // PAGEFUSE_KSM_SYSFS / PAGEFUSE_PROC point at fixture trees (tests, chroots), as for status and set.
  const roots = ksmOptionsFromEnv();
  const makeTuner = () =>
    new Tuner({
      ...(roots.sysfsRoot === undefined && roots.procRoot === undefined ? {} : { ksm: new Ksm(roots) }),
      ...(roots.procRoot === undefined ? {} : { procRoot: roots.procRoot }),
      config,
      ...(policy === undefined ? {} : { policy }),
      ...(budget === undefined ? {} : { cpuBudget: budget }),
      ...(interval === undefined ? {} : { intervalMs: interval * 1000 }),
      dryRun,
      keepKnobs: values['keep-knobs'] === true,
      immediate: true,
      // This command handles SIGINT/SIGTERM itself (below), to log and exit 0 once the knobs are back.
      handleSignals: false,
      // A dry run writes no knob, so it takes no lock: it runs beside the daemon, and without root.
      lock: dryRun ? false : { path: tuneLockPath(), force: values.force === true },
    });

  // A decision is logged when it writes something, or when what it would write or why differs from the
  // last one logged: a dry run, which writes nothing, would otherwise repeat itself at every interval.
  let lastLogged: string | undefined;
  const onDecision = (d: TuneDecision, always = false) => {
    const headline = d.reasons[d.reasons.length - 1] ?? '';
    const signature = `${JSON.stringify(d.changed)}\0${headline}`;
    const wrote = !d.dryRun && Object.keys(d.changed).length > 0;
    if (!always && config.debug === undefined && !wrote && signature === lastLogged) return;
    lastLogged = signature;
    log(snake(d), `${d.policy}: ${d.dryRun ? '(dry run, nothing written) ' : ''}${changeText(d)} — ${d.reasons.join('; ')}`);
  };

  const logRecovered = (recovered: RecoveredKnobs[]) => {
    for (const r of recovered) {
      log(
        { event: 'recovered', owner: r.owner, pid: r.pid, restored: Object.fromEntries(r.written) },
        `put back the knobs a ${r.owner} that died (pid ${r.pid}) had found: ${knobText(Object.fromEntries(r.written))}`,
      );
    }
  };

  if (values.once) {
    // The history is kept by the daemon, sample by sample: one decision would write none, and say nothing of it.
    if (values.history !== undefined) throw new UsageError('pagefuse tune: --history is kept by the daemon; --once makes one decision and keeps none');
    const tuner = makeTuner();
    tuner.on('error', (err) => logError(err.message));
    const d = await tuner.tuneOnce();
    logRecovered(tuner.recovered);
    if (d !== undefined) onDecision(d, true);
    if (d !== undefined && !d.dryRun && !json) await leftRunning();
    return d === undefined ? 1 : 0;
  }

  if (signals.stopping !== undefined) {
    log({ event: 'stop', signal: signals.stopping, restored: false }, `${signals.stopping}: stopped before starting; nothing changed`);
    return 0;
  }
  const tuner = makeTuner();
  let stopPublishing = (): void => undefined;
  try {
    tuner.on('decision', (d) => onDecision(d));
    tuner.on('error', (err) => logError(err.message));
    tuner.on('risk', (r) =>
      log(
        { event: 'risk', at_risk: r.atRisk, exposure_bytes: r.exposureBytes, available_bytes: r.availableBytes, margin_bytes: r.marginBytes, threshold_bytes: r.thresholdBytes },
        r.atRisk
          ? `overcommit risk: ${formatBytes(r.exposureBytes)} would come back if every merged page were written, leaving ${formatBytes(r.marginBytes)} of MemAvailable + SwapFree (threshold ${formatBytes(r.thresholdBytes)}); add swap or admit fewer VMs`
          : `overcommit risk cleared: margin ${formatBytes(r.marginBytes)}`,
      ),
    );
    const vmNames = new Map<number, string>();
    tuner.on('vms', ({ added, removed }) => {
      for (const vm of added) {
        vmNames.set(vm.pid, vm.name);
        log({ event: 'vm_added', pid: vm.pid, vmm: vm.vmm, name: vm.name, rss_bytes: vm.rssBytes }, `VM ${vm.name} (${vm.vmm}, pid ${vm.pid}, ${formatBytes(vm.rssBytes)} resident) appeared`);
      }
      for (const pid of removed) {
        const name = vmNames.get(pid);
        vmNames.delete(pid);
        log({ event: 'vm_removed', pid, name: name ?? null }, `VM ${name === undefined ? '' : `${name} `}(pid ${pid}) exited`);
      }
    });
    await tuner.start();
    const unpublish = publishTuner(tuner, values.history === undefined ? {} : { historyPath: values.history }, (err) => logError(`publishing the decision: ${err.message}`));
    stopPublishing = unpublish;
    logRecovered(tuner.recovered);
    log(
      { event: 'start', pid: process.pid, policy: tuner.policy, cpu_budget: tuner.cpuBudget, interval_ms: tuner.intervalMs, dry_run: tuner.dryRun, found_knobs: tuner.foundKnobs },
      `pagefuse tune started (pid ${process.pid}): policy ${tuner.policy}, cpu budget ${tuner.cpuBudget}, decisions every ${tuner.intervalMs / 1000} s; knobs found: ${knobText(tuner.foundKnobs ?? {})}`,
    );

    const signal = await signals.running({
      retune: () => {
        log({ event: 'signal', signal: 'SIGUSR1' }, 'SIGUSR1: retuning now');
        void tuner.retune().then((d) => d !== undefined && onDecision(d, true));
      },
      reload: () => {
        const next = configFile === undefined ? Promise.resolve(defaultConfig()) : loadConfig(configFile);
        next
          .then((loaded) => {
            tuner.reconfigure(loaded);
            config = loaded;
            log({ event: 'reload', config: configFile ?? null }, `SIGHUP: config ${configFile ?? '(defaults)'} reloaded`);
          })
          .catch((err: Error) =>
            log({ event: 'error', message: `reload failed, keeping the old config: ${err.message}` }, `SIGHUP: reload failed, keeping the old config: ${err.message}`),
          );
      },
    });
    await tuner.stop();
    const restored = tuner.keepKnobs || tuner.dryRun ? 'knobs left as they are' : `knobs restored: ${knobText(tuner.foundKnobs ?? {})}`;
    log({ event: 'stop', signal, restored: !(tuner.keepKnobs || tuner.dryRun), found_knobs: tuner.foundKnobs }, `${signal}: stopped; ${restored}`);
    return 0;
  } finally {
    stopPublishing();
    await tuner.stop().catch(() => undefined);
  }
}

/**
 * pagefuse tune --restore: puts back what dead writers recorded for the KSM directory this host's tuner drives
 * (PAGEFUSE_KSM_SYSFS, default /sys/kernel/mm/ksm); a live tuner's record is left alone.
 */
function restore(json: boolean): number {
  const dir = recordDir();
  const root = ksmOptionsFromEnv().sysfsRoot ?? DEFAULT_KSM_SYSFS;
  const recovered = recoverKnobs({ dir, sysfsRoot: root });
  const print = (obj: Record<string, unknown>, text: string) => process.stdout.write(`${json ? JSON.stringify(obj) : text}\n`);
  for (const r of recovered) {
    print(
      { event: 'recovered', owner: r.owner, pid: r.pid, restored: Object.fromEntries(r.written) },
      `put back the knobs a ${r.owner} that died (pid ${r.pid}) had found: ${knobText(Object.fromEntries(r.written))}`,
    );
  }
  const live = liveRecords(dir);
  for (const r of live) {
    print({ event: 'live', owner: r.owner, pid: r.pid }, `left alone: a running ${r.owner} (pid ${r.pid}) holds its knobs and puts them back itself`);
  }
  if (recovered.length === 0 && live.length === 0) print({ event: 'nothing' }, `nothing to put back (no usable record of ${root} in ${dir})`);
  return 0;
}

/**
 * After `--once`: where the decision left ksmd running, says so on stderr. Nothing paces it from here, so the
 * pace chosen for the budget's first interval (at budget 1, a whole CPU) holds until someone changes it.
 */
async function leftRunning(): Promise<void> {
  const ksm = new Ksm(ksmOptionsFromEnv()); // the knobs the Tuner wrote, where it wrote them
  const [run, pages, sleep] = await Promise.all(['run', 'pages_to_scan', 'sleep_millisecs'].map((k) => ksm.get(k).catch(() => undefined)));
  if (run !== 1) return;
  process.stderr.write(
    `pagefuse tune: --once left ksmd running at ${String(pages)} pages / ${String(sleep)} ms, and nothing paces it from here: 'pagefuse stop' stops it, 'pagefuse tune' keeps it within its budget\n`,
  );
}
