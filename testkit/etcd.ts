// A real etcd for a test: its own folder under the temp dir, free loopback ports, stopped by pid at
// the test's end and, as a last resort, when this process exits.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEtcd, type EtcdServer, type EtcdTls } from '../lib/cluster/etcd-server.js';
import { onExit } from './cleanup.js';

export async function testEtcd(
  t: { teardown(f: () => unknown): void },
  opts: { tls?: EtcdTls; dir?: string } = {},
): Promise<EtcdServer> {
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sos-etcd-'));
  const etcd = await startEtcd({ dir, tls: opts.tls });
  const cancel = onExit(() => {
    try {
      process.kill(etcd.pid, 'SIGKILL');
    } catch {
      // gone
    }
  });
  t.teardown(async () => {
    await etcd.stop(5000);
    cancel();
    if (!opts.dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  return etcd;
}
