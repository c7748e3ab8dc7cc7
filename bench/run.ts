// npm run bench [-- --quick] [-- --json]: every section of src/bench in one run, as `pagefuse bench` runs
// them (hashing against the native read baseline, the scan estimate against ksmd, the tuner policies).
import { benchText, runBench } from '../src/bench/bench.js';

const quick = process.argv.includes('--quick');
const json = process.argv.includes('--json');
const result = await runBench({ quick, log: (line) => process.stderr.write(`${line}\n`) });
process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : benchText(result));
