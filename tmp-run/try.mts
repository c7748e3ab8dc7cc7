import { startGuests } from '../test/helpers/tune-guests.ts';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
const g = await startGuests(3, { commonMiB: 24, uniqueMiB: 4, zeroMiB: 1, changingMiB: 1 }, 'try');
console.log('achievable', g.achievablePages);
writeFileSync('tmp-run/c.conf', 'PAGEFUSE_MIN_SAVINGS_MIB=8\n');
const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/bin.ts', 'tune', '--once', '--dry-run', '--config', 'tmp-run/c.conf'], { encoding: 'utf8' });
console.log(r.status, r.stdout, r.stderr);
await g.stop();
