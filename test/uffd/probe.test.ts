import t from 'tap';
import { FaultEngine, PageSource, Region, Userfaultfd, touch } from '../../lib/index.js';

void t.test('probe reports what this kernel offers', async (t) => {
  const s = Userfaultfd.probe();
  t.ok(s.features.has('THREAD_ID'));
  t.ok(s.ioctls.has('API'));
});

void t.test('probe and api results have a JSON form (their Sets and BigInt cannot be stringified)', async (t) => {
  const s = Userfaultfd.probe();
  const json = JSON.parse(JSON.stringify(s)) as { features: string[]; ioctls: string[]; rawFeatures: string };
  t.same(json.features, [...s.features]);
  t.same(json.ioctls, [...s.ioctls]);
  t.equal(BigInt(json.rawFeatures), s.rawFeatures, 'rawFeatures as a hex string');
  t.match(json.rawFeatures, /^0x[0-9a-f]+$/);
  t.same(Object.keys(s).sort(), ['features', 'ioctls', 'rawFeatures'], 'toJSON is not an enumerable field');

  using u = Userfaultfd.open({ handshake: false });
  const api = u.api(['THREAD_ID']);
  t.same(JSON.parse(JSON.stringify(api)), {
    features: [...api.features],
    available: [...api.available],
    ioctls: [...api.ioctls],
  });
});

void t.test('engine stats are plain numbers: JSON round-trips them', async (t) => {
  using u = Userfaultfd.open();
  using r = Region.anonymous(16 * 4096);
  u.register(r);
  using engine = new FaultEngine(u).serve(r, PageSource.zero()).start();
  await touch(r);
  const live = engine.stats();
  t.same(JSON.parse(JSON.stringify(live)), live);
  const final = engine.stop();
  t.equal(final.pages, 16);
  t.same(JSON.parse(JSON.stringify(final)), final);
  u.unregister(r);
});
