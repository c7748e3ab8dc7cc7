// pagefuse tune — the tuner daemon: decides, logs each decision with its reasons, restores the knobs on exit.
import { appendFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { once } from 'node:events';
import { formatBytes, parse, UsageError } from './common.js';
import { checkCpuBudget, checkPolicy, defaultConfig, loadConfig, POLICIES, type PolicyName, type TuneConfig } from '../tune/config.js';
import { Tuner, type TuneDecision } from '../tune/tuner.js';
import { acquireTuneLock, DEFAULT_LOCK_PATH, findOtherTuners } from '../host/lock.js';
import { publishTuner } from '../report/publish.js';
import { tunerStatePath } from '../report/tuner-state.js';
import { escapeTerminal } from '../report/escape.js';

const HELP = `usage: pagefuse tune [--policy P] [--cpu-budget F] [--config FILE] [--interval S]
                     [--dry-run] [--once] [--json] [--keep-knobs] [--force] [--history FILE]

Drives ksmd like ksmtuned, but scans first and merges second.
  --policy P       ${POLICIES.join(' | ')} (default adaptive, or PAGEFUSE_POLICY in the config)
  --cpu-budget F   CPUs ksmd may use, above 0 and at most the number of CPUs (default 0.25)
  --config FILE    ksmtuned.conf-style KEY=VALUE file (ksmtuned's KSM_* keys and PAGEFUSE_* keys)
  --interval S     seconds between decisions (default: ksmtuned KSM_MONITOR_INTERVAL, else 2)
  --dry-run        decide and log, write nothing
  --once           make one decision, apply it, keep the knobs and exit
  --json           one JSON object per line
  --keep-knobs     on exit leave the knobs as set (default: put back the ones found at start)
  --force          start even while ksmtuned or another pagefuse tune runs
  --history FILE   keep a history of savings and decisions for 'pagefuse report --html --from FILE'
Each decision goes to the state file 'pagefuse top' and 'pagefuse serve' read (PAGEFUSE_TUNER_STATE,
default ${tunerStatePath()}). The overcommit guard logs a 'risk' line when the un-share exposure leaves
less than 10 % of RAM in MemAvailable + SwapFree, and again when it clears.
Signals: SIGUSR1 retunes at once, SIGHUP reloads --config, SIGTERM/SIGINT stop and restore the knobs.
`;

function snake(d: TuneDecision): Record<string, unknown> {
  return {
    event: 'decision',
    time: new Date(d.at).toISOString(),
    policy: d.policy,
    knobs: d.knobs,
    changed: d.changed,
    dry_run: d.dryRun,
    reasons: d.reasons,
    rescan: d.rescan,
    saved_bytes: d.savedBytes,
    estimated_bytes: d.estimatedBytes,
    vms: d.vms,
  };
}

function knobText(k: object): string {
  const parts = Object.entries(k).map(([key, v]) => `${key}=${v}`);
  return parts.length === 0 ? 'no change' : parts.join(' ');
}

export async function run(args: string[]): Promise<number> {
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
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const cpus = availableParallelism();
  let policy: PolicyName | undefined;
  let budget: number | undefined;
  let interval: number | undefined;
  try {
    if (values.policy !== undefined) policy = checkPolicy(values.policy);
    if (values['cpu-budget'] !== undefined) budget = checkCpuBudget(Number(values['cpu-budget']), cpus, '--cpu-budget');
  } catch (err) {
    throw new UsageError(`pagefuse tune: ${(err as Error).message.replace(/^unknown policy/, '--policy: unknown policy')}`);
  }
  if (values.interval !== undefined) {
    interval = Number(values.interval);
    if (values.interval.trim() === '' || !Number.isFinite(interval) || interval <= 0) {
      throw new UsageError(`pagefuse tune: --interval must be a number of seconds above 0, got '${values.interval}'`);
    }
  }
  const configFile = values.config;
  let config: TuneConfig = configFile === undefined ? defaultConfig() : await loadConfig(configFile);
  if (config.cpuBudget !== undefined && budget === undefined) checkCpuBudget(config.cpuBudget, cpus, `${configFile}: PAGEFUSE_CPU_BUDGET`);

  const json = values.json === true;
  const log = (obj: Record<string, unknown>, text: string) => {
    // The text form names VMs from their argv: escaped for the terminal; JSON keeps them exact.
    const line = json ? JSON.stringify(obj) : `${new Date().toISOString()} ${escapeTerminal(text)}`;
    process.stdout.write(`${line}\n`);
    if (config.logFile !== undefined) {
      try {
        appendFileSync(config.logFile, `${line}\n`);
      } catch (err) {
        process.stderr.write(`pagefuse tune: cannot append to LOGFILE ${config.logFile}: ${(err as Error).message}\n`);
      }
    }
  };

  if (!values.force) {
    const others = await findOtherTuners();
    if (others.length > 0) {
      const list = others.map((o) => `${o.what} (pid ${o.pid})`).join(', ');
      throw Object.assign(new Error(`another tuner is running: ${list}; stop it first (systemctl stop ksmtuned), or pass --force`), { code: 'EBUSY' });
    }
  }

  const makeTuner = () =>
    new Tuner({
      config,
      ...(policy === undefined ? {} : { policy }),
      ...(budget === undefined ? {} : { cpuBudget: budget }),
      ...(interval === undefined ? {} : { intervalMs: interval * 1000 }),
      dryRun: values['dry-run'] === true,
      keepKnobs: values['keep-knobs'] === true,
      immediate: true,
    });

  let lastLogged: string | undefined;
  const onDecision = (d: TuneDecision, always = false) => {
    const headline = d.reasons[d.reasons.length - 1] ?? '';
    if (!always && config.debug === undefined && Object.keys(d.changed).length === 0 && headline === lastLogged) return;
    lastLogged = headline;
    log(snake(d), `${d.policy}: ${d.dryRun ? '(dry run) ' : ''}${knobText(d.changed)} — ${d.reasons.join('; ')}`);
  };

  if (values.once) {
    const release = await acquireTuneLock(process.env.PAGEFUSE_TUNE_LOCK ?? DEFAULT_LOCK_PATH, values.force === true);
    try {
      const tuner = makeTuner();
      tuner.on('error', (err) => log({ event: 'error', message: err.message }, `error: ${err.message}`));
      const d = await tuner.tuneOnce();
      if (d !== undefined) onDecision(d, true);
      return d === undefined ? 1 : 0;
    } finally {
      await release();
    }
  }

  const release = await acquireTuneLock(process.env.PAGEFUSE_TUNE_LOCK ?? DEFAULT_LOCK_PATH, values.force === true);
  const tuner = makeTuner();
  let stopPublishing = (): void => undefined;
  // Listen before starting, so a stop signal during start-up still restores the knobs.
  const stopSignal = Promise.race([once(process, 'SIGTERM').then(() => 'SIGTERM'), once(process, 'SIGINT').then(() => 'SIGINT')]);
  try {
    tuner.on('decision', (d) => onDecision(d));
    tuner.on('error', (err) => log({ event: 'error', message: err.message }, `error: ${err.message}`));
    tuner.on('risk', (r) =>
      log(
        { event: 'risk', at_risk: r.atRisk, exposure_bytes: r.exposureBytes, available_bytes: r.availableBytes, margin_bytes: r.marginBytes, threshold_bytes: r.thresholdBytes },
        r.atRisk
          ? `overcommit risk: ${formatBytes(r.exposureBytes)} would come back if every merged page were written, leaving ${formatBytes(r.marginBytes)} of MemAvailable + SwapFree (threshold ${formatBytes(r.thresholdBytes)}); add swap or admit fewer VMs`
          : `overcommit risk cleared: margin ${formatBytes(r.marginBytes)}`,
      ),
    );
    tuner.on('vms', ({ added, removed }) => {
      for (const vm of added) log({ event: 'vm_added', pid: vm.pid, vmm: vm.vmm, name: vm.name, rss_bytes: vm.rssBytes }, `VM ${vm.name} (${vm.vmm}, pid ${vm.pid}) appeared`);
      for (const pid of removed) log({ event: 'vm_removed', pid }, `VM pid ${pid} exited`);
    });
    await tuner.start();
    const unpublish = publishTuner(tuner, values.history === undefined ? {} : { historyPath: values.history }, (err) =>
      log({ event: 'error', message: `publishing the decision: ${err.message}` }, `error: publishing the decision: ${err.message}`),
    );
    stopPublishing = unpublish;
    log(
      { event: 'start', pid: process.pid, policy: tuner.policy, cpu_budget: tuner.cpuBudget, interval_ms: tuner.intervalMs, dry_run: tuner.dryRun, found_knobs: tuner.foundKnobs },
      `pagefuse tune started (pid ${process.pid}): policy ${tuner.policy}, cpu budget ${tuner.cpuBudget}, decisions every ${tuner.intervalMs / 1000} s; knobs found: ${knobText(tuner.foundKnobs ?? {})}`,
    );

    const onUsr1 = () => {
      log({ event: 'signal', signal: 'SIGUSR1' }, 'SIGUSR1: retuning now');
      void tuner.retune().then((d) => d !== undefined && onDecision(d, true));
    };
    const onHup = () => {
      const reload = configFile === undefined ? Promise.resolve(defaultConfig()) : loadConfig(configFile);
      reload
        .then((next) => {
          tuner.reconfigure(next);
          config = next;
          log({ event: 'reload', config: configFile ?? null }, `SIGHUP: config ${configFile ?? '(defaults)'} reloaded`);
        })
        .catch((err: Error) =>
          log({ event: 'error', message: `reload failed, keeping the old config: ${err.message}` }, `SIGHUP: reload failed, keeping the old config: ${err.message}`),
        );
    };
    process.on('SIGUSR1', onUsr1);
    process.on('SIGHUP', onHup);
    const signal = await stopSignal;
    process.off('SIGUSR1', onUsr1);
    process.off('SIGHUP', onHup);
    await tuner.stop();
    const restored = tuner.keepKnobs || tuner.dryRun ? 'knobs left as they are' : `knobs restored: ${knobText(tuner.foundKnobs ?? {})}`;
    log({ event: 'stop', signal, restored: !(tuner.keepKnobs || tuner.dryRun), found_knobs: tuner.foundKnobs }, `${signal}: stopped; ${restored}`);
    return 0;
  } finally {
    stopPublishing();
    await tuner.stop().catch(() => undefined);
    await release();
  }
}
