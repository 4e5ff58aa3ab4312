/**
 * sosd's cluster role: join from the cluster folder (`--cluster-dir`, `--name`), publish the node's
 * facts and telemetry under its lease, and answer the cluster ops on the daemon's API.
 *
 * A restart is not a leave: the lease id is kept on fsync'd disk in the state folder, a stopping sosd
 * only stops renewing (detach), and the next one takes its record back under the same lease (resume)
 * while etcd still has it, so the others never see the node go.
 */
import fs from 'node:fs';
import path from 'node:path';
import { joinCluster, type ClusterNode } from '../cluster/join.js';
import { listNodes } from '../cluster/membership.js';
import { listTelemetry } from '../cluster/telemetry.js';
import { removeDurable, writeDurable } from '../durable.js';
import { nodeInfo } from '../node-info.js';
import { NO_ARGS, type DaemonLogger, type OpSpec } from './server.js';

export interface ClusterServiceOptions {
  /** The cluster folder (cluster.json, the CA, this node's certificate). */
  dir: string;
  name: string;
  /** The address peers reach this node at. */
  addr: string;
  /** The port of this node's mutual-TLS API (published for peers), or null when it serves none. */
  apiPort: number | null;
  /** The port of this node's migration agent (published for peers), or null when it runs none. */
  migrationPort?: number | null;
  /** The port of this node's memory node (published for peers), or null when it runs none. */
  memoryPort?: number | null;
  /** Where the lease id is kept across restarts. */
  stateDir: string;
  /** Lease TTL in seconds: a dead node is noticed within about this long. */
  ttlSeconds: number;
  log: DaemonLogger;
}

interface LeaseFile {
  cluster: string;
  name: string;
  lease: string;
}

const LEASE_FILE = 'cluster-lease.json';

function readLease(file: string): LeaseFile | null {
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<LeaseFile>;
    return typeof v.lease === 'string' && typeof v.name === 'string' && typeof v.cluster === 'string'
      ? (v as LeaseFile)
      : null;
  } catch {
    return null;
  }
}

export class ClusterService {
  private writes: Promise<void> = Promise.resolve();

  private constructor(
    readonly node: ClusterNode,
    private readonly opts: ClusterServiceOptions,
    private readonly leaseFile: string,
  ) {}

  static async start(opts: ClusterServiceOptions): Promise<ClusterService> {
    const info = nodeInfo();
    const leaseFile = path.join(opts.stateDir, LEASE_FILE);
    const kept = readLease(leaseFile);
    const node = await joinCluster({
      dir: opts.dir,
      name: opts.name,
      ttlSeconds: opts.ttlSeconds,
      ...(kept && kept.name === opts.name ? { resumeLease: kept.lease } : {}),
      // Facts are read by every watcher: a handful of small values, not the whole probe.
      facts: {
        addr: opts.addr,
        ...(opts.apiPort ? { api: opts.apiPort } : {}),
        ...(opts.migrationPort ? { migration: opts.migrationPort } : {}),
        ...(opts.memoryPort ? { memory: opts.memoryPort } : {}),
        cpus: info.cpus,
        memoryBytes: info.memoryBytes,
        kernel: info.kernel,
        userfaultfd: info.userfaultfd.available,
        cgroup: info.cgroup.v2 ? 'v2' : 'v1',
      },
    });
    const s = new ClusterService(node, opts, leaseFile);
    const m = node.member;
    if (kept?.cluster && kept.cluster !== node.store.cluster)
      opts.log.warn({ kept: kept.cluster }, 'the kept lease was of another cluster: joined afresh');
    const resumed = kept?.lease === m.leaseId;
    opts.log.info({ name: m.name, lease: m.leaseHex, revision: m.revision, resumed }, 'joined the cluster');
    await s.keep();
    m.on('lost', (e) => opts.log.warn({ code: e.code }, `cluster membership lost: ${e.message}`));
    m.on('joined', (j) => {
      opts.log.info({ lease: j.lease, revision: j.revision }, 'joined the cluster again');
      void s.keep();
    });
    return s;
  }

  /** Keep the current lease id on disk (serialised: the last write is the newest lease). */
  private keep(): Promise<void> {
    const m = this.node.member;
    const v: LeaseFile = { cluster: this.node.store.cluster, name: m.name, lease: m.leaseId };
    this.writes = this.writes
      .then(() => writeDurable(this.leaseFile, JSON.stringify(v) + '\n'))
      .catch((e: Error) => this.opts.log.error({ err: e }, `cannot keep the lease id: ${e.message}`));
    return this.writes;
  }

  /** The cluster ops this service answers. */
  ops(): OpSpec[] {
    const m = this.node.member;
    return [
      {
        op: 'cluster.status',
        schema: NO_ARGS,
        roles: ['node', 'orchestrator', 'operator'],
        handler: () => ({
          name: m.name,
          cluster: this.node.store.cluster,
          alive: m.alive,
          lease: m.leaseHex,
          revision: m.revision,
          ttlSeconds: m.ttlSeconds,
          addr: this.opts.addr,
        }),
      },
      {
        op: 'cluster.nodes',
        schema: NO_ARGS,
        roles: ['orchestrator', 'operator'],
        handler: async () => {
          const [nodes, tele] = await Promise.all([listNodes(this.node.store), listTelemetry(this.node.store)]);
          return [...nodes.values()].map((n) => ({ ...n, telemetry: tele.get(n.name) ?? null }));
        },
      },
    ];
  }

  /** Stop for a restart: renewals stop, the lease and its id on disk stay. Idempotent. */
  async detach(): Promise<void> {
    this.node.detach();
    await this.writes;
  }

  /** Leave the cluster: the lease is revoked (the node's keys vanish at once) and forgotten. Idempotent. */
  async leave(): Promise<void> {
    await this.node.close();
    await this.writes;
    await removeDurable(this.leaseFile);
  }
}
