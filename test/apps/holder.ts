// A stand-in for sosd: opens a Workloads on argv[2], runs argv[3..] as app 'web', prints the
// record as one JSON line, and stays until it is killed (the test SIGKILLs it).
import { Workloads } from '../../lib/apps/index.js';
import { CGROUPS } from './kit.js';

const [stateDir, ...argv] = process.argv.slice(2);
const w = await Workloads.open({ stateDir, cgroups: CGROUPS });
const r = await w.run({ app: 'web', argv });
process.stdout.write(`${JSON.stringify(r)}\n`);
setInterval(() => undefined, 1 << 30);
