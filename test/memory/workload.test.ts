// The native workload of the memory benchmark: deterministic results whatever the thread count.
import t from 'tap';
import { Region } from '../../lib/index.js';
import { workload } from '../../lib/memory/workload.js';

const MiB = 1 << 20;

void t.test('fill, update and scan give the same checksum with 1 and 3 threads', async (t) => {
  const sums: bigint[] = [];
  for (const threads of [1, 3]) {
    using r = Region.anonymous(16 * MiB);
    const f = await workload(r, 'fill', { seed: 7, threads });
    t.equal(f.ops, (16 * MiB) / 8);
    const u = await workload(r, 'update', { ops: 100_000, seed: 9, threads });
    t.equal(u.ops, 100_000);
    t.equal(u.bytes, 800_000);
    const s = await workload(r, 'scan', { threads });
    t.ok(s.elapsedNs > 0);
    sums.push(s.checksum);
  }
  t.equal(sums[0], sums[1], 'same bytes after the same fill and updates');
  using r = Region.anonymous(16 * MiB);
  await workload(r, 'fill', { seed: 8 });
  t.not((await workload(r, 'scan')).checksum, sums[0], 'another seed, another checksum');
});

void t.test('misuse', async (t) => {
  t.throws(() => workload({} as Region, 'scan'), { code: 'ERR_INVALID_ARG_TYPE' });
  using r = Region.anonymous(MiB);
  t.throws(() => workload(r, 'nope' as 'scan'), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => workload(r, 'scan', { threads: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  r.close();
  t.throws(() => workload(r, 'scan'), { code: 'ERR_CLOSED' });
});
