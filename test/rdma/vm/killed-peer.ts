// The check both RdmaConnection flavours share: the peer process is killed
// while 64 READs are in flight.
import type { Test } from 'tap';
import type * as rdma from '../../../lib/rdma/index.js';
import type { LineProcess } from '../../../testkit/line-process.js';

/** Every pending READ settles (a result or a typed error), the connection closes, later use is ERR_CLOSED. */
export async function readsWhilePeerKilled(t: Test, conn: rdma.RdmaConnection, peer: LineProcess): Promise<void> {
  const closed = new Promise<void>((r) => conn.once('close', () => r()));
  const ops: Promise<void>[] = [];
  for (let i = 0; i < 64; i++) ops.push(conn.read((i % 16) * 65536, 65536, (i % 16) * 65536));
  peer.proc.kill('SIGKILL');
  const results = await Promise.allSettled(ops);
  await closed;
  t.ok(
    results.every((r) => r.status === 'fulfilled' || (r.reason as { code?: string }).code !== undefined),
    'each operation settled with a result or a typed error',
  );
  await t.rejects(conn.read(0, 8), { code: 'ERR_CLOSED' });
}
