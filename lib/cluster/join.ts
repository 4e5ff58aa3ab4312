/**
 * A member joining from a cluster folder: its certificate opens the store (mutual TLS when etcd is
 * https), its membership lease holds its record, and a node publishes telemetry under the lease.
 * What `sosd --cluster-dir` and `sosctl` call; close() leaves (the lease is revoked at once).
 */
import { loadConfig, loadMember } from './folder.js';
import { Member } from './membership.js';
import { openStore, type Store } from './store.js';
import { TelemetryPublisher, type PublisherOptions } from './telemetry.js';
import type { Role } from './identity.js';
import { ClusterError } from './errors.js';

/** The store, opened with `role`/`name`'s certificate from the cluster folder `dir`. */
export function storeFromFolder(dir: string, role: Role, name: string): Store {
  const config = loadConfig(dir);
  if (config.etcd.length === 0)
    throw new ClusterError(`${dir}/cluster.json names no etcd endpoint: set one (sosctl cluster init --etcd URL)`, {
      code: 'ERR_CLUSTER_FOLDER',
    });
  const tls = config.etcd.some((u) => u.startsWith('https:')) ? loadMember(dir, role, name) : undefined;
  return openStore({ endpoints: config.etcd, cluster: config.cluster, tls, serverName: config.etcdServerName });
}

export interface ClusterNode {
  readonly store: Store;
  readonly member: Member;
  readonly telemetry: TelemetryPublisher;
  /** Leave: the lease is revoked, the node's keys vanish at once. Idempotent. */
  close(): Promise<void>;
  /** Stop without leaving (a daemon restart): the record stays up to a TTL for `resumeLease`. Idempotent. */
  detach(): void;
}

export async function joinCluster(opts: {
  dir: string;
  name: string;
  facts?: Record<string, unknown>;
  ttlSeconds?: number;
  telemetry?: PublisherOptions;
  /** The lease id a previous run kept (Member.join's resumeLease). */
  resumeLease?: string;
}): Promise<ClusterNode> {
  const store = storeFromFolder(opts.dir, 'node', opts.name);
  let member: Member;
  try {
    member = await Member.join(store, {
      name: opts.name,
      facts: opts.facts,
      ttlSeconds: opts.ttlSeconds,
      resumeLease: opts.resumeLease,
    });
  } catch (e) {
    store.close();
    throw e;
  }
  const telemetry = new TelemetryPublisher(member, opts.telemetry);
  void telemetry.tick();
  let closed: Promise<void> | null = null;
  let detached = false;
  return {
    store,
    member,
    telemetry,
    close: () =>
      (closed ??= (async () => {
        telemetry.stop();
        await member.leave();
        store.close();
      })()),
    detach: () => {
      if (detached || closed) return;
      detached = true;
      telemetry.stop();
      member.detach();
      store.close();
    },
  };
}
