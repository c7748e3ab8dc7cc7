// discoverVms() as the API gives it: the VMMs found in /proc plus the processes registered with
// pagefuse (exec, spawnMerged, register), each under the name it was registered with.
import { discoverVms as discoverInProc, type DiscoverOptions, type VmInfo } from '../vm/discover.js';
import { Registry } from './registry.js';

export interface DiscoverVmsOptions extends DiscoverOptions {
  /**
   * Whose registrations name and add processes. Default: the host's registry, unless procRoot is
   * given (a fixture tree has none of the host's processes); false: none.
   */
  registry?: Registry | false;
}

export async function discoverVms(options: DiscoverVmsOptions = {}): Promise<VmInfo[]> {
  const { registry, ...rest } = options;
  const source = registry ?? (rest.procRoot === undefined ? new Registry() : false);
  const registered = source === false ? [] : source.list();
  return discoverInProc({ ...rest, registered: [...registered, ...(rest.registered ?? [])] });
}

/**
 * The one naming of VMs every output uses (status, top, serve, report, the tuner's history, audit, scan):
 * pid → the name it was registered under, else QEMU's -name guest=… (or the VMM's own id), for the
 * processes discovery finds. Processes that are no VM keep their command name (comm), which callers add.
 */
export async function vmNames(options: DiscoverVmsOptions = {}): Promise<Map<number, string>> {
  return new Map((await discoverVms(options)).map((vm) => [vm.pid, vm.name]));
}
