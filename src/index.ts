// pagefuse public API. Names follow DESIGN.md's contract.
export { Region, PAGE_SIZE } from './region.js';
export type { Advice, HugePagesMode, MemPolicy, RegionOptions, RangeOptions } from './region.js';
export { setMergeAny, getMergeAny } from './ksm/merge-any.js';
export { PagefuseError } from './errors.js';
export { scan, readUseZeroPages } from './scan/scan.js';
export type { ScanMode, ScanTarget, ScanOptions, ScanResult, TargetScan, ProcessTarget, ScanProgress, DensityMap } from './scan/scan.js';
