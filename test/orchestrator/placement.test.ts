// The default placement policy, on candidates as the orchestrator hands them over: the node asked
// for, else the fewest processes, then the most memory available; a far-memory process away from its
// memory nodes while one is live; every choice with its reason.
import t from 'tap';
import { fewestProcesses, type Candidate } from '../../lib/orchestrator/placement.js';
import type { ProcessSpec } from '../../lib/orchestrator/desired.js';
import type { Telemetry } from '../../lib/cluster/telemetry.js';

const GiB = 2 ** 30;
const node = (name: string, processes: number, memAvail?: number): Candidate => ({
  name,
  record: { v: 1, name, lease: '1', joinedAt: 0 },
  telemetry: memAvail === undefined ? null : ({ memAvail } as Telemetry),
  processes,
});
const spec = (more: Partial<ProcessSpec> = {}): ProcessSpec => ({
  app: 'a',
  id: 1,
  argv: ['true'],
  submittedAt: new Date(0).toISOString(),
  ...more,
});
const far = (memoryNodes: string[]) =>
  spec({ farMemory: { localBytes: 2 ** 22, farBytes: 2 ** 26, memoryNodes, secret: 'c2VjcmV0' } });
const place = fewestProcesses.place.bind(fewestProcesses);

void t.test('fewest processes, then most memory, then by name; the node asked for', async (t) => {
  const nodes = [node('node0', 2, 8 * GiB), node('node1', 1, 4 * GiB), node('node2', 1, 6 * GiB)];
  t.match(place(spec(), nodes), {
    node: 'node2',
    reason: /^fewest processes: node2 runs 1 \(node1 1, node0 2\), 6\.0 GiB/,
  });
  t.match(place(spec(), [node('b', 0), node('a', 0)]), { node: 'a' }, 'a tie by name');
  t.match(place(spec({ node: 'node0' }), nodes), { node: 'node0', reason: 'asked for node0' });
  t.match(place(spec({ node: 'node9' }), nodes), { node: null, reason: 'node9 is not a live node' });
  t.match(place(spec(), []), { node: null, reason: 'no live node' });
});

void t.test('a far-memory process goes to a node that holds none of its memory', async (t) => {
  const nodes = [node('node0', 3), node('node1', 0), node('node2', 1)];
  t.match(place(far(['node1']), nodes), {
    node: 'node2',
    reason: /^fewest processes among the nodes that hold none of its memory: node2 runs 1 \(node0 3\)$/,
  });
  t.match(place(far(['node1', 'node2']), nodes), { node: 'node0' }, 'the busiest, when the others hold its memory');
  t.match(
    place(far(['node0', 'node1', 'node2']), nodes),
    { node: 'node1', reason: /every live node holds some of its memory/ },
    'every node holds its memory: the fewest processes among them all',
  );
  t.match(place(far(['node1']), [node('node1', 0)]), { node: 'node1' }, 'its memory node when it is the only one');
  t.match(place({ ...far(['node1']), node: 'node1' }, nodes), { node: 'node1' }, 'or when asked for');
});
