// A cluster member in a process of its own: `node member-process.js ENDPOINT CLUSTER NAME TTL` joins,
// prints "JOINED <lease>", and stays a member until it is killed (the test kills it with SIGKILL:
// a node that dies without leaving).
import { openStore } from '../../lib/cluster/store.js';
import { Member } from '../../lib/cluster/membership.js';

const [endpoint, cluster, name, ttl] = process.argv.slice(2);
const store = openStore({ endpoints: [endpoint], cluster });
const m = await Member.join(store, { name, ttlSeconds: Number(ttl) });
console.log(`JOINED ${m.leaseHex}`);
setInterval(() => {}, 1 << 30);
