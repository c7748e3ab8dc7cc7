// pagefuse public API. Names follow DESIGN.md's contract.
export { Region, PAGE_SIZE } from './region.js';
export type { Advice, HugePagesMode, MemPolicy, RegionOptions, RangeOptions, BindOptions, PageNodes } from './region.js';
export { setMergeAny, getMergeAny } from './ksm/merge-any.js';
export { PagefuseError } from './errors.js';
export { Ksm, profitFromCounters } from './ksm/ksm.js';
export type { KsmOptions, KsmState, KsmCounters, WaitOptions, ConfigureOptions } from './ksm/ksm.js';
export { InvalidSettingError, TUNABLES } from './ksm/knobs.js';
export type { KsmSettings, KsmSettingsInput, AdvisorMode } from './ksm/knobs.js';
export { processKsm, listKsmProcesses, parseKsmStat } from './ksm/process.js';
export type { ProcessKsm, KsmProcessEntry, KsmProcessList } from './ksm/process.js';
export { numaTopology, numaBackend } from './numa/topology.js';
export type { NumaNode, NumaTopology, TopologyOptions } from './numa/topology.js';
export { spawnMerged, EXEC_STATUS } from './numa/spawn.js';
export type { SpawnMergedOptions } from './numa/spawn.js';
export { processMergingByNode, ksmPagesByNode } from './numa/ksm-nodes.js';
export type { KsmNodeOptions, NodeMergingPages, ProcessMergingByNode, NodeKsmPages } from './numa/ksm-nodes.js';
export { mergeAcrossNodesWarning } from './numa/warnings.js';
