// A target agent facing a peer that holds the secret but breaks the protocol:
// every bad message is refused with a clear error, and nothing is restored
// or left behind; a source agent bounding what its clients start. In-process agent on loopback.
import t from 'tap';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeIdentity } from '../../lib/net/cert.js';
import { AuthChannel, type Message } from '../../lib/net/channel.js';
import { MigrationAgent, MigrationError, requestMigration } from '../../lib/migration/index.js';
import { until } from '../../testkit/wait.js';

const secret = crypto.randomBytes(32);

void t.test('a target agent refuses protocol violations and cleans up', async (t) => {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-mig-proto-'));
  t.teardown(() => fs.rmSync(workDir, { recursive: true, force: true }));
  const logs: string[] = [];
  const agent = await MigrationAgent.listen({ secret, workDir, log: (l) => logs.push(l) });
  t.teardown(() => agent.close());
  const open = async () => {
    const ch = await AuthChannel.connect({ host: agent.host, port: agent.port, secret });
    t.teardown(() => ch.destroy());
    return ch;
  };
  const id = () => crypto.randomBytes(16).toString('hex');
  const { certPem: cert } = await makeIdentity(path.join(workDir, 'source-tls'));
  const incoming = async (
    ch: AuthChannel,
    extra: Record<string, unknown> = {},
  ): Promise<{ id: string; reply: Message }> => {
    const i = id();
    ch.send({ op: 'incoming', id: i, mode: 'precopy', criu: {}, cert, ...extra });
    return {
      id: i,
      reply: await ch.waitFor((m) => m.op === 'accepted' || m.op === 'refused' || m.op === 'error', 10_000),
    };
  };
  const leftovers = () => fs.readdirSync(workDir).filter((f) => /^[0-9a-f]{32}$/.test(f));

  await t.test('malformed requests end the connection with a reason', async (t) => {
    for (const bad of [
      { op: 'nonsense' },
      { op: 'incoming', id: 'short', mode: 'precopy' },
      { op: 'incoming', id: id(), mode: 'teleport' },
      { op: 'status', id: 7 },
    ]) {
      const ch = await open();
      const err = ch.waitFor((m) => m.op === 'error', 10_000);
      ch.send(bad);
      const e = (await err).error as { code: string; message: string };
      t.equal(e.code, 'ERR_BAD_MESSAGE', `${JSON.stringify(bad)} → ${e.message}`);
    }
    const ch = await open();
    const err = ch.waitFor((m) => m.op === 'error', 10_000);
    await ch.sendData(1, Buffer.from('x'));
    t.match(((await err).error as { message: string }).message, /data outside a migration/);
  });

  await t.test('a bad move address is refused', async (t) => {
    const ch = await open();
    const { reply } = await incoming(ch, { moveAddress: { address: '10.0.0.1; reboot', prefix: 24, dev: 'eth0' } });
    t.equal(reply.op, 'refused');
    t.match(reply.reason, /moveAddress.address/);
    t.same(leftovers(), []);
  });

  await t.test('a missing or bad TLS certificate is refused', async (t) => {
    for (const [what, c, re] of [
      ['no certificate', undefined, /not one PEM certificate/],
      ['not PEM', 'hello', /not one PEM certificate/],
      ['two certificates', cert + cert, /not one PEM certificate/],
      ['DER garbage', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', /cannot be parsed/],
      [
        'oversized',
        `-----BEGIN CERTIFICATE-----\n${'A'.repeat(9000)}\n-----END CERTIFICATE-----\n`,
        /not one PEM certificate/,
      ],
    ] as [string, unknown, RegExp][]) {
      const ch = await open();
      const { reply } = await incoming(ch, { cert: c });
      t.equal(reply.op, 'refused', what);
      t.match(reply.reason, re, `${what}: ${String(reply.reason)}`);
      ch.destroy();
    }
    t.same(leftovers(), [], 'nothing left behind');
    const ch = await open();
    const { reply } = await incoming(ch);
    t.equal(reply.op, 'accepted', 'a good certificate is accepted');
    t.match(reply.cert, /^-----BEGIN CERTIFICATE-----\n/, "and answered with the target's own");
    t.not(reply.cert, cert, 'a different identity');
    ch.destroy();
  });

  await t.test('page-server and prepare requests are checked', async (t) => {
    const cases: [string, 'precopy' | 'postcopy', (i: string) => Message, RegExp][] = [
      ['page-server in a post-copy', 'postcopy', (i) => ({ op: 'page-server', id: i }), /not a pre-copy/],
      [
        'prepare in a pre-copy',
        'precopy',
        (i) => ({ op: 'prepare', id: i, pageServer: { address: '127.0.0.1', port: 1 } }),
        /not a post-copy/,
      ],
      ['prepare without an address', 'postcopy', (i) => ({ op: 'prepare', id: i }), /pageServer.address/],
      [
        'prepare with a host name',
        'postcopy',
        (i) => ({ op: 'prepare', id: i, pageServer: { address: 'evil.example', port: 1 } }),
        /must be an IP address/,
      ],
      [
        'prepare with a bad port',
        'postcopy',
        (i) => ({ op: 'prepare', id: i, pageServer: { address: '127.0.0.1', port: 70000 } }),
        /port/,
      ],
    ];
    for (const [what, mode, msg, re] of cases) {
      const ch = await open();
      const { id: i, reply } = await incoming(ch, { mode });
      t.equal(reply.op, 'accepted', what);
      const failed = ch.waitFor((m) => m.op === 'failed' && m.id === i, 20_000);
      ch.send(msg(i));
      const f = await failed;
      t.match(f.message, re, `${what}: ${String(f.message)}`);
      ch.destroy();
    }
  });

  await t.test('image names that leave the folder, truncated and oversized files fail the transfer', async (t) => {
    const cases: [string, (ch: AuthChannel, i: string) => Promise<void>, RegExp][] = [
      [
        'a name with a path',
        async (ch, i) => ch.send({ op: 'file', id: i, stream: 1, name: '../escape.img', size: 1 }),
        /field name/,
      ],
      [
        'fewer bytes than announced',
        async (ch, i) => {
          ch.send({ op: 'file', id: i, stream: 1, name: 'core-1.img', size: 10 });
          await ch.sendData(1, Buffer.alloc(5));
          ch.send({ op: 'file-end', id: i, stream: 1, size: 10 });
        },
        /5 bytes received, 10 announced/,
      ],
      [
        'more bytes than announced',
        async (ch, i) => {
          ch.send({ op: 'file', id: i, stream: 1, name: 'core-1.img', size: 2 });
          await ch.sendData(1, Buffer.alloc(5));
        },
        /more bytes than announced/,
      ],
      [
        'restore before the file ended',
        async (ch, i) => {
          ch.send({ op: 'file', id: i, stream: 1, name: 'core-1.img', size: 2 });
          ch.send({ op: 'restore', id: i });
        },
        /was not ended/,
      ],
    ];
    for (const [what, act, re] of cases) {
      const ch = await open();
      const { id: i, reply } = await incoming(ch);
      t.equal(reply.op, 'accepted', what);
      const failed = ch.waitFor((m) => m.op === 'failed' && m.id === i, 20_000);
      await act(ch, i);
      const f = await failed;
      t.match(f.message, re, `${what}: ${String(f.message)}`);
      ch.destroy();
    }
    // An abort from the source: the target drops the migration and says so when asked.
    const ch = await open();
    const { id: i } = await incoming(ch);
    ch.send({ op: 'file', id: i, stream: 1, name: 'core-1.img', size: 0 });
    ch.send({ op: 'file-end', id: i, stream: 1, size: 0 });
    ch.send({ op: 'abort', id: i, reason: 'test' });
    ch.send({ op: 'status', id: i });
    t.equal((await ch.waitFor((m) => m.op === 'status', 10_000)).state, 'aborted', 'aborted on request');
    await until(() => leftovers().length === 0, 60_000, 'the target removed the aborted images');
    t.same(leftovers(), [], 'no partial images left');
  });

  await t.test('status of a migration it never saw', async (t) => {
    const ch = await open();
    const i = id();
    ch.send({ op: 'status', id: i });
    const s = await ch.waitFor((m) => m.op === 'status', 10_000);
    t.same({ id: s.id, state: s.state }, { id: i, state: 'unknown' });
  });
});

void t.test('a source agent refuses outgoing migrations beyond maxOutgoing, and counts them down', async (t) => {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-mig-out-'));
  t.teardown(() => fs.rmSync(workDir, { recursive: true, force: true }));
  const logs: string[] = [];
  const agent = await MigrationAgent.listen({
    secret,
    workDir,
    maxOutgoing: 1,
    idleTimeoutMs: 60_000,
    log: (l) => logs.push(l),
  });
  t.teardown(() => agent.close());
  // A target that accepts connections and says nothing: the first migration waits on it.
  const silent = net.createServer(() => {});
  const held = new Set<net.Socket>();
  silent.on('connection', (s) => held.add(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => silent.close());
  const to = { host: '127.0.0.1', port: (silent.address() as net.AddressInfo).port };
  const sleeper = spawn('sleep', ['600'], { stdio: 'ignore' });
  t.teardown(() => sleeper.kill('SIGKILL'));
  const first = requestMigration(agent, secret, sleeper.pid!, { to }).catch((e: unknown) => e as MigrationError);
  await until(() => held.size > 0, 30_000, 'the first migration to reach its target');
  const second = await requestMigration(agent, secret, sleeper.pid!, { to }).catch((e: unknown) => e as MigrationError);
  t.equal((second as MigrationError).code, 'ERR_TOO_MANY', `the second is refused: ${(second as Error).message}`);
  t.ok(
    logs.some((l) => /refused: 1 migrations are going out already/.test(l)),
    'the agent logs the refusal',
  );
  for (const s of held) s.destroy();
  const e1 = await first;
  t.ok(
    e1 instanceof MigrationError && e1.code !== 'ERR_TOO_MANY',
    `the first fails on its own: ${(e1 as Error).message}`,
  );
  t.equal(e1 instanceof MigrationError ? e1.runningOn : undefined, 'source', 'and the process stays');
  // Its slot is free again: the next is not refused for the count.
  const third = await requestMigration(agent, secret, 999_999_999, { to }).catch((e: unknown) => e as MigrationError);
  t.not((third as MigrationError).code, 'ERR_TOO_MANY', `the next one is taken up: ${(third as Error).message}`);
});
