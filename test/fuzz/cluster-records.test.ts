// Property fuzzing (fast-check) of the parsers for what members read back from etcd (any member may
// write there): node records, telemetry, process entries, checkpoints, moves and the orchestrator's records. Each returns a value of the right shape or throws
// ERR_BAD_RECORD, never anything else. Fixed seed, bounded runs; FUZZ_RUNS for more.
import t from 'tap';
import net from 'node:net';
import fc from 'fast-check';
import { ClusterError } from '../../lib/cluster/errors.js';
import { parseNodeRecord, parseTelemetryRecord } from '../../lib/cluster/records.js';
import { parseProcessEntry } from '../../lib/cluster/processes.js';
import { parseCheckpointEntry, type CheckpointEntry } from '../../lib/cluster/checkpoints.js';
import { parseMove, type MoveEntry } from '../../lib/cluster/moves.js';
import { parseSpec } from '../../lib/orchestrator/desired.js';
import { parseAction, parseDecision } from '../../lib/orchestrator/actions.js';
import { parseLeader } from '../../lib/orchestrator/fence.js';
import { parseWanted } from '../../lib/orchestrator/migrations.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);
const SEED = Number(process.env.FUZZ_SEED ?? 20261206);

const valueNear = (valid: Record<string, unknown>) =>
  fc.oneof(
    fc.string({ maxLength: 300 }),
    fc.json(),
    fc.anything(),
    fc
      .record(Object.fromEntries(Object.entries(valid).map(([k, v]) => [k, fc.oneof(fc.constant(v), fc.anything())])), {
        requiredKeys: [],
      })
      .map((o) => JSON.stringify(o) ?? ''),
  );
const name = fc.oneof(fc.constant('node-1'), fc.string({ maxLength: 70 }));

function contained(f: () => unknown): boolean {
  try {
    f();
  } catch (e) {
    if (e instanceof ClusterError && e.code === 'ERR_BAD_RECORD') return true;
    throw e;
  }
  return true;
}

void t.test('node records', (t) => {
  const valid = { v: 1, name: 'node-1', lease: '1a2b', joinedAt: 1, addr: '10.0.0.1' };
  let ok = 0;
  fc.assert(
    fc.property(name, valueNear(valid), (n, v) =>
      contained(() => {
        const r = parseNodeRecord(n, v);
        if (r.name !== n || r.v !== 1) throw new Error('accepted a record of the wrong shape');
        ok++;
      }),
    ),
    { numRuns: RUNS, seed: SEED },
  );
  t.ok(ok > 0, `some inputs were valid records (${ok} of ${RUNS})`);
  t.same(parseNodeRecord('node-1', JSON.stringify(valid)), valid);
  t.throws(() => void parseNodeRecord('node-2', JSON.stringify(valid)), {
    code: 'ERR_BAD_RECORD',
    message: /names another node/,
  });
  t.throws(() => void parseNodeRecord('node-1', 'x'.repeat(20_000)), {
    code: 'ERR_BAD_RECORD',
    message: /larger than/,
  });
  t.end();
});

void t.test('telemetry', (t) => {
  const valid = { v: 1 as const, at: 1, cpu: 0.5, cpus: 2, memTotal: 1, memAvail: 1, rxBps: 0, txBps: 0 };
  fc.assert(
    fc.property(name, valueNear(valid), (n, v) =>
      contained(() => {
        const r = parseTelemetryRecord<typeof valid>(n, v);
        if (!(r.cpu >= 0 && r.cpu <= 1)) throw new Error('accepted a cpu that is not a fraction');
      }),
    ),
    { numRuns: RUNS, seed: SEED },
  );
  t.same(parseTelemetryRecord('node-1', JSON.stringify(valid)), valid);
  t.throws(() => void parseTelemetryRecord('node-1', JSON.stringify({ ...valid, cpu: 2 })), { code: 'ERR_BAD_RECORD' });
  t.end();
});

void t.test('process entries', (t) => {
  const valid = {
    app: 'web',
    id: 3,
    node: 'n0',
    pid: 10,
    state: 'running',
    startedAt: 'x',
    exitCode: null,
    signal: null,
    exitedAt: null,
    argv0: 'sleep',
  };
  const key = fc.oneof(fc.constant('procs/web/3'), fc.string({ maxLength: 40 }));
  // (Ten fields must all be right at once: random inputs rarely are; the valid one is checked below.)
  fc.assert(
    fc.property(key, valueNear(valid), (k, v) => {
      const e = parseProcessEntry(k, v);
      if (e === null) return true;
      if (k !== `procs/${e.app}/${e.id}` || !Number.isSafeInteger(e.pid) || typeof e.node !== 'string')
        throw new Error('accepted an entry of the wrong shape');
      return true;
    }),
    { numRuns: RUNS, seed: SEED },
  );
  t.same(parseProcessEntry('procs/web/3', JSON.stringify(valid)), valid);
  t.equal(parseProcessEntry('procs/web/4', JSON.stringify(valid)), null, 'the key must name it');
  t.equal(parseProcessEntry('procs/web/3', 'x'.repeat(5000)), null, 'too large');
  t.end();
});

void t.test('checkpoint entries (checkpoints/<app>/<id>): only well-formed entries are read', (t) => {
  const valid: CheckpointEntry = {
    app: 'web',
    id: 3,
    seq: 2,
    node: 'node0',
    holders: ['node1', 'node2'],
    at: '2026-12-07T00:00:00.000Z',
    bytes: 4096,
    argv: ['/bin/sleep', '100'],
    cwd: '/',
    startedAt: '2026-12-07T00:00:00.000Z',
    logs: {
      stdout: '/var/lib/serverlessos/apps/web/3/stdout.log',
      stderr: '/var/lib/serverlessos/apps/web/3/stderr.log',
    },
  };
  const key = fc.oneof(fc.constant('checkpoints/web/3'), fc.string({ maxLength: 40 }));
  fc.assert(
    fc.property(key, valueNear(valid as unknown as Record<string, unknown>), (k, v) => {
      const e = parseCheckpointEntry(k, v);
      if (e === null) return true;
      if (
        k !== `checkpoints/${e.app}/${e.id}` ||
        !Number.isSafeInteger(e.seq) ||
        !Array.isArray(e.holders) ||
        !e.logs.stdout.startsWith('/')
      )
        throw new Error('accepted an entry of the wrong shape');
      return true;
    }),
    { numRuns: RUNS, seed: SEED },
  );
  t.same(parseCheckpointEntry('checkpoints/web/3', JSON.stringify(valid)), valid);
  t.equal(parseCheckpointEntry('checkpoints/web/4', JSON.stringify(valid)), null, 'the key must name it');
  t.equal(parseCheckpointEntry('checkpoints/web/3', JSON.stringify({ ...valid, holders: [] })), null, 'no holder');
  t.equal(
    parseCheckpointEntry('checkpoints/web/3', JSON.stringify({ ...valid, logs: { stdout: 'x', stderr: '/y' } })),
    null,
    'a relative log path',
  );
  t.end();
});

void t.test('a migration as the cluster recorded it (moves/<id>): only well-formed entries are read', (t) => {
  const valid: MoveEntry = {
    migration: '0123456789abcdef0123456789abcdef',
    app: 'web',
    id: 3,
    from: 'node0',
    to: 'node1',
    mode: 'precopy',
    argv: ['/bin/sleep', '100'],
    cwd: '/',
    limits: {},
    logs: {
      stdout: '/var/lib/serverlessos/apps/web/3/stdout.log',
      stderr: '/var/lib/serverlessos/apps/web/3/stderr.log',
    },
    startedAt: 'x',
    moveAddress: { address: '10.1.2.130', prefix: 24, dev: 'eth0' },
    at: 'y',
  };
  fc.assert(
    fc.property(valueNear(valid as unknown as Record<string, unknown>), (v) => {
      const e = parseMove(v);
      if (e === null) return true;
      if (!/^[0-9a-f]{32}$/.test(e.migration) || e.from === e.to || !e.logs.stdout.startsWith('/') || !e.argv.length)
        throw new Error('accepted a move of the wrong shape');
      if (e.moveAddress && (net.isIP(e.moveAddress.address) === 0 || !Number.isInteger(e.moveAddress.prefix)))
        throw new Error('accepted an address to move that is none');
      return true;
    }),
    { numRuns: RUNS, seed: SEED },
  );
  t.same(parseMove(JSON.stringify(valid)), valid);
  t.equal(parseMove(JSON.stringify({ ...valid, to: 'node0' })), null, 'from and to differ');
  t.equal(
    parseMove(JSON.stringify({ ...valid, logs: { stdout: 'rel', stderr: '/x' } })),
    null,
    'log paths are absolute',
  );
  t.equal(parseMove(JSON.stringify({ ...valid, migration: 'ABC' })), null, 'the id is 32 hex digits');
  t.equal(parseMove('x'.repeat(300_000)), null, 'too large');
  const noAddress = { ...valid };
  delete noAddress.moveAddress;
  t.same(parseMove(JSON.stringify(noAddress)), noAddress, 'the address to move is optional');
  for (const [moveAddress, why] of [
    [{ address: '10.1.2', prefix: 24, dev: 'eth0' }, 'an IP address'],
    [{ address: '10.1.2.3', prefix: 33, dev: 'eth0' }, 'a prefix that fits it'],
    [{ address: '10.1.2.3', prefix: 24, dev: 'eth0 x' }, 'an interface name'],
    [{ address: '10.1.2.3', prefix: 24, dev: 'eth0', extra: 1 }, 'nothing else'],
  ] as const)
    t.equal(parseMove(JSON.stringify({ ...valid, moveAddress })), null, `the address to move: ${why}`);
  t.end();
});

void t.test(
  "the orchestrator's records: desired specs, steps, decisions, the leader key, migrations asked for",
  (t) => {
    const spec = {
      app: 'web',
      id: 3,
      argv: ['sleep', '1'],
      env: { A: 'b' },
      limits: { memoryBytes: 1024, cpu: { quotaUs: 5000 } },
      node: 'node1',
      submittedAt: '2026-12-07T00:00:00.000Z',
    };
    const step = {
      app: 'web',
      id: 3,
      kind: 'place',
      node: 'node1',
      state: 'intended',
      reason: 'r',
      leader: 'node0',
      term: '7',
      at: 'x',
    };
    const keyNear = (k: string) => fc.oneof(fc.constant(k), fc.string({ maxLength: 40 }));
    let specs = 0;
    let steps = 0;
    fc.assert(
      fc.property(
        keyNear('desired/web/3'),
        valueNear(spec),
        keyNear('actions/web/3'),
        valueNear(step),
        (k, v, j, w) => {
          const s = parseSpec(k, v);
          if (s) {
            specs++;
            if (k !== `desired/${s.app}/${s.id}` || !Array.isArray(s.argv) || !s.argv.length)
              throw new Error('accepted a spec of the wrong shape');
          }
          const a = parseAction(j, w);
          if (a) {
            steps++;
            if (j !== `actions/${a.app}/${a.id}` || !['intended', 'done', 'failed', 'lost'].includes(a.state))
              throw new Error('accepted a step of the wrong shape');
          }
          const d = parseDecision(w);
          if (d && (typeof d.reason !== 'string' || typeof d.kind !== 'string'))
            throw new Error('accepted a decision of the wrong shape');
          const l = parseLeader(v);
          if (l && (typeof l.name !== 'string' || !Number.isFinite(l.since)))
            throw new Error('accepted a leader of the wrong shape');
          return true;
        },
      ),
      { numRuns: RUNS, seed: SEED },
    );
    t.ok(
      specs > 0,
      `some inputs were valid (${specs} specs, ${steps} steps of ${RUNS}); the valid cases below cover the rest`,
    );
    t.same(parseSpec('desired/web/3', JSON.stringify(spec)), spec);
    t.equal(parseSpec('desired/web/4', JSON.stringify(spec)), null, 'the key must name it');
    t.equal(parseSpec('desired/web/3', JSON.stringify({ ...spec, argv: [] })), null, 'a program to run');
    t.equal(parseSpec('desired/web/3', JSON.stringify({ ...spec, extra: 1 })), null, 'nothing else');
    t.equal(parseSpec('desired/web/3', 'x'.repeat(2 << 20)), null, 'too large');
    const want = {
      migration: 'ab'.repeat(16),
      app: 'web',
      id: 3,
      to: 'node2',
      mode: 'postcopy',
      state: 'started',
      from: 'node1',
      submittedAt: 'x',
    };
    let wants = 0;
    fc.assert(
      fc.property(keyNear(`migrations-wanted/${want.migration}`), valueNear(want), (k, v) => {
        const w = parseWanted(k, v);
        if (!w) return true;
        wants++;
        if (k !== `migrations-wanted/${w.migration}` || !/^[0-9a-f]{32}$/.test(w.migration) || !(w.id > 0))
          throw new Error('accepted a migration request of the wrong shape');
        return true;
      }),
      { numRuns: RUNS, seed: SEED },
    );
    t.same(
      parseWanted(`migrations-wanted/${want.migration}`, JSON.stringify(want)),
      want,
      `migration requests (${wants} valid)`,
    );
    t.equal(
      parseWanted(`migrations-wanted/${want.migration}`, JSON.stringify({ ...want, state: 'maybe' })),
      null,
      'a known state',
    );
    t.equal(
      parseWanted(`migrations-wanted/${want.migration}`, JSON.stringify({ ...want, to: 'Node 2' })),
      null,
      'a node name',
    );
    t.same(parseAction('actions/web/3', JSON.stringify(step)), step);
    t.equal(parseAction('actions/web/3', JSON.stringify({ ...step, state: 'maybe' })), null, 'a known state');
    t.end();
  },
);
