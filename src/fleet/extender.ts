// kube-scheduler's HTTP extender, prioritize verb. The request and answer follow kube-scheduler's own
// types (k8s.io/kube-scheduler/extender/v1/types.go): ExtenderArgs { Pod, Nodes, NodeNames } in,
// HostPriorityList [{ Host, Score }] out, scores from MinExtenderPriority 0 to MaxExtenderPriority 10.
// Those Go structs carry no json tags, so the field names on the wire are the Go names. The pod and
// node objects are Kubernetes' own JSON (metadata.name, …). Meant to be configured `ignorable`.
import { FleetModel } from './model.js';

export const MIN_EXTENDER_PRIORITY = 0;
export const MAX_EXTENDER_PRIORITY = 10;

/** What pagefuse reads of a v1.Pod. */
export interface ExtenderPod {
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
}

/** ExtenderArgs: Nodes when the extender is not nodeCacheCapable, NodeNames when it is. */
export interface ExtenderArgs {
  Pod: ExtenderPod | null;
  Nodes?: { items?: { metadata?: { name?: string } }[] | null } | null;
  NodeNames?: string[] | null;
}

export interface HostPriority {
  Host: string;
  Score: number;
}

export type HostPriorityList = HostPriority[];

/** KubeVirt's labels and annotations on a virt-launcher pod (kubevirt.io/api core/v1). */
const APP_LABEL = 'kubevirt.io';
const DOMAIN_ANNOTATION = 'kubevirt.io/domain';

export interface ExtenderOptions {
  /** Pod label naming the VM's template, and a running VM standing for each template. */
  templateLabel?: string;
  exemplars?: Map<string, string>;
}

/** The candidate node names of a request, whichever of Nodes or NodeNames it carries. */
export function candidateNodes(args: ExtenderArgs): string[] {
  if (Array.isArray(args.NodeNames)) return args.NodeNames.filter((n): n is string => typeof n === 'string');
  const items = args.Nodes?.items;
  if (!Array.isArray(items)) return [];
  return items.map((n) => n?.metadata?.name).filter((n): n is string => typeof n === 'string');
}

/** Checks the shape of a request body: one clear line when it is not ExtenderArgs. */
export function checkExtenderArgs(body: unknown): ExtenderArgs {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new TypeError('ExtenderArgs must be a JSON object');
  const a = body as Record<string, unknown>;
  if (!('Pod' in a)) throw new TypeError('ExtenderArgs needs Pod');
  if (a.Pod !== null && (typeof a.Pod !== 'object' || Array.isArray(a.Pod))) throw new TypeError('ExtenderArgs.Pod must be an object');
  if (a.NodeNames !== undefined && a.NodeNames !== null && !(Array.isArray(a.NodeNames) && a.NodeNames.every((n) => typeof n === 'string'))) {
    throw new TypeError('ExtenderArgs.NodeNames must be a list of strings');
  }
  if (a.Nodes !== undefined && a.Nodes !== null && (typeof a.Nodes !== 'object' || Array.isArray(a.Nodes))) throw new TypeError('ExtenderArgs.Nodes must be a NodeList object');
  return a as unknown as ExtenderArgs;
}

/** The fleet VM a pod stands for: the VM itself (migration, restart), else its template's exemplar. */
function vmFor(model: FleetModel, pod: ExtenderPod, options: ExtenderOptions): number {
  const md = pod.metadata ?? {};
  if (md.labels?.[APP_LABEL] !== 'virt-launcher') return -1;
  const ns = md.namespace ?? 'default';
  const vmi = md.annotations?.[DOMAIN_ANNOTATION];
  const names = new Map(model.vms.map((v, i) => [v.name, i]));
  const find = (n: string): number => names.get(`${ns}/${n}`) ?? names.get(`${ns}_${n}`) ?? names.get(n) ?? -1;
  if (vmi !== undefined) {
    const v = find(vmi);
    if (v >= 0) return v;
  }
  const template = md.labels?.[options.templateLabel ?? 'vm.kubevirt.io/template'];
  const exemplar = template === undefined ? undefined : options.exemplars?.get(template);
  return exemplar === undefined ? -1 : (names.get(exemplar) ?? find(exemplar));
}

/**
 * Scores each candidate node by how many of the VM's pages the VMs already there hold (the VM's
 * own node counts the others on it), scaled so the best node gets 10. Nodes without a sketch, and
 * pods that are no VM pagefuse knows, get 0 everywhere: the scheduler's other scores decide.
 */
export function prioritize(model: FleetModel | undefined, args: ExtenderArgs, options: ExtenderOptions = {}): HostPriorityList {
  const nodes = candidateNodes(args);
  const zero = nodes.map((Host) => ({ Host, Score: MIN_EXTENDER_PRIORITY }));
  if (model === undefined || args.Pod === null) return zero;
  const v = vmFor(model, args.Pod, options);
  if (v < 0) return zero;
  const hostIndex = new Map(model.hosts.map((h, i) => [h.name, i]));
  const shares = nodes.map((n) => {
    const h = hostIndex.get(n);
    return h === undefined ? 0 : model.shares(v, h);
  });
  // Not Math.max(...shares): spread over ~130,000 NodeNames overflowed the stack.
  const best = shares.reduce((a, b) => (b > a ? b : a), 0);
  if (best === 0) return zero;
  return nodes.map((Host, i) => ({ Host, Score: Math.round((MAX_EXTENDER_PRIORITY * shares[i]) / best) }));
}
