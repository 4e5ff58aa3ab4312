// The cluster folder over real mutual TLS: init makes a CA, a CRL and an operator certificate; a
// node's certificate is rotated without a moment offline (the old one works until revoked); a
// revoked certificate is refused by TLS itself; files are 0600/0644 in 0700 folders; init never
// replaces a CA.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { initCluster, issueMember, loadConfig, loadMember, revoke, setEtcd } from '../../lib/cluster/folder.js';
import { peerIdentity, tlsOptions } from '../../lib/cluster/identity.js';

function tmp(t: { teardown(f: () => void): void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-folder-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return path.join(d, 'cluster');
}

/** A TLS server as node `name` of the folder, with the folder's CRL read at start: who it admitted. */
async function serveAs(dir: string, name: string): Promise<{ port: number; close(): Promise<void> }> {
  const m = loadMember(dir, 'node', name);
  const server = tls.createServer(tlsOptions(m.caPem, m, m.crlPem), (s) => {
    const who = peerIdentity(s, m.cluster);
    s.end(`${who.role} ${who.name}\n`);
  });
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

function call(port: number, caPem: string, own: { certPem: string; keyPem: string }): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, ...tlsOptions(caPem, own) });
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (got += d));
    s.on('end', () => resolve(got.trim() || 'refused'));
    s.on('error', () => resolve('refused'));
  });
}

void t.test('init, rotate, revoke', async (t) => {
  const dir = tmp(t);
  const { config, operator } = await initCluster(dir, { cluster: 'fold', etcd: ['http://127.0.0.1:2379'] });
  t.same(config, { cluster: 'fold', etcd: ['http://127.0.0.1:2379'] });
  t.same(loadConfig(dir), config);
  t.equal(fs.statSync(dir).mode & 0o777, 0o700, 'the folder is 0700');
  t.equal(fs.statSync(path.join(dir, 'ca-key.pem')).mode & 0o777, 0o600, "the CA's key is 0600");
  t.equal(fs.statSync(path.join(dir, 'operator', 'operator-key.pem')).mode & 0o777, 0o600, "a member's key is 0600");
  t.equal(operator.role, 'operator');
  await t.rejects(initCluster(dir, { cluster: 'fold' }), { code: 'ERR_EXISTS' }, 'init never replaces a CA');

  await issueMember(dir, { name: 'server', role: 'node', hosts: ['127.0.0.1'] });
  const first = await issueMember(dir, { name: 'node-a', role: 'node' });
  const firstFiles = { certPem: first.certPem, keyPem: first.keyPem };
  const ca = loadMember(dir, 'node', 'node-a').caPem;
  let s = await serveAs(dir, 'server');
  t.equal(await call(s.port, ca, firstFiles), 'node node-a', 'the first certificate is admitted');
  const second = await issueMember(dir, { name: 'node-a', role: 'node' });
  t.not(second.serial, first.serial, 'rotation gives a new serial');
  t.equal(loadMember(dir, 'node', 'node-a').certPem, second.certPem, 'the folder holds the new one');
  t.equal(await call(s.port, ca, second), 'node node-a', 'the rotated certificate is admitted');
  t.equal(await call(s.port, ca, firstFiles), 'node node-a', 'the old one still works until revoked');
  await s.close();

  t.same(await revoke(dir, [first.serial]), [first.serial.toLowerCase()]);
  s = await serveAs(dir, 'server'); // a server reads the CRL when it (re)starts
  t.teardown(() => s.close());
  t.equal(await call(s.port, ca, firstFiles), 'refused', 'the revoked certificate is refused');
  t.equal(await call(s.port, ca, second), 'node node-a', 'its successor is admitted');
  t.equal(await call(s.port, ca, operator), 'operator operator', 'others are untouched');
  await t.rejects(revoke(dir, ['not-hex']), { code: 'ERR_BAD_ARGUMENT' });
  t.same(
    JSON.parse(fs.readFileSync(path.join(dir, 'revoked.json'), 'utf8')),
    [first.serial.toLowerCase()],
    'a bad serial changed nothing',
  );

  setEtcd(dir, ['https://127.0.0.1:1']);
  t.same(loadConfig(dir).etcd, ['https://127.0.0.1:1']);
  t.throws(() => loadMember(dir, 'node', 'nobody'), { code: 'ERR_NOT_FOUND', message: /node nobody's certificate/ });
  t.throws(() => loadConfig(path.join(dir, 'nope')), { code: 'ERR_NOT_FOUND' });
});
