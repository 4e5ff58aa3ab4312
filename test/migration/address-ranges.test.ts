// sosd's --move-ranges: which addresses may move with a process (IPv4 and IPv6 CIDR blocks).
import t from 'tap';
import { AddressRanges } from '../../lib/migration/address-ranges.js';

void t.test('addresses inside the ranges may move, no other', async (t) => {
  const r = AddressRanges.parse('10.1.2.128/26, fd00:1::/64');
  t.same(r.ranges, ['10.1.2.128/26', 'fd00:1::/64']);
  t.ok(r.has('10.1.2.128') && r.has('10.1.2.191'), 'both ends of the IPv4 block');
  t.notOk(r.has('10.1.2.127') || r.has('10.1.2.192'), 'just outside it');
  t.ok(r.has('fd00:1::42'), 'in the IPv6 block');
  t.notOk(r.has('fd00:2::42'), 'outside it');
  t.notOk(r.has('::ffff:10.1.2.130'), 'an IPv4-mapped IPv6 address is another address');
  t.notOk(r.has('not an address'));
  t.equal(r.refusal('10.1.2.130', 'node1'), null);
  t.match(
    r.refusal('10.9.9.9', 'node1'),
    /10\.9\.9\.9 is outside node1's move ranges \(10\.1\.2\.128\/26, fd00:1::\/64\)/,
  );
  t.equal(String(r), '10.1.2.128/26,fd00:1::/64');
});

void t.test('none: nothing moves, and it says so', async (t) => {
  for (const r of [AddressRanges.none, AddressRanges.parse('')]) {
    t.ok(r.empty);
    t.notOk(r.has('10.0.0.1'));
    t.match(r.refusal('10.0.0.1', 'node0'), /node0 lets no address move \(its sosd has no --move-ranges\)/);
  }
});

void t.test('malformed ranges are refused, naming the entry', async (t) => {
  for (const bad of ['10.1.2.0', '10.1.2.0/33', 'fd00::/129', 'x/8', '10.1.2.0/24,nope', '/24', '10.1.2.0/-1'])
    t.throws(
      () => AddressRanges.parse(bad),
      { code: 'ERR_INVALID_ARG_VALUE', message: /is not an address range/ },
      bad,
    );
  t.throws(() => AddressRanges.parse(Array(257).fill('10.0.0.0/8').join(',')), { code: 'ERR_INVALID_ARG_VALUE' });
});
