// RdmaConnection and rdma_cm misuse on the host running the suite: a device that is not there fails
// listen() and connect() at once with a typed error naming it, a CmId is not constructed directly, and
// every rdma error class is a SosError.
import t from 'tap';
import { once } from 'node:events';
import net from 'node:net';
import { SosError } from '../../lib/errors.js';
import { rdma } from '../../lib/index.js';

const SECRET = 'thirty-two-bytes-at-least-for-tests!';
const DEVICE = 'sos-no-such-device';
// No rdma-core: StateError ERR_NO_RDMA; a kernel without RDMA: SystemError ENOSYS (ibv_get_device_list);
// devices, but none of that name: SystemError ENODEV (ibv_open_device).
const missingDevice = { code: /^(ERR_NO_RDMA|ENOSYS|ENODEV)$/, message: new RegExp(`'${DEVICE}'`) };

void t.test('listen() on a device that is not there rejects, naming it', async (t) => {
  t.notOk(
    rdma.devices().some((d) => d.name === DEVICE),
    'no device has that name',
  );
  const e = await rdma.RdmaConnection.listen('127.0.0.1', 0, { device: DEVICE, secret: SECRET, memory: 4096 }, () =>
    t.fail('no connection'),
  ).catch((x: unknown) => x);
  t.match(e, missingDevice);
  t.ok(e instanceof SosError, `a SosError: ${(e as Error).name} ${(e as SosError).code}`);
});

void t.test('connect() with that device fails before touching the network', async (t) => {
  let reached = false;
  const server = net.createServer((s) => {
    reached = true;
    s.destroy();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const { port } = server.address() as net.AddressInfo;
  await t.rejects(
    rdma.RdmaConnection.connect('127.0.0.1', port, { device: DEVICE, secret: SECRET, memory: 4096 }),
    missingDevice,
  );
  t.notOk(reached, 'no TCP connection was made');
});

void t.test('listen() checks its options before listening', async (t) => {
  await t.rejects(
    rdma.RdmaConnection.listen('127.0.0.1', 0, { device: DEVICE, secret: 'short', memory: 4096 }, () => {}),
    {
      name: 'HandshakeError',
      code: 'ERR_WEAK_SECRET',
    },
  );
  await t.rejects(
    rdma.RdmaConnection.listen(
      '127.0.0.1',
      0,
      { device: 7 as unknown as string, secret: SECRET, memory: 4096 },
      () => {},
    ),
    { code: 'ERR_INVALID_ARG_TYPE' },
  );
});

void t.test('new CmId() is refused: ids come from a channel', async (t) => {
  const Untyped = rdma.CmId as unknown as new (...a: unknown[]) => unknown;
  for (const args of [[], [{}, {}], [undefined, undefined, undefined]]) {
    const e = (() => {
      try {
        new Untyped(...args);
      } catch (x) {
        return x;
      }
    })();
    t.match(e, { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: /createId\(\)/ });
    t.ok(e instanceof SosError);
  }
});

void t.test('every rdma error class is a SosError', async (t) => {
  const classes = Object.entries(rdma).filter(([k, v]) => typeof v === 'function' && /Error$/.test(k));
  t.same(classes.map(([k]) => k).sort(), ['CmError', 'CompletionError', 'HandshakeError', 'RdmaError']);
  for (const [name, C] of classes)
    t.ok(Object.prototype.isPrototypeOf.call(SosError.prototype, (C as { prototype: object }).prototype), name);
  const c = new rdma.CompletionError('RDMA RDMA_READ failed: remote access error', {
    status: 'remote access error',
    opcode: 'RDMA_READ',
  });
  t.match(c, { code: 'ERR_RDMA_COMPLETION', status: 'remote access error', opcode: 'RDMA_READ' });
  t.ok(c instanceof rdma.RdmaError);
});
