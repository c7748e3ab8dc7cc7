// node --import tsx bench/responsiveness.ts [--quick] [--json]: the event loop's longest stall while scan()
// hashes 2 GiB (512 MiB with --quick), and the time of one live sample (src/bench/responsiveness.ts).
// Exits 1 when a target is not met. Timing targets live here, not in the unit tests (issue 10).
import { benchResponsiveness, responsivenessText } from '../src/bench/responsiveness.js';

const quick = process.argv.includes('--quick');
const json = process.argv.includes('--json');
const result = await benchResponsiveness({ bytes: (quick ? 512 : 2048) * 1024 * 1024, log: (line) => process.stderr.write(`${line}\n`) });
process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : responsivenessText(result));
process.exitCode = result.met.stall && result.met.sampling ? 0 : 1;
