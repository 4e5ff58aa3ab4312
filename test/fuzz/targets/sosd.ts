// sosd's request lines, as a peer sends them: first the parser alone (lib/daemon/protocol.ts parseRequest:
// only a FrameError may come out, and an accepted request has a safe-integer id, a known op and object args
// or none), then the whole path a connection takes (DaemonServer.answer: parse, role check, the ajv schema
// check and its ERR_BAD_ARGS message built from the peer's own field names, the handler), for a local
// peer, a node and an operator over TLS. The reply must be one line of JSON with the request's id, a
// refusal must name a documented code in a bounded message, and no TLS peer may reach an op its role may not.
import { parseRequest } from '../../../lib/daemon/protocol.js';
import { DaemonMetrics } from '../../../lib/daemon/metrics.js';
import { DaemonServer, NO_ARGS, type Peer } from '../../../lib/daemon/server.js';
import { contained, invariant } from '../input.js';
import { JSON_TOKENS } from '../vocabulary.js';

const OPS = new Set(['status', 'ping']);

const server = new DaemonServer('/nonexistent/sosd-fuzz.sock', {
  metrics: new DaemonMetrics({ processMetrics: false }),
});
// What each op's handler saw, so that the target can tell an op was reached.
let reached: { op: string; peer: Peer } | null = null;
server.register('ping', NO_ARGS, (_a, ctx) => (reached = { op: 'ping', peer: ctx.peer }), {
  roles: ['node', 'operator'],
});
server.register(
  'deep',
  {
    type: 'object',
    additionalProperties: false,
    required: ['pid'],
    properties: {
      pid: { type: 'integer', minimum: 1 },
      name: { type: 'string', maxLength: 8 },
      opts: {
        type: 'object',
        additionalProperties: false,
        properties: {
          'a b': { type: 'array', maxItems: 4, items: { type: 'integer' } },
          '~/x': { type: 'boolean' },
          list: {
            type: 'array',
            items: { type: 'object', additionalProperties: false, properties: { k: { enum: [1, 'x'] } } },
          },
        },
      },
    },
  },
  (_a, ctx) => (reached = { op: 'deep', peer: ctx.peer }),
  { roles: ['operator'] },
);
server.register('admin', NO_ARGS, (_a, ctx) => (reached = { op: 'admin', peer: ctx.peer }));

// Read through a call: TypeScript cannot see the handlers set it during answer().
const seen = () => reached;

const PEERS: Peer[] = [
  { kind: 'local', uid: 0 },
  { kind: 'tls', role: 'node', name: 'node-1', serial: '41' },
  { kind: 'tls', role: 'operator', name: 'op', serial: '42' },
];
const MAY: Record<string, (p: Peer) => boolean> = {
  version: () => true,
  status: (p) => p.kind === 'local',
  'node.info': (p) => p.kind === 'local',
  ping: () => true,
  deep: (p) => p.kind === 'local' || p.role === 'operator',
  admin: (p) => p.kind === 'local',
};
const CODES = new Set([
  'ERR_FRAME_TOO_LARGE',
  'ERR_BAD_JSON',
  'ERR_BAD_FRAME',
  'ERR_VERSION',
  'ERR_UNKNOWN_OP',
  'ERR_BAD_ARGS',
  'ERR_FORBIDDEN',
]);
// A refusal's message quotes at most 64 characters of each peer-given name; a few of them, and the op list.
const MAX_MESSAGE = 1024;

export async function fuzz(data: Buffer): Promise<void> {
  const line = data.toString('utf8');
  contained(() => {
    const q = parseRequest(line, OPS);
    invariant(Number.isSafeInteger(q.id) && OPS.has(q.op), `accepted ${JSON.stringify(q)}`);
    invariant(q.args === undefined || (typeof q.args === 'object' && q.args !== null), 'args is not an object');
  });
  // Only what the server would see as one line (it splits at newlines).
  if (line.includes('\n')) return;
  let asked: { id?: unknown; op?: unknown } | null = null;
  try {
    const raw = JSON.parse(line) as unknown;
    if (raw && typeof raw === 'object' && !Array.isArray(raw)) asked = raw;
  } catch {
    // not JSON: ERR_BAD_JSON below
  }
  for (const peer of PEERS) {
    reached = null;
    const out = await server.answer(line, peer);
    const ran = seen();
    invariant(out.endsWith('\n') && out.indexOf('\n') === out.length - 1, 'the reply is not one line');
    const r = JSON.parse(out) as { v: number; id: unknown; ok: boolean; error?: { code: string; message: string } };
    invariant(r.v === 1 && typeof r.ok === 'boolean', `a reply of another shape: ${out}`);
    const id = typeof asked?.id === 'number' && Number.isSafeInteger(asked.id) ? asked.id : null;
    invariant(r.id === id || r.id === null, `reply id ${String(r.id)} for request id ${String(asked?.id)}`);
    if (r.ok) {
      const op = String(asked?.op);
      invariant(MAY[op]?.(peer), `${peer.kind} ${peer.kind === 'tls' ? peer.role : ''} was served op ${op}`);
      invariant(r.id === id, 'a result without its id');
    } else {
      invariant(r.error && CODES.has(r.error.code), `an undocumented code: ${out}`);
      invariant(r.error.message.length <= MAX_MESSAGE, `a message of ${r.error.message.length} characters`);
      invariant(ran === null || r.error.code !== 'ERR_FORBIDDEN', 'a forbidden op ran');
      if (r.error.code === 'ERR_FORBIDDEN') invariant(peer.kind === 'tls', 'the local socket was forbidden an op');
    }
    if (ran) invariant(MAY[ran.op](peer), `op ${ran.op} ran for a peer that may not call it`);
  }
}

export const seeds = [
  Buffer.from('{"v":1,"id":1,"op":"status"}'),
  Buffer.from('{"v":1,"id":2,"op":"ping","args":{"x":[1,2]}}'),
  Buffer.from('{"v":2,"id":3,"op":"x"}'),
  Buffer.from('{"v":1,"id":4,"op":"deep","args":{"pid":1,"opts":{"a b":[1,"x"],"~/x":1}}}'),
  Buffer.from('{"v":1,"id":5,"op":"deep","args":{"pid":2,"opts":{"list":[{"k":2},{"__proto__":1}]}}}'),
  Buffer.from('{"v":1,"id":6,"op":"admin"}'),
];
export const dictionary = [
  '"v"',
  '"id"',
  '"op"',
  '"args"',
  '"status"',
  '"ping"',
  '"deep"',
  '"admin"',
  '"version"',
  '"pid"',
  '"opts"',
  '"a b"',
  '"~/x"',
  '"list"',
  '"k"',
  '"__proto__"',
  '"constructor"',
  '"~0~1/"',
  '"\\u2028"',
  '1',
  ...JSON_TOKENS,
  '"toString"',
  '"valueOf"',
  '9007199254740993',
];
