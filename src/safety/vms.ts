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
