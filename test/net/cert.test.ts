// Throwaway TLS identities (lib/net/cert.ts): what they contain, and what a
// peer's certificate must be to be trusted.
import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MAX_CERT_PEM, makeIdentity, trustPeer } from '../../lib/net/cert.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-cert-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

void t.test('an identity: a P-256 key and a self-signed CA certificate, back-dated a day', async (t) => {
  const before = Date.now();
  const id = await makeIdentity(path.join(dir, 'a'), 'node-a');
  t.equal(fs.statSync(path.join(dir, 'a')).mode & 0o777, 0o700, 'its folder is private');
  t.equal(fs.statSync(id.keyFile).mode & 0o777, 0o600, 'its key file is private');
  t.equal(fs.readFileSync(id.certFile, 'utf8'), id.certPem);
  const x = new crypto.X509Certificate(id.certPem);
  t.equal(x.subject, 'CN=node-a');
  t.equal(x.issuer, 'CN=node-a');
  t.ok(x.verify(x.publicKey), 'signed by its own key');
  t.ok(x.ca, 'a CA certificate (it is its own trust anchor)');
  t.equal(x.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  t.ok(x.checkPrivateKey(crypto.createPrivateKey(fs.readFileSync(id.keyFile))), 'the key file matches');
  const from = Date.parse(x.validFrom);
  t.ok(
    from <= before - 23 * 3600_000,
    `valid from a day before (${x.validFrom}): a peer whose clock is behind accepts it`,
  );
  t.ok(Date.parse(x.validTo) >= before + 47 * 3600_000, `valid for two days (${x.validTo})`);
  const other = await makeIdentity(path.join(dir, 'b'));
  const y = new crypto.X509Certificate(other.certPem);
  t.not(y.serialNumber, x.serialNumber, 'fresh serial');
  t.notOk(y.publicKey.equals(x.publicKey), 'fresh key');
  t.notOk(
    /^00/.test(x.serialNumber) || /^[89A-F]/i.test(x.serialNumber),
    'a positive serial without a leading zero byte (DER)',
  );
});

void t.test('trustPeer accepts exactly one valid self-signed certificate', async (t) => {
  const good = await makeIdentity(path.join(dir, 'c'));
  const file = path.join(dir, 'peer.pem');
  t.equal(await trustPeer(file, good.certPem), file);
  t.equal(fs.readFileSync(file, 'utf8'), good.certPem, 'written as the trusted certificate');
  const expired = await makeIdentity(path.join(dir, 'd'), 'old', -2);
  const cases: [string, unknown, RegExp][] = [
    ['a number', 42, /not one PEM certificate/],
    ['two certificates', good.certPem + good.certPem, /not one PEM certificate/],
    ['a private key', fs.readFileSync(good.keyFile, 'utf8'), /not one PEM certificate/],
    [
      'too long',
      `-----BEGIN CERTIFICATE-----\n${'A'.repeat(MAX_CERT_PEM)}\n-----END CERTIFICATE-----\n`,
      /not one PEM certificate/,
    ],
    ['not DER inside', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', /cannot be parsed/],
    ['expired', expired.certPem, /not valid now/],
  ];
  for (const [what, pem, re] of cases) await t.rejects(trustPeer(path.join(dir, 'x.pem'), pem), re, what);
  t.notOk(fs.existsSync(path.join(dir, 'x.pem')), 'nothing written for a bad certificate');
});
