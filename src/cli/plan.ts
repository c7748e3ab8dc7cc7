// pagefuse plan — read the fleet's keyed sketches and plan migrations that raise KSM's savings, or
// answer kube-scheduler's prioritize calls as a scheduler extender.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { durationFlag, parse, UsageError, intFlag, printJson, formatBytes, readFlagFile, readSecretFlagFile } from './common.js';
import { listen, parseListen, untilStopped } from './serve.js';
import { checkTlsFiles } from './serve-fleet.js';
import { readFleetKey } from '../fleet/key.js';
import { readTargets, fetchSketches, type FetchOptions, type HostFailure } from '../fleet/fetch.js';
import { planMigrations } from '../fleet/plan.js';
import { virshCommands, kubevirtManifests, parseKubevirtVersion } from '../fleet/commands.js';
import { FleetModel } from '../fleet/model.js';
import { prioritize, checkExtenderArgs } from '../fleet/extender.js';
import type { HostSketch } from '../fleet/sketch.js';
import { explain, PagefuseError } from '../errors.js';

const HELP = `usage: pagefuse plan (--hosts FILE | --http-sd URL|FILE) [options]
       pagefuse plan --extender [HOST:PORT] (--hosts FILE | --http-sd URL|FILE) [options]

Reads the keyed sketches 'pagefuse serve --fleet-key' publishes at /fleet/sketch on every host, estimates
how much each VM shares with each host (with an error bound), and plans migrations that raise what KSM
saves, within each host's capacity. Hosts that fail, time out, answer garbage or use another fleet key
are reported (stderr and "failures" in the JSON) and left out.

Hosts:
  --hosts FILE          one HOST:PORT or URL per line ('#' comments)
  --http-sd URL|FILE    Prometheus http_sd JSON: [{"targets": ["host:port"], "labels": {"__scheme__": "https"}}]
  --scheme http|https   scheme for HOST:PORT entries (default http; http_sd's __scheme__ may raise it to https, not lower it)
  --fleet-key FILE      the fleet key: answers made under another key are refused (without it, the key
                        most hosts use is taken and the others are refused)
  --token FILE          bearer token sent to the hosts
  --tls-ca FILE         CA that signed the hosts' certificates
  --tls-cert FILE --tls-key FILE   client certificate for hosts that require one
  --timeout S           per host, whole exchange (default 10s; 500ms, 2m… accepted)
  --concurrency N       hosts read at once (default 32)

Plan:
  --format json|virsh|kubevirt   output (default json)
  --kubevirt-version X.Y         installed KubeVirt (default 1.6): 1.6+ migrations name the target node
                                 (spec.addedNodeSelector); older ones need a node affinity on the VM first
  --namespace NS        KubeVirt namespace for VMs whose name does not carry one (default "default")
  --libvirt-uri TEMPLATE         libvirt URI of a host, {host} replaced (default qemu+ssh://{host}/system)
  --max-moves N         at most N migrations
  --min-saving BYTES    leave out migrations expected to save less
  --overlaps            also list every VM's estimated overlap with every host (JSON)

Scheduler extender (--extender): answers POST …/prioritize with a HostPriorityList (scores 0-10) for
virt-launcher pods, by what the VM shares with the VMs on each node; configure it 'ignorable: true'.
  HOST:PORT             address to listen on (default 127.0.0.1:8888)
  --refresh S           re-read the sketches this often (default 5m; seconds, or 30s, 10m…)
  --template-label KEY  pod label naming a VM's template (default vm.kubevirt.io/template)
  --exemplar T=VM       a running VM that stands for template T (for VMs not running yet); repeatable
`;

interface Fleet {
  sketches: HostSketch[];
  failures: HostFailure[];
  asked: number;
}

/** The value most of `values` have; a tie goes to the first in `tie`'s order, else to the first seen. */
function mostCommon<T>(values: T[], tie: (a: T, b: T) => number = () => 0): T | undefined {
  const counts = new Map<T, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1] || tie(a[0], b[0]))[0]?.[0];
}

/** Reads every host, keeps those under one fleet key and of one page size with distinct names, reports the others. */
async function readFleet(source: { hosts?: string; httpSd?: string }, options: FetchOptions & { scheme?: string }): Promise<Fleet> {
  const targets = await readTargets(source, options);
  if (targets.length === 0) throw new PagefuseError('EINVAL', 'the host list names no host');
  const got = await fetchSketches(targets, options);
  const failures = [...got.failures];
  const keyId = options.keyId ?? mostCommon(got.hosts.map((h) => h.sketch.keyId));
  // One page size for the fleet, the one most of its hosts have: the planner counts pages and scales them by the
  // first host's page size, so a 64 KiB host among 4 KiB ones (or a peer claiming 2^52) scaled every figure.
  const pageSize = mostCommon(
    got.hosts.filter((h) => h.sketch.keyId === keyId).map((h) => h.sketch.pageSize),
    (a, b) => a - b,
  );
  const names = new Map<string, string>();
  const sketches: HostSketch[] = [];
  for (const h of got.hosts) {
    if (h.sketch.keyId !== keyId) {
      failures.push({ target: h.target.name, reason: `sketched under fleet key ${h.sketch.keyId}, not ${keyId} (the one most hosts use): its values cannot be compared` });
    } else if (h.sketch.pageSize !== pageSize) {
      failures.push({ target: h.target.name, reason: `its pages are ${h.sketch.pageSize} bytes, not ${pageSize} (the size most hosts have): its page counts cannot be compared` });
    } else if (names.has(h.sketch.host)) {
      failures.push({ target: h.target.name, reason: `answers as host ${h.sketch.host}, like ${names.get(h.sketch.host)}` });
    } else {
      names.set(h.sketch.host, h.target.name);
      sketches.push(h.sketch);
    }
  }
  return { sketches, failures, asked: targets.length };
}

function reportFailures(failures: HostFailure[]): void {
  for (const f of failures) process.stderr.write(`pagefuse plan: host ${JSON.stringify(f.target)} left out: ${f.reason}\n`);
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse('plan', args, {
    allowPositionals: true,
    options: {
      hosts: { type: 'string' },
      'http-sd': { type: 'string' },
      scheme: { type: 'string' },
      'fleet-key': { type: 'string' },
      token: { type: 'string' },
      'tls-ca': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      timeout: { type: 'string' },
      concurrency: { type: 'string' },
      format: { type: 'string' },
      'kubevirt-version': { type: 'string' },
      namespace: { type: 'string' },
      'libvirt-uri': { type: 'string' },
      'max-moves': { type: 'string' },
      'min-saving': { type: 'string' },
      overlaps: { type: 'boolean' },
      extender: { type: 'boolean' },
      refresh: { type: 'string' },
      'template-label': { type: 'string' },
      exemplar: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if ((values.hosts === undefined) === (values['http-sd'] === undefined)) {
    throw new UsageError('pagefuse plan: give exactly one of --hosts FILE or --http-sd URL|FILE');
  }
  if (positionals.length > (values.extender ? 1 : 0)) {
    throw new UsageError(`pagefuse plan: unexpected argument '${positionals[values.extender ? 1 : 0]}'${values.extender ? '' : ' (an address goes after --extender)'}`);
  }
  const scheme = values.scheme ?? 'http';
  if (scheme !== 'http' && scheme !== 'https') throw new UsageError(`pagefuse plan: --scheme must be http or https, got '${scheme}'`);
  const format = values.format ?? 'json';
  if (!['json', 'virsh', 'kubevirt'].includes(format)) throw new UsageError(`pagefuse plan: --format must be json, virsh or kubevirt, got '${format}'`);
  let kubevirt: [number, number];
  try {
    kubevirt = parseKubevirtVersion(values['kubevirt-version'] ?? '1.6');
  } catch (err) {
    throw new UsageError(`pagefuse plan: --kubevirt-version: ${(err as Error).message}`);
  }
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) throw new UsageError('pagefuse plan: --tls-cert and --tls-key go together');
  const exemplars = new Map<string, string>();
  for (const e of values.exemplar ?? []) {
    const eq = e.indexOf('=');
    if (eq <= 0 || eq === e.length - 1) throw new UsageError(`pagefuse plan: --exemplar must be TEMPLATE=VM, got '${e}'`);
    exemplars.set(e.slice(0, eq), e.slice(eq + 1));
  }
  const options: FetchOptions & { scheme?: string } = {
    scheme,
    timeoutMs: (durationFlag('plan', 'timeout', values.timeout, { min: 0.001, max: 3600 }) ?? 10) * 1000,
    concurrency: intFlag('plan', 'concurrency', values.concurrency, 1, 4096) ?? 32,
  };
  const maxMoves = intFlag('plan', 'max-moves', values['max-moves'], 0);
  const minSaving = intFlag('plan', 'min-saving', values['min-saving'], 0);
  const refresh = durationFlag('plan', 'refresh', values.refresh, { min: 1, max: 86_400 }) ?? 300;
  const listenAt = values.extender ? parseListen(positionals[0] ?? '127.0.0.1:8888', "pagefuse plan: --extender's address") : undefined;
  if (values.token !== undefined) options.token = await readSecretFlagFile('token', values.token);
  const tls = {
    ...(values['tls-ca'] === undefined ? {} : { ca: await readFlagFile('tls-ca', values['tls-ca']) }),
    ...(values['tls-cert'] === undefined ? {} : { cert: await readFlagFile('tls-cert', values['tls-cert']), key: await readFlagFile('tls-key', values['tls-key']!) }),
  };
  checkTlsFiles(tls, { ca: 'tls-ca' });
  options.tls = tls;
  if (values['fleet-key'] !== undefined) options.keyId = (await readFleetKey(values['fleet-key'])).id;
  const source = { ...(values.hosts === undefined ? {} : { hosts: values.hosts }), ...(values['http-sd'] === undefined ? {} : { httpSd: values['http-sd'] }) };

  if (listenAt !== undefined) return extender(listenAt, source, options, refresh, { templateLabel: values['template-label'], exemplars });

  const fleet = await readFleet(source, options);
  reportFailures(fleet.failures);
  if (fleet.sketches.length === 0) throw new PagefuseError('EHOSTUNREACH', `no host answered with a usable sketch (${fleet.asked} asked)`);
  const plan = planMigrations(fleet.sketches, {
    ...(maxMoves === undefined ? {} : { maxMoves }),
    ...(minSaving === undefined ? {} : { minSavingBytes: minSaving }),
    overlaps: values.overlaps === true,
  });
  if (format === 'virsh') {
    const template = values['libvirt-uri'] ?? 'qemu+ssh://{host}/system';
    process.stdout.write(virshCommands(plan.moves, (h) => template.replaceAll('{host}', h)));
  } else if (format === 'kubevirt') {
    process.stdout.write(kubevirtManifests(plan.moves, kubevirt, values.namespace ?? 'default'));
  } else {
    printJson({
      key_id: fleet.sketches[0].keyId,
      hosts_asked: fleet.asked,
      hosts_answered: fleet.sketches.length,
      failures: fleet.failures,
      ...plan,
    });
  }
  if (format !== 'json') {
    process.stderr.write(`pagefuse plan: ${plan.moves.length} migrations, expected saving ${formatBytes(plan.expected_saving_bytes)} ± ${formatBytes(plan.bound_bytes)}\n`);
  }
  return 0;
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new PagefuseError('EMSGSIZE', `request body larger than ${limit} bytes`));
        req.pause();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function extender(
  listenAt: { host: string | undefined; port: number },
  source: { hosts?: string; httpSd?: string },
  options: FetchOptions & { scheme?: string },
  refreshSeconds: number,
  scoring: { templateLabel: string | undefined; exemplars: Map<string, string> },
): Promise<number> {
  let model: FleetModel | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const load = async (): Promise<void> => {
    try {
      const fleet = await readFleet(source, options);
      reportFailures(fleet.failures);
      model = fleet.sketches.length > 0 ? new FleetModel(fleet.sketches) : undefined;
      process.stderr.write(`pagefuse plan: extender knows ${model?.vms.length ?? 0} VMs on ${fleet.sketches.length} of ${fleet.asked} hosts\n`);
    } catch (err) {
      process.stderr.write(`pagefuse plan: reading the fleet failed, keeping the last sketches: ${(err as Error).message.split('\n')[0]}\n`);
    }
  };
  // The next reading starts --refresh after this one ends. On a fixed interval they piled up behind a host that
  // answered slower than the interval (1, 3, 7 connections to it at once), and an older one could end last.
  const refresh = async (): Promise<void> => {
    await load();
    if (!stopped) timer = setTimeout(() => void refresh(), refreshSeconds * 1000);
  };
  await refresh();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (!path.endsWith('/prioritize')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('pagefuse extender: only POST …/prioritize\n');
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'POST' }).end('pagefuse extender: only POST …/prioritize\n');
      return;
    }
    readBody(req, 64 << 20).then(
      (text) => {
        let args;
        try {
          args = checkExtenderArgs(JSON.parse(text));
        } catch (err) {
          res.writeHead(400, { 'content-type': 'text/plain' }).end(`not ExtenderArgs: ${(err as Error).message}\n`);
          return;
        }
        let list;
        try {
          list = prioritize(model, args, { ...(scoring.templateLabel === undefined ? {} : { templateLabel: scoring.templateLabel }), exemplars: scoring.exemplars });
        } catch (err) {
          // The extender's own failure, not the request's: the scheduler should not read it as a bad request.
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`pagefuse extender: ${(err as Error).message.split('\n')[0]}\n`);
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(list));
      },
      // Too large: 413 and the connection closed; an aborted upload has nobody to answer.
      (err: Error & { code?: string }) => {
        if (err.code !== 'EMSGSIZE') return;
        res.writeHead(413, { 'content-type': 'text/plain', connection: 'close' }).end(`${err.message}\n`, () => req.destroy());
      },
    );
  });
  await listen(server, listenAt.host, listenAt.port);
  const addr = server.address();
  const bound = typeof addr === 'object' && addr !== null ? addr : { address: listenAt.host ?? '::', port: listenAt.port, family: 'IPv6' };
  process.stdout.write(`pagefuse plan: extender listening on http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}/prioritize\n`);
  return untilStopped(server, () => {
    stopped = true;
    clearTimeout(timer);
  });
}
