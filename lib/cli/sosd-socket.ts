/**
 * Which sosd a command talks to: `--socket PATH`, else `$SOS_SOCKET`, else the first node of a local
 * cluster that is up (`sosctl cluster up`, in `$SOS_LOCAL_DIR` or its default folder), else the
 * node's own sosd at /run/serverlessos/sosd.sock. A local cluster's sosds live in network
 * namespaces: their unix sockets are how the host reaches them.
 */
import fs from 'node:fs';
import { Option } from 'commander';
import { localCluster } from '../cluster/local.js';
import { DEFAULT_SOCKET } from '../daemon/protocol.js';
import { DEFAULT_LOCAL_DIR } from './local-dir.js';

export const socketOption = () =>
  new Option(
    '--socket <path>',
    `sosd's socket (default: $SOS_SOCKET, a local cluster's first node, or ${DEFAULT_SOCKET})`,
  );

export function sosdSocket(explicit?: string): string {
  if (explicit) return explicit;
  if (process.env.SOS_SOCKET) return process.env.SOS_SOCKET;
  const local = localCluster(DEFAULT_LOCAL_DIR);
  const first = local?.nodes.find((n) => fs.existsSync(n.socket));
  return first?.socket ?? DEFAULT_SOCKET;
}
