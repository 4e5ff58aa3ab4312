// CRIU's page-server connections over mutual TLS (the `tls` option of
// pageServer/dump/dumpLazy/lazyPages), with throwaway identities: pages
// arrive intact, and a peer with the wrong certificate is shut out.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { criu } from '../../lib/index.js';
import { makeIdentity, trustPeer } from '../../lib/net/cert.js';
import { alive, images, scene, startTarget, workFolder } from '../helpers/criu-target.js';
import { until } from '../../testkit/wait.js';

const keys = mkdtempSync('/tmp/sos-criu-tls-');
t.teardown(() => rmSync(keys, { recursive: true, force: true }));

/** Two identities that trust each other, and a third that nobody trusts. */
async function identities(): Promise<{ a: criu.CriuTls; b: criu.CriuTls; stranger: criu.CriuTls }> {
  const [a, b, s] = await Promise.all(['a', 'b', 's'].map((n) => makeIdentity(path.join(keys, n))));
  return {
    a: { cert: a.certFile, key: a.keyFile, caCert: await trustPeer(path.join(keys, 'a', 'peer.pem'), b.certPem) },
    b: { cert: b.certFile, key: b.keyFile, caCert: await trustPeer(path.join(keys, 'b', 'peer.pem'), a.certPem) },
    stranger: {
      cert: s.certFile,
      key: s.keyFile,
      caCert: await trustPeer(path.join(keys, 's', 'peer.pem'), a.certPem),
    },
  };
}

void t.test('dump to a page server over mutual TLS; memory intact after restore', async (t) => {
  const { a, b } = await identities();
  const { target, restored, dir } = await scene(t, { mib: 4 });
  const ps = await criu.pageServer({ imagesDir: dir, address: '127.0.0.1', port: 0, tls: b });
  t.teardown(() => ps.close());
  const d = await criu.dump({
    pid: target.pid,
    imagesDir: dir,
    pageServer: { address: '127.0.0.1', port: ps.port!, tls: a },
  });
  await ps.exited;
  t.ok(d.stats && d.stats.pagesWritten >= 4 * 256, 'pages went to the page server');
  const r = await criu.restore({ imagesDir: dir });
  restored.push(r.pid);
  t.equal((await target.verify(r.pid)).ok, true, 'memory intact');
});

void t.test('a dump holding the wrong certificate is refused; the process keeps running', async (t) => {
  const { b, stranger } = await identities();
  const target = await startTarget();
  t.teardown(() => target.cleanup());
  const ps = await criu.pageServer({ imagesDir: images(t), address: '127.0.0.1', port: 0, tls: b });
  t.teardown(() => ps.close());
  const e = await criu
    .dump({
      pid: target.pid,
      imagesDir: images(t),
      pageServer: { address: '127.0.0.1', port: ps.port!, tls: stranger },
    })
    .then(
      () => null,
      (x: unknown) => x as criu.CriuError,
    );
  t.equal(e?.code, 'ERR_CRIU', `the dump fails: ${e?.message.split('\n')[0]}`);
  await t.rejects(ps.exited, { code: 'ERR_CRIU' }, 'the page server fails the handshake');
  t.match(e?.logTail ?? '', /tls|TLS|page server/i, "CRIU's log says why");
  t.equal((await target.verify()).ok, true, 'the process runs on, memory intact');
});

void t.test('lazy dump and lazy-pages over mutual TLS; every page arrives', async (t) => {
  const { a, b } = await identities();
  const { target, restored, dir } = await scene(t, { mib: 8 });
  const work = workFolder(t);
  const port = 21000 + (process.pid % 20000);
  const ld = await criu.dumpLazy({
    pid: target.pid,
    imagesDir: dir,
    pageServer: { address: '127.0.0.1', port, tls: a },
  });
  await ld.imagesReady;
  const lp = await criu.lazyPages({
    imagesDir: dir,
    workDir: work,
    pageServer: { address: '127.0.0.1', port, tls: b },
  });
  t.teardown(() => lp.close());
  const r = await criu.restore({ imagesDir: dir, workDir: work, lazyPages: true });
  restored.push(r.pid);
  await ld.done;
  await lp.exited;
  t.equal((await target.verify(r.pid)).ok, true, 'the pattern is intact');
  await until(() => !alive(target.pid), 30_000, 'the source process ends once its pages moved');
});

void t.test('bad tls options are refused before CRIU starts', async (t) => {
  const dir = images(t);
  for (const [what, tls, code] of [
    ['not an object', 'yes', 'ERR_INVALID_ARG_TYPE'],
    ['no key', { cert: '/x', caCert: '/y' }, 'ERR_INVALID_ARG_TYPE'],
    ['verifyName not a boolean', { cert: '/x', key: '/y', caCert: '/z', verifyName: 1 }, 'ERR_INVALID_ARG_TYPE'],
  ] as [string, unknown, string][]) {
    await t.rejects(
      criu.dump({ pid: 1, imagesDir: dir, pageServer: { address: '127.0.0.1', port: 1, tls: tls as criu.CriuTls } }),
      { code },
      what,
    );
    await t.rejects(
      criu.lazyPages({ imagesDir: dir, pageServer: { address: '127.0.0.1', port: 1, tls: tls as criu.CriuTls } }),
      { code },
      `lazyPages: ${what}`,
    );
  }
});
