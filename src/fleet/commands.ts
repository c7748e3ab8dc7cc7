// A plan as commands operators run: virsh for libvirt hosts, VirtualMachineInstanceMigration
// manifests for KubeVirt. KubeVirt 1.6.0 added spec.addedNodeSelector to the migration object (checked
// in kubevirt/kubevirt's staging/src/kubevirt.io/api/core/v1/types.go: absent in v1.4.0 and v1.5.0,
// present in v1.6.0); before that a migration cannot name its target, so the VM is given a required
// node affinity for the target first (applied to the running VMI by the LiveUpdate rollout strategy).
import type { PlannedMove } from './plan.js';

/** Shell-quotes a word for POSIX sh. */
function sh(word: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * `virsh migrate` lines, one per move, in plan order. `uri` turns a host name into a libvirt URI. The domain and
 * the destination are given as --domain=… and --desturi=…: as plain arguments, a VM named '--migrateuri=…' (its
 * name comes from a peer's sketch) was read by virsh as that option.
 */
export function virshCommands(moves: PlannedMove[], uri: (host: string) => string = (h) => `qemu+ssh://${h}/system`): string {
  return moves
    .map((m) => `virsh -c ${sh(uri(m.from))} migrate --live --persistent --undefinesource --verbose ${sh(`--domain=${m.vm}`)} ${sh(`--desturi=${uri(m.to)}`)}`)
    .join('\n')
    .concat(moves.length > 0 ? '\n' : '');
}

/** KubeVirt names a VM namespace/name; its libvirt domain (and so the sketch) says namespace_name. */
export function kubevirtName(vm: string, fallbackNamespace: string): { namespace: string; name: string } {
  const slash = vm.indexOf('/');
  if (slash > 0) return { namespace: vm.slice(0, slash), name: vm.slice(slash + 1) };
  const underscore = vm.indexOf('_');
  if (underscore > 0) return { namespace: vm.slice(0, underscore), name: vm.slice(underscore + 1) };
  return { namespace: fallbackNamespace, name: vm };
}

/** "1.6" → [1, 6]; throws on anything else. */
export function parseKubevirtVersion(v: string): [number, number] {
  const m = /^v?(\d{1,3})\.(\d{1,3})(?:\.\d{1,3})?$/.exec(v);
  if (m === null) throw new RangeError(`a KubeVirt version is MAJOR.MINOR (e.g. 1.6), got '${v}'`);
  return [Number(m[1]), Number(m[2])];
}

export function supportsAddedNodeSelector(version: [number, number]): boolean {
  return version[0] > 1 || (version[0] === 1 && version[1] >= 6);
}

const DNS_LABEL = /[^a-z0-9-]/g;

function yamlString(s: string): string {
  return JSON.stringify(s);
}

/** Manifests (YAML, one document per object) that carry out the moves on KubeVirt. */
export function kubevirtManifests(moves: PlannedMove[], version: [number, number], fallbackNamespace = 'default'): string {
  const docs: string[] = [];
  const withSelector = supportsAddedNodeSelector(version);
  for (const m of moves) {
    const { namespace, name } = kubevirtName(m.vm, fallbackNamespace);
    const migration = `pagefuse-${name.toLowerCase().replace(DNS_LABEL, '-').slice(0, 40)}-${m.step}`;
    const comment = `# step ${m.step}: ${m.vm} ${m.from} -> ${m.to}, expected saving ${m.expected_saving_bytes} ± ${m.bound_bytes} bytes`;
    const pin = withSelector
      ? []
      : [
          `# KubeVirt ${version.join('.')} has no addedNodeSelector (1.6+): pin the VM to ${m.to} first, and remove the affinity after the move:`,
          // --namespace= and vm/NAME: a namespace or name from a peer's sketch that starts with '-' stays a value.
          `#   kubectl --namespace=${sh(namespace)} patch ${sh(`vm/${name}`)} --type merge -p ${sh(
            JSON.stringify({
              spec: { template: { spec: { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [m.to] }] }] } } } } } },
            }),
          )}`,
        ];
    docs.push(
      [
        comment,
        ...pin,
        `apiVersion: kubevirt.io/v1`,
        `kind: VirtualMachineInstanceMigration`,
        `metadata:`,
        `  name: ${yamlString(migration)}`,
        `  namespace: ${yamlString(namespace)}`,
        `spec:`,
        `  vmiName: ${yamlString(name)}`,
        ...(withSelector ? [`  addedNodeSelector:`, `    kubernetes.io/hostname: ${yamlString(m.to)}`] : []),
      ].join('\n'),
    );
  }
  return docs.map((d) => `---\n${d}\n`).join('');
}
