// The test network: nodes on one L2 segment reach each other, an address
// moves between namespaces, nothing lands on the host, close() removes it all.
import t from 'tap';
import fs from 'node:fs';
import { exec } from '../../lib/exec.js';
import { makeNet } from '../../testkit/netns.js';
import { startEchoPeer } from '../../testkit/workloads.js';

/** Connect from `netns` to host:port, send a line, return what came back. */
async function echoFrom(netns: string, host: string, port: number, text: string): Promise<string> {
  const script = `exec 3<>/dev/tcp/${host}/${port} && printf '%s\\n' "$1" >&3 && head -n1 <&3`;
  const stdout = await exec('bash', ['-c', script, 'echo', text], { netns, timeout: 20_000 });
  return stdout.trim();
}

const hostLinks = async (): Promise<string> =>
  (await exec('ip', ['-o', 'link', 'show']))
    .replace(/\\.*$/gm, '')
    .split('\n')
    .map((l) => l.split(':')[1])
    .sort()
    .join(',');

void t.test('three nodes reach each other over the bridge; the host keeps its interfaces', async (t) => {
  const links = await hostLinks();
  const net = await makeNet(3);
  t.teardown(() => net.close());
  t.equal(await hostLinks(), links, 'no interface added on the host');
  t.match(net.prefix, /^10\.\d+\.\d+$/);
  t.same(
    net.nodes.map((n) => n.addr),
    [1, 2, 3].map((i) => `${net.prefix}.${i}`),
  );
  const peers = await Promise.all(net.nodes.map((n) => startEchoPeer({ netns: n.netns, host: n.addr, port: 0 })));
  t.teardown(() => Promise.all(peers.map((p) => p.close())));
  for (const [i, from] of net.nodes.entries())
    for (const [j, to] of net.nodes.entries())
      if (i !== j) t.equal(await echoFrom(from.netns, to.addr, peers[j].port, `${i}->${j}`), `${i}->${j}`);
});

void t.test('an address moves between namespaces (with the neighbour caches flushed)', async (t) => {
  const net = await makeNet(3);
  const [a, b, c] = net.nodes;
  const own = net.spareAddr(0);
  await net.addAddr(a, own);
  const onA = await startEchoPeer({ netns: a.netns, host: own, port: 0 });
  t.equal(await echoFrom(c.netns, own, onA.port, 'to a'), 'to a');
  await onA.close();

  await net.moveAddr(own, a, b);
  const addrs = async (netns: string): Promise<string> =>
    await exec('ip', ['-n', netns, '-o', 'addr', 'show', 'dev', 'eth0']);
  t.notMatch(await addrs(a.netns), ` ${own}/`);
  t.match(await addrs(b.netns), ` ${own}/`);
  const onB = await startEchoPeer({ netns: b.netns, host: own, port: onA.port });
  t.teardown(() => onB.close());
  t.equal(await echoFrom(c.netns, own, onB.port, 'to b'), 'to b');

  const names = [net.bridge!, ...net.nodes.map((n) => n.netns)];
  await net.close();
  await net.close();
  const left = await exec('ip', ['netns', 'list']);
  for (const n of names) t.notMatch(left, new RegExp(`^${n}\\b`, 'm'), `${n} removed`);
  t.notOk(fs.existsSync(`/run/netns/${names[0]}`));
});
