// Inside the soft-RoCE VM: arbitrary calls on every native RDMA object
// (verbs and rdma_cm), live and closed, in child processes (seeded): each
// must finish cleanly — typed errors only, no crash, no hang.
import t from 'tap';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fuzz-child.js');

for (const seed of [1, 2, 3, 4, 5]) {
  void t.test(`seed ${seed}`, async (t) => {
    const r = spawnSync(process.execPath, ['--expose-gc', child, String(seed), '1500'], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    t.equal(r.signal, null, 'no crash or hang');
    t.equal(r.status, 0, 'exit 0', { stderr: r.stderr.slice(-3000) });
    t.match(r.stdout, /done/);
  });
}
