// Machines on one machine: network namespaces on one L2 segment, a bridge in a namespace of its own
// with a veth to each node (made inside the bridge's namespace, the peer end straight in the node's:
// nothing is added to the host's namespace). What `sosctl cluster up` and the test kit build on.
import fs from 'node:fs/promises';
import { exec } from '../exec.js';
import { argValue } from '../errors.js';

export interface NetNode {
  name: string;
  /** The namespace under /run/netns. */
  netns: string;
  /** The node's own address (on eth0, /24). */
  addr: string;
}

export interface NetLayout {
  /** The namespace holding the bridge (br0). */
  bridge: string;
  /** The /24's first three octets, e.g. "10.23.5". */
  prefix: string;
  nodes: NetNode[];
  /** An address on br0 itself (in the bridge's namespace) for a service every node reaches, e.g. etcd. */
  bridgeAddr?: string;
}

async function ip(...args: string[]): Promise<void> {
  await exec('ip', args);
}

const NSFS_MAGIC = 0x6e736673;

/**
 * `ip netns add` for a name whose file under /run/netns may be stale: one whose mount went with the
 * mount namespace that made it (an ended `unshare --mount`) is a plain file that `ip` would take for
 * the namespace, then refuse as an invalid peer. A live namespace of that name is left alone, and
 * `ip netns add` refuses it as before.
 */
async function addNetns(name: string): Promise<void> {
  const file = `/run/netns/${name}`;
  const st = await fs.statfs(file).catch(() => null);
  if (st && st.type !== NSFS_MAGIC) await fs.unlink(file).catch(() => {});
  await ip('netns', 'add', name);
}

/**
 * `n` namespaces named `<base>n<i>` with `<prefix>.<i+1>`, on the bridge `<base>br`; with
 * `bridgeAddr`, br0 gets `<prefix>.254`. Everything made is removed again when a step fails.
 */
export async function createNet(o: {
  base: string;
  n: number;
  prefix: string;
  bridgeAddr?: boolean;
}): Promise<NetLayout> {
  if (!Number.isInteger(o.n) || o.n < 1 || o.n > 90) throw argValue('n must be an integer from 1 to 90');
  if (!/^\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(o.prefix)) throw argValue(`prefix must be three octets, got '${o.prefix}'`);
  if (!/^[a-z0-9-]{1,20}$/.test(o.base)) throw argValue('base must be 1-20 of a-z, 0-9, -');
  const layout: NetLayout = {
    bridge: `${o.base}br`,
    prefix: o.prefix,
    nodes: Array.from({ length: o.n }, (_, i) => ({
      name: `node${i}`,
      netns: `${o.base}n${i}`,
      addr: `${o.prefix}.${i + 1}`,
    })),
    ...(o.bridgeAddr ? { bridgeAddr: `${o.prefix}.254` } : {}),
  };
  const br = layout.bridge;
  // Only what this call made is removed on a failure: a name taken by a live namespace is not ours.
  const made: string[] = [];
  const add = async (name: string) => {
    await addNetns(name);
    made.push(name);
  };
  try {
    await add(br);
    await ip('-n', br, 'link', 'add', 'br0', 'type', 'bridge');
    await ip('-n', br, 'link', 'set', 'br0', 'up');
    await ip('-n', br, 'link', 'set', 'lo', 'up');
    if (layout.bridgeAddr) await ip('-n', br, 'addr', 'add', `${layout.bridgeAddr}/24`, 'dev', 'br0');
    for (const [i, node] of layout.nodes.entries()) {
      await add(node.netns);
      await ip('-n', br, 'link', 'add', `v${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', node.netns);
      await ip('-n', br, 'link', 'set', `v${i}`, 'master', 'br0', 'up');
      await ip('-n', node.netns, 'link', 'set', 'lo', 'up');
      await ip('-n', node.netns, 'addr', 'add', `${node.addr}/24`, 'dev', 'eth0');
      await ip('-n', node.netns, 'link', 'set', 'eth0', 'up');
    }
  } catch (e) {
    for (const name of made) await ip('netns', 'del', name).catch(() => {});
    throw e;
  }
  return layout;
}

/** Remove the namespaces of `layout` (those that exist); idempotent. */
export async function removeNet(layout: Pick<NetLayout, 'bridge' | 'nodes'>): Promise<void> {
  for (const name of [layout.bridge, ...layout.nodes.map((n) => n.netns)])
    await ip('netns', 'del', name).catch(() => {});
}

/** The names of `layout`'s namespaces. */
export const netnsNames = (layout: Pick<NetLayout, 'bridge' | 'nodes'>): string[] => [
  layout.bridge,
  ...layout.nodes.map((n) => n.netns),
];
