// The cluster's identities over real mutual TLS on loopback: a node of the cluster is served and
// named; no certificate, another cluster's certificate, a revoked one are refused by TLS itself; a
// node asking for an operator's operation is refused by role.
import t from 'tap';
import tls from 'node:tls';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import {
  authorize,
  createCa,
  issue,
  peerIdentity,
  revocationList,
  tlsOptions,
  type ClusterCa,
  type Credentials,
  type PeerIdentity,
} from '../../lib/cluster/identity.js';

interface Served {
  port: number;
  /** What the server made of each peer: its identity, or the refusal's code. */
  seen: (PeerIdentity | string)[];
  close(): Promise<void>;
}

async function serve(ca: ClusterCa, own: Credentials, crl?: string): Promise<Served> {
  const seen: (PeerIdentity | string)[] = [];
  const server = tls.createServer(tlsOptions(ca.certPem, own, crl), (s) => {
    try {
      const who = peerIdentity(s, ca.cluster);
      seen.push(who);
      s.end(`hello ${who.role} ${who.name}\n`);
    } catch (e) {
      seen.push((e as { code: string }).code);
      s.destroy();
    }
  });
  server.on('tlsClientError', () => seen.push('tls'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** Connect with `opts`: the server's first line, or the error's code. */
async function call(port: number, opts: tls.ConnectionOptions): Promise<string> {
  return await new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, ...opts });
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (got += d));
    s.on('end', () => resolve(got.trim() || 'closed'));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

void t.test('mutual TLS with cluster certificates: members served, strangers and revoked ones refused', async (t) => {
  const ca = await createCa({ cluster: 'alpha' });
  const node1 = await issue(ca, { name: 'node-1', role: 'node', hosts: ['127.0.0.1', 'node-1.local'] });
  const node2 = await issue(ca, { name: 'node-2', role: 'node' });
  const op = await issue(ca, { name: 'alice', role: 'operator', days: 1 });
  t.equal(node1.cluster, 'alpha');
  t.match(node1.serial, /^[4-7][0-9a-f]{31}$/);
  t.ok(op.notAfter.getTime() - Date.now() <= 86_400_000, 'a 1-day certificate ends within a day');

  const srv = await serve(ca, node1);
  t.teardown(() => srv.close());
  t.equal(await call(srv.port, tlsOptions(ca.certPem, node2)), 'hello node node-2', 'a node of the cluster is served');
  t.equal(await call(srv.port, tlsOptions(ca.certPem, op)), 'hello operator alice');
  t.match(srv.seen, [{ name: 'node-2', role: 'node', cluster: 'alpha', serial: node2.serial }, { name: 'alice' }]);

  // No certificate: TLS 1.3 refuses it after the handshake, and the server never sees a peer.
  const before = srv.seen.length;
  t.not(
    await call(srv.port, { ca: ca.certPem, checkServerIdentity: () => undefined }),
    'hello',
    'no client certificate',
  );
  const beta = await createCa({ cluster: 'beta' });
  const stranger = await issue(beta, { name: 'node-1', role: 'node' });
  t.notMatch(await call(srv.port, tlsOptions(ca.certPem, stranger)), /hello/, "another cluster's certificate");
  t.notMatch(
    await call(srv.port, tlsOptions(beta.certPem, node2)),
    /hello/,
    "a client that trusts only another cluster's CA",
  );
  t.notOk(
    srv.seen.slice(before).some((x) => typeof x === 'object'),
    'no refused peer got an identity',
  );

  // Revocation: a server given the CA's list refuses node-2, still serves alice.
  const crl = await revocationList(ca, [node2.serial]);
  const strict = await serve(ca, node1, crl);
  t.teardown(() => strict.close());
  t.notMatch(await call(strict.port, tlsOptions(ca.certPem, node2)), /hello/, 'a revoked node is refused');
  t.equal(await call(strict.port, tlsOptions(ca.certPem, op)), 'hello operator alice', 'the others still are served');
  t.notOk(
    strict.seen.some((x) => typeof x === 'object' && x.name === 'node-2'),
    'the revoked node never got an identity',
  );
});

void t.test('roles: a node asking for an operator action is refused', async (t) => {
  const node: PeerIdentity = { name: 'node-2', role: 'node', cluster: 'alpha', serial: '40' };
  t.throws(() => authorize(node, ['operator'], 'kill APP/1'), {
    code: 'ERR_ROLE',
    message: 'node node-2 may not kill APP/1 (allowed: operator)',
  });
  t.doesNotThrow(() => authorize({ ...node, role: 'operator' }, ['operator'], 'kill APP/1'));
});

void t.test('bad input: clear errors, nothing signed', async (t) => {
  const ca = await createCa({ cluster: 'alpha' });
  for (const name of ['', 'a b', 'CN=x', 'x,O=beta', '-x', 'x'.repeat(64)])
    await t.rejects(issue(ca, { name, role: 'node' }), { code: 'ERR_BAD_ARGUMENT' }, JSON.stringify(name));
  await t.rejects(issue(ca, { name: 'n', role: 'root' as never }), {
    code: 'ERR_BAD_ARGUMENT',
    message: /role must be one of/,
  });
  await t.rejects(issue(ca, { name: 'n', role: 'node', days: 0 }), { code: 'ERR_BAD_ARGUMENT' });
  await t.rejects(issue(ca, { name: 'n', role: 'node', hosts: ['a b'] }), { code: 'ERR_BAD_ARGUMENT' });
  await t.rejects(createCa({ cluster: 'a/b' }), { code: 'ERR_BAD_ARGUMENT' });
  await t.rejects(issue({ ...ca, certPem: 'nonsense' }, { name: 'n', role: 'node' }), { code: 'ERR_BAD_CERT' });
  await t.rejects(issue({ ...ca, keyPem: 'nonsense' }, { name: 'n', role: 'node' }), { code: 'ERR_BAD_CERT' });
  const other = await createCa({ cluster: 'alpha' });
  await t.rejects(issue({ ...ca, keyPem: other.keyPem }, { name: 'n', role: 'node' }), {
    code: 'ERR_BAD_CERT',
    message: 'the CA key does not match the CA certificate',
  });
  await t.rejects(revocationList(ca, ['xyz']), { code: 'ERR_BAD_ARGUMENT' });
});
