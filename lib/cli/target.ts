/**
 * Which sosd answers a command about a node. Without a node: the local one (sosd-socket.ts). A node
 * of a local cluster (`sosctl cluster up`): its unix socket, which the host reaches though the node
 * lives in a network namespace. Any other node: its mutual-TLS API (the address and port its node
 * record publishes), with an operator certificate of the cluster folder (`--dir`, $SOS_CLUSTER_DIR,
 * /etc/serverlessos/cluster).
 */
import path from 'node:path';
import { ClusterError } from '../cluster/errors.js';
import { loadMember } from '../cluster/folder.js';
import { storeFromFolder } from '../cluster/join.js';
import { localCluster } from '../cluster/local.js';
import { listNodes } from '../cluster/membership.js';
import { request } from '../daemon/client.js';
import { connectNode } from '../daemon/remote.js';
import { DEFAULT_LOCAL_DIR } from './local-dir.js';
import { sosdSocket } from './sosd-socket.js';

export interface Target {
  /** The node's name, or 'local' for the local sosd. */
  readonly name: string;
  call(op: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<unknown>;
  close(): void;
}

export interface TargetOptions {
  socket?: string;
  dir?: string;
  /** The operator certificate's name in the cluster folder (default 'operator'). */
  as?: string;
}

const viaSocket = (name: string, socket: string): Target => ({
  name,
  call: (op, args = {}, timeoutMs = 30_000) => request(op, args, socket, timeoutMs),
  close: () => undefined,
});

/** The cluster folder `node` belongs to: a local cluster's own, else --dir, $SOS_CLUSTER_DIR or the default. */
export function clusterFolderOf(node: string, o: TargetOptions = {}): string {
  const local = localCluster(DEFAULT_LOCAL_DIR);
  if (local?.nodes.some((n) => n.name === node)) return path.join(local.dir, 'cluster');
  return o.dir ?? process.env.SOS_CLUSTER_DIR ?? '/etc/serverlessos/cluster';
}

/** The operator's credentials for connections to `node` that are not sosd's API (its memory node). */
export function operatorTlsFor(node: string, o: TargetOptions = {}) {
  const m = loadMember(clusterFolderOf(node, o), 'operator', o.as ?? 'operator');
  return { caPem: m.caPem, certPem: m.certPem, keyPem: m.keyPem, crlPem: m.crlPem, cluster: m.cluster };
}

/** The sosd of `node` (the local one when undefined). */
export async function sosdOf(node: string | undefined, o: TargetOptions = {}): Promise<Target> {
  if (node === undefined) return viaSocket('local', sosdSocket(o.socket));
  const local = localCluster(DEFAULT_LOCAL_DIR)?.nodes.find((n) => n.name === node);
  if (local) return viaSocket(node, local.socket);
  const dir = clusterFolderOf(node, o);
  const store = storeFromFolder(dir, 'operator', o.as ?? 'operator');
  let rec;
  try {
    rec = (await listNodes(store)).get(node);
  } finally {
    store.close();
  }
  if (!rec) throw new ClusterError(`no live node ${node} in the cluster of ${dir}`, { code: 'ERR_NOT_FOUND' });
  const c = await connectNode(dir, rec, { role: 'operator', name: o.as ?? 'operator' });
  return {
    name: node,
    call: (op, args = {}, timeoutMs = 30_000) => c.request(op, args, { timeoutMs }),
    close: () => c.close(),
  };
}
