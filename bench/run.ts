// npm run bench [-- --quick] [-- --json]: every bench suite, figures as ratios measured in this run.
import { formatScanBench, runScanBench } from './scan.bench.js';

const quick = process.argv.includes('--quick');
const json = process.argv.includes('--json');
const scanReport = await runScanBench({ quick });
if (json) process.stdout.write(`${JSON.stringify({ scan: scanReport }, null, 2)}\n`);
else process.stdout.write(`${formatScanBench(scanReport)}\n`);
