// The channel in mutual TLS over real loopback TCP, with a cluster's certificates: messages and data both
// ways and nothing of them in the clear on the wire; refused, and told why, are a server that is not the
// node asked for, a peer of the wrong role, of another CA, revoked, without a certificate, or speaking the
// secret handshake; a CRL given to a running server applies to its next connection.
import t from 'tap';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { AuthChannel, ChannelError, type Message } from '../../lib/net/channel.js';
import { createCa, issue, revocationList, type ClusterCa, type Credentials } from '../../lib/cluster/identity.js';
import { memberTls, type MemberCredentials } from '../../lib/cluster/member-tls.js';
import type { Role } from '../../lib/cluster/identity.js';
import { until } from '../../testkit/wait.js';

const HOST = '127.0.0.1';
const CLUSTER = 'alpha';
const QUIET = { intervalMs: 600_000, timeoutMs: 1_200_000 };

const ca = await createCa({ cluster: CLUSTER });
const otherCa = await createCa({ cluster: CLUSTER }); // same name, another CA
const node1 = await issue(ca, { name: 'node-1', role: 'node' });
const node2 = await issue(ca, { name: 'node-2', role: 'node' });
const operator = await issue(ca, { name: 'ops', role: 'operator' });
const stranger = await issue(otherCa, { name: 'node-2', role: 'node' });

const creds = (c: Credentials, from: ClusterCa = ca, crlPem?: string): MemberCredentials => ({
  caPem: from.certPem,
  certPem: c.certPem,
  keyPem: c.keyPem,
  ...(crlPem ? { crlPem } : {}),
});

async function serve(
  credentials: MemberCredentials | (() => MemberCredentials),
  roles: Role[] = ['node'],
  onChannel: (ch: AuthChannel) => void = (ch) => ch.on('message', (m) => ch.send({ ...m, op: 'echo' })),
) {
  const refused: ChannelError[] = [];
  const server = AuthChannel.server(memberTls({ credentials, cluster: CLUSTER, roles }), onChannel, {
    timeoutMs: 5000,
    liveness: QUIET,
    onRefused: (e) => refused.push(e),
  });
  server.listen(0, HOST);
  await once(server, 'listening');
  t.teardown(() => server.close());
  return { port: (server.address() as net.AddressInfo).port, refused };
}

const dial = (port: number, c: MemberCredentials, name?: string) =>
  AuthChannel.connect({
    host: HOST,
    port,
    secret: memberTls({ credentials: c, cluster: CLUSTER, roles: ['node'], ...(name ? { name } : {}) }),
    liveness: QUIET,
  });

async function refusal(p: Promise<unknown>): Promise<ChannelError> {
  try {
    await p;
  } catch (e) {
    return e as ChannelError;
  }
  throw new Error('connected, but should have been refused');
}

void t.test(
  'two nodes: messages and data both ways, the peer named by its certificate, nothing in the clear',
  async (t) => {
    let serverSide: AuthChannel | null = null;
    const { port } = await serve(creds(node1), ['node'], (ch) => {
      serverSide = ch;
      ch.on('message', (m) => ch.send({ op: 'echo', n: m.n, from: ch.peerCertificate?.subject?.CN }));
      ch.on('data', (stream, chunk) => void ch.sendData(stream + 1, chunk));
    });
    // A proxy in between records the wire.
    const wire: Buffer[] = [];
    const px = net.createServer((c) => {
      const up = net.connect(port, HOST);
      c.on('data', (d: Buffer) => (wire.push(d), up.write(d)));
      up.on('data', (d: Buffer) => (wire.push(d), c.write(d)));
      c.on('close', () => up.destroy());
      up.on('close', () => c.destroy());
    });
    px.listen(0, HOST);
    await once(px, 'listening');
    t.teardown(() => px.close());
    const ch = await dial((px.address() as net.AddressInfo).port, creds(node2), 'node-1');
    t.teardown(() => ch.close());
    t.equal(ch.peerCertificate?.subject?.CN, 'node-1', 'the client sees the server it asked for');
    const reply = ch.waitFor((m) => m.op === 'echo', 10_000);
    ch.send({ op: 'ping', n: 7, word: 'MARKER-IN-A-MESSAGE' });
    t.match(await reply, { op: 'echo', n: 7, from: 'node-2' }, 'a message there and back; the server sees node-2');
    const big = Buffer.alloc(3 * 2 ** 20, 'MARKER-IN-DATA');
    const got: Buffer[] = [];
    let n = 0;
    ch.on('data', (stream, chunk) => {
      t.equal(stream, 2);
      got.push(chunk);
      n += chunk.length;
    });
    await ch.sendData(1, big);
    await until(() => n === big.length, 30_000, 'the data to come back');
    t.ok(Buffer.concat(got).equals(big), '3 MiB there and back, every byte right');
    t.ok(serverSide, 'the server had the channel');
    const all = Buffer.concat(wire).toString('latin1');
    t.notOk(all.includes('MARKER-IN-A-MESSAGE') || all.includes('MARKER-IN-DATA'), 'nothing in the clear on the wire');
  },
);

void t.test('refused: the wrong node, a role not allowed, another CA, no certificate, a secret', async (t) => {
  const { port, refused } = await serve(creds(node1));
  let e = await refusal(dial(port, creds(node2), 'node-3'));
  t.match(e, { code: 'ERR_AUTH', message: /not node-3/ }, 'a client that asked for node-3 refuses node-1');

  e = await refusal(dial(port, creds(operator)));
  t.match(e, { code: 'ERR_AUTH', message: /refused us: operator ops is not a node/ }, 'an operator: told why');
  const counted = async (re: RegExp, what: string) => {
    await until(() => refused.some((x) => re.test(x.message)), 10_000, `the server to refuse ${what}`);
    const x = refused.find((r) => re.test(r.message))!;
    t.equal(x.code, 'ERR_AUTH', `the server refused ${what}: ${x.message}`);
    refused.length = 0;
  };
  await counted(/operator ops is not a node/, 'the operator');

  // A member of another CA (with the same cluster name), both ways.
  e = await refusal(dial(port, creds(stranger, otherCa)));
  t.equal(e.code, 'ERR_AUTH', `it refuses our server: ${e.message}`);
  e = await refusal(dial(port, creds(stranger, ca)));
  t.match(e, { code: 'ERR_AUTH', message: /not verified/ }, `our server refuses it, and says why: ${e.message}`);
  await counted(/not verified/, 'the member of another CA');

  // A TLS client with no certificate.
  const bare = tls.connect({ host: HOST, port, ca: ca.certPem, checkServerIdentity: () => undefined });
  bare.on('error', () => {});
  bare.resume();
  await once(bare, 'close');
  await counted(/not verified|TLS handshake failed/, 'a peer without a certificate');

  // The secret handshake against a TLS server: not TLS, so it never gets in.
  e = await refusal(AuthChannel.connect({ host: HOST, port, secret: Buffer.alloc(32, 1), timeoutMs: 5000 }));
  t.ok(e instanceof ChannelError, `a client with a secret: ${e.code} ${e.message}`);
  await counted(/TLS handshake failed/, 'the secret handshake');

  // And a TLS client against a secret server.
  const s = AuthChannel.server(Buffer.alloc(32, 1), () => t.fail('nobody gets in'), { timeoutMs: 3000 });
  s.listen(0, HOST);
  await once(s, 'listening');
  t.teardown(() => s.close());
  e = await refusal(dial((s.address() as net.AddressInfo).port, creds(node2)));
  t.ok(e instanceof ChannelError, `a certificate against a secret server: ${e.code} ${e.message}`);
});

void t.test('a CRL applies to the next connection of a running server', async (t) => {
  let current = creds(node1);
  const { port, refused } = await serve(() => current);
  const ok = await dial(port, creds(node2), 'node-1');
  const r = ok.waitFor((m: Message) => m.op === 'echo', 10_000);
  ok.send({ op: 'hi' });
  await r;
  t.pass('node-2 gets in');
  ok.close();
  current = creds(node1, ca, await revocationList(ca, [node2.serial]));
  const e = await refusal(dial(port, creds(node2), 'node-1'));
  t.equal(e.code, 'ERR_AUTH', `node-2, revoked: ${e.message}`);
  t.match(e.message, /CERT_REVOKED/, 'told why');
  await until(() => refused.length === 1, 10_000, 'the server to count it');
  t.match(refused[0].message, /CERT_REVOKED/, refused[0].message);
  const still = await dial(port, creds(operator, ca), 'node-1').catch((x: ChannelError) => x);
  t.match(still, { code: 'ERR_AUTH' }, 'and the role check still holds');
});
