// One cluster node for bench/cluster: `node member.js DIR NAME TTL INTERVAL_MS` joins from the cluster
// folder (mutual TLS to etcd), publishes telemetry and campaigns for the orchestrator as sosd does,
// prints "JOINED", and reads commands on stdin: "always" makes it write telemetry at every sample
// (the publish-everything baseline), "leave" leaves and exits. SIGKILL is a node that dies. Once
// elected it takes its first fenced action at once (a decision recorded under its term).
import readline from 'node:readline';
import { joinCluster } from '../../lib/cluster/join.js';
import { Election } from '../../lib/orchestrator/election.js';
import { recordDecision } from '../../lib/orchestrator/actions.js';

const [dir, name, ttl, interval] = process.argv.slice(2);
// The publisher reads refreshMs at each sample: setting it to 0 turns change-only into always.
const telemetry = { intervalMs: Number(interval), refreshMs: 30_000 };
const node = await joinCluster({ dir, name, ttlSeconds: Number(ttl), facts: { addr: '127.0.0.1' }, telemetry });
const election = new Election(node.store, node.member);
election.on('elected', (fence) => {
  void recordDecision(node.store, fence, {
    at: new Date().toISOString(),
    kind: 'elected',
    app: '',
    id: 0,
    node: name,
    reason: `${name} leads, term ${fence.term}`,
  }).catch(() => undefined);
});
election.start();
console.log('JOINED');
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  if (l === 'always') telemetry.refreshMs = 0;
  if (l === 'leave') void election.stop().then(() => node.close().then(() => process.exit(0)));
});
