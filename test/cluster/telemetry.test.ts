// Telemetry against a real etcd: a member publishes its figures under its lease; a source's figure
// that changes is written at the next sample; nothing is written while the member is not live; the
// key vanishes with the member.
import t from 'tap';
import os from 'node:os';
import { openStore } from '../../lib/cluster/store.js';
import { Member } from '../../lib/cluster/membership.js';
import { TelemetryPublisher, listTelemetry, sample } from '../../lib/cluster/telemetry.js';
import { testEtcd } from '../../testkit/etcd.js';

void t.test('sample reads this machine', (t) => {
  const a = sample(null);
  t.equal(a.t.cpus, os.availableParallelism());
  t.ok(a.t.memTotal > 0 && a.t.memAvail > 0 && a.t.memAvail <= a.t.memTotal, 'memory figures');
  t.equal(a.t.memTotal % (1 << 20), 0, 'MiB-rounded');
  const b = sample(a.now);
  t.ok(b.t.cpu >= 0 && b.t.cpu <= 1, 'cpu is a fraction');
  t.end();
});

void t.test('published under the lease, on change, never while lost', async (t) => {
  const etcd = await testEtcd(t);
  const s = openStore({ endpoints: [etcd.endpoint], cluster: 'tele' });
  t.teardown(() => s.close());
  const m = await Member.join(s, { name: 'node-t', ttlSeconds: 5 });
  let apps = 1;
  const p = new TelemetryPublisher(m, { intervalMs: 60_000, sources: [() => ({ apps })] });
  t.teardown(() => p.stop());
  t.equal(await p.tick(), true, 'the first sample is written');
  const first = (await listTelemetry(s)).get('node-t');
  t.match(first, { v: 1, apps: 1, cpus: os.availableParallelism() });
  apps = 2;
  t.equal(await p.tick(), true, "a source's changed figure is written");
  t.equal((await listTelemetry(s)).get('node-t')?.apps, 2);
  t.equal(p.writes, 2);
  t.ok(p.bytes > 0 && p.bytes / p.writes < 512, `a write is small (${p.bytes / p.writes} bytes)`);
  await m.leave();
  apps = 3;
  t.equal(await p.tick(), false, 'nothing written once the member left');
  t.same([...(await listTelemetry(s)).keys()], [], 'the telemetry vanished with the lease');
});
