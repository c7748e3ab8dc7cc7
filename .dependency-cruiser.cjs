// Import rules for src/ (run by `npm test` through `npm run lint:deps`). The layers, lowest first:
//   0  src/errors.ts, src/units.ts, src/native.ts (the only door to the addon), src/host/ (readers of /proc and /sys)
//   1  src/ksm/ (knobs, counters, profit: never the addon)
//   2  src/region.ts, src/scan/, src/numa/, src/vm/, src/workload/
//   3  src/tune/, src/safety/, src/report/, src/bench/, src/launch/, src/fleet/, and any new folder
//   4  src/cli/, src/index.ts
// A module imports only from its own layer or below; folders never import each other in a circle.
// A new folder under src/ is layer 3 until it is named below: lower layers cannot import it, and it
// cannot import the CLI. examples/ use the public API only.
const LAYER0 = '^src/(errors\\.ts$|units\\.ts$|native\\.ts$|host/)';
const LAYER1 = '^src/ksm/';
const LAYER2 = '^src/(region\\.ts$|scan/|numa/|vm/|workload/)';
const TOP = '^src/(cli/|index\\.ts$)';

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Modules import each other in a circle.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-folder-cycles',
      severity: 'error',
      comment: 'Folders import each other in a circle: one of them belongs below the other.',
      scope: 'folder',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'host-is-the-bottom',
      severity: 'error',
      comment: 'src/errors.ts, src/units.ts, src/native.ts and src/host/ import nothing else of src/.',
      from: { path: LAYER0 },
      to: { path: '^src/', pathNot: LAYER0 },
    },
    {
      name: 'ksm-above-host-only',
      severity: 'error',
      comment: 'src/ksm/ uses the host readers only (and never the addon: see ksm-without-addon).',
      from: { path: LAYER1 },
      to: { path: '^src/', pathNot: `${LAYER0}|${LAYER1}` },
    },
    {
      name: 'ksm-without-addon',
      severity: 'error',
      comment: 'Counters, knobs and profit must run where the addon cannot load (test/pure-modules.test.ts).',
      from: { path: LAYER1 },
      to: { path: '^src/native\\.ts$' },
    },
    {
      name: 'scan-numa-vm-below-policy',
      severity: 'error',
      comment: 'src/region.ts, scan/, numa/, vm/ and workload/ use host/ and ksm/ only, and each other.',
      from: { path: LAYER2 },
      to: { path: '^src/', pathNot: `${LAYER0}|${LAYER1}|${LAYER2}` },
    },
    {
      name: 'nothing-imports-the-cli',
      severity: 'error',
      comment: 'The CLI and the package index are the top: only they import them.',
      from: { path: '^src/', pathNot: TOP },
      to: { path: TOP },
    },
    {
      name: 'only-native-loads-the-addon',
      severity: 'error',
      comment: 'src/native.ts is the only door to the .node addon.',
      from: { pathNot: '^src/native\\.ts$' },
      to: { path: '\\.node$' },
    },
    {
      name: 'src-not-from-tests-or-benches',
      severity: 'error',
      comment: 'The library never imports test helpers or bench entry points.',
      from: { path: '^src/' },
      to: { path: '^(test|bench|examples)/' },
    },
    {
      name: 'examples-use-the-public-api',
      severity: 'error',
      comment: 'An example shows what a user writes: it imports the package index, nothing deeper.',
      from: { path: '^examples/' },
      to: { path: '^src/', pathNot: '^src/index\\.ts$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(node_modules|dist|build)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    moduleSystems: ['es6', 'cjs'],
  },
};
