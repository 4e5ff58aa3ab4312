// A test network: n network namespaces ("nodes") on one L2 segment, a bridge
// in a namespace of its own with a veth to each node. Names are unique per
// run (sos-<pid>-<k>...), addresses come from a private /24 chosen per run,
// and nothing touches the host's own interfaces. close() removes it all, and
// so does this process's exit.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import { exec } from '../lib/exec.js';
import { dropTo } from '../lib/net/nft.js';
import { onExit } from './cleanup.js';
import { createNet, removeNet } from '../lib/net/netns.js';

export interface TestNode {
  name: string;
  /** The namespace under /run/netns. */
  netns: string;
  /** The node's own address (on eth0, /24). */
  addr: string;
}

export interface TestNet {
  nodes: TestNode[];
  /** The namespace holding the bridge. */
  bridge?: string;
  /** The /24's first three octets, e.g. "10.23.5". */
  prefix: string;
  /** An address of the subnet that no node owns (i >= 0), e.g. for a process's own address. */
  spareAddr(i: number): string;
  /** Add `addr` (/24) to a node's eth0. */
  addAddr(node: TestNode, addr: string): Promise<void>;
  /** Move `addr` from one node to another and flush every node's neighbour cache (a migration's address move). */
  moveAddr(addr: string, from: TestNode, to: TestNode): Promise<void>;
  /**
   * Drop every packet to `addr` that arrives at `node` until the returned
   * function runs. Put it in place before moving a process's address to the
   * node it is restored on: else the peer's next segment, arriving before the
   * socket exists there, is answered with a RST.
   */
  holdAddr(node: TestNode, addr: string): Promise<() => Promise<void>>;
  /** Remove every namespace of this net; idempotent. */
  close(): Promise<void>;
}

let nets = 0;
let holds = 0;

async function ip(...args: string[]): Promise<void> {
  await exec('ip', args);
}

const NAME = /^sos-(\d+)-\d+(?:br|n\d+)$/;

/** Namespaces this helper left behind in runs whose process is gone (killed with SIGKILL). */
async function removeStale(): Promise<void> {
  const stdout = await exec('ip', ['netns', 'list']);
  for (const line of stdout.split('\n')) {
    const name = line.split(' ')[0];
    const m = NAME.exec(name);
    if (!m) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch {
      await ip('netns', 'del', name).catch(() => {});
    }
  }
}

/** n namespaces on one bridge, each with its own address in a private /24 chosen per run. */
export async function makeNet(n: number, opts: { prefix?: string } = {}): Promise<TestNet> {
  if (!Number.isInteger(n) || n < 1 || n > 90) throw new TypeError('n must be an integer from 1 to 90');
  const prefix = opts.prefix ?? `10.${crypto.randomInt(1, 255)}.${crypto.randomInt(0, 256)}`;
  if (!/^\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(prefix)) throw new TypeError(`prefix must be three octets, got '${prefix}'`);
  await removeStale();
  const base = `sos-${process.pid}-${nets++}`;
  const names = [`${base}br`, ...Array.from({ length: n }, (_, i) => `${base}n${i}`)];
  const forget = onExit(() => {
    for (const name of names) spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  });
  let layout;
  try {
    layout = await createNet({ base, n, prefix });
  } catch (e) {
    forget();
    throw e;
  }
  const { nodes, bridge } = layout;
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      await removeNet(layout);
      forget();
    })();
    return closed;
  };
  return {
    nodes,
    bridge,
    prefix,
    spareAddr: (i) => {
      if (!Number.isInteger(i) || i < 0 || 100 + i > 254) throw new TypeError('spareAddr(i): i from 0 to 154');
      return `${prefix}.${100 + i}`;
    },
    addAddr: (node, addr) => ip('-n', node.netns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0'),
    moveAddr: async (addr, from, to) => {
      await ip('-n', from.netns, 'addr', 'del', `${addr}/24`, 'dev', 'eth0');
      await ip('-n', to.netns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0');
      for (const x of nodes) await ip('-n', x.netns, 'neigh', 'flush', 'all');
    },
    holdAddr: async (node, addr) => {
      if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(addr)) throw new TypeError(`not an IPv4 address: '${addr}'`);
      return dropTo(addr, `sos_hold_${holds++}`, { netns: node.netns });
    },
    close,
  };
}
