/**
 * Membership by lease, after Kubernetes node leases: a member holds `nodes/<name>` bound to a lease
 * it renews every ttl/3. Our own renewal loop, not etcd3's auto keep-alive, which keeps saying
 * "alive" while the network is down (microsoft/etcd3#110): the lease counts as lost as soon as no
 * renewal has been acknowledged for a whole TTL, or etcd says it expired. A lost member stops acting
 * as one ('lost'), then joins again with a fresh lease ('joined'), since the cluster may have given
 * its work away meanwhile. The key's revision at join fences what the member writes under that lease.
 */
import { EventEmitter } from 'node:events';
import { argValue } from '../errors.js';
import { ClusterError } from './errors.js';
import { NODES, nodeKey } from './keys.js';
import { parseNodeRecord } from './records.js';
import type { Store } from './store.js';

/** What a member says about itself in `nodes/<name>`. */
export interface NodeRecord {
  v: 1;
  name: string;
  /** The lease (hex) the record is bound to. */
  lease: string;
  /** When this lease was joined (ms since the epoch). */
  joinedAt: number;
  /** Anything else the member publishes (address, capabilities…); kept small. */
  [k: string]: unknown;
}

export interface JoinOptions {
  name: string;
  /** Published with the record (kept small: it is read by every watcher). */
  facts?: Record<string, unknown>;
  /** Lease TTL in seconds (default 10, as Nomad's heartbeat; at least 2). */
  ttlSeconds?: number;
}

export interface MemberEvents {
  /** The lease is gone or unconfirmed: stop acting as a member until 'joined'. */
  lost: [ClusterError];
  /** Joined (again) under a fresh lease. */
  joined: [{ lease: string; revision: string }];
  /** etcd acknowledged a renewal. */
  renewed: [{ ttlSeconds: number }];
}

/** A member's name: lowercase, host-like. */
export const NODE_NAME = /^[a-z0-9][a-z0-9.-]{0,62}$/;

export class Member extends EventEmitter<MemberEvents> {
  readonly name: string;
  readonly ttlSeconds: number;
  private facts: Record<string, unknown>;
  /** The lease's id (etcd's decimal string); '' before the first join. */
  private lid = '';
  private rev = '';
  private joinedAt = 0;
  private lastAck = 0;
  /** When the last call etcd acknowledged set out (a renewal or the grant): the TTL runs from no earlier. */
  private ackedFrom = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private live = false;

  private constructor(
    private readonly store: Store,
    opts: JoinOptions,
  ) {
    super();
    this.name = opts.name;
    this.ttlSeconds = opts.ttlSeconds ?? 10;
    this.facts = opts.facts ?? {};
  }

  /**
   * Join as `name`: ERR_NODE_NAME_TAKEN when another live lease holds it. With `resumeLease` (the
   * `leaseId` a previous run of this member kept on disk), a restarted daemon takes its record back
   * under the same lease when etcd still has both, so the cluster never sees it leave.
   */
  static async join(store: Store, opts: JoinOptions & { resumeLease?: string }): Promise<Member> {
    if (typeof opts?.name !== 'string' || !NODE_NAME.test(opts.name))
      throw argValue('name must be a lowercase host-like name (a-z, 0-9, ., -)');
    const ttl = opts.ttlSeconds ?? 10;
    if (!Number.isInteger(ttl) || ttl < 2 || ttl > 3600) throw argValue('ttlSeconds must be an integer in [2, 3600]');
    if (opts.resumeLease !== undefined && !/^[1-9]\d{0,19}$/.test(opts.resumeLease))
      throw argValue('resumeLease must be a lease id (decimal)');
    const m = new Member(store, opts);
    // Not resumable (expired, or etcd slow to answer): a fresh lease, which may still take the record
    // from the kept one — ours — rather than call our own name taken.
    if (!(opts.resumeLease && (await m.resume(opts.resumeLease)))) await m.acquire(opts.resumeLease ?? null);
    m.schedule();
    return m;
  }

  /** Whether the lease is held and confirmed within its TTL. */
  get alive(): boolean {
    return this.live && !this.closed;
  }

  /**
   * Until when (ms since the epoch) the lease is surely held: the TTL from the moment the last
   * acknowledged renewal set out, since etcd restarted the TTL no earlier. 0 when not a live member.
   * What must end before the cluster may take this member for dead (a workload another node may
   * restore) ends by then.
   */
  get validUntil(): number {
    return this.alive ? this.ackedFrom + this.ttlSeconds * 1000 : 0;
  }

  /** The lease's id as etcd's decimal string (what a transaction compares against; keep it to resume). */
  get leaseId(): string {
    return this.lid;
  }

  /** The lease the member's keys are bound to (hex, as etcdctl prints it). */
  get leaseHex(): string {
    return this.lid ? BigInt(this.lid).toString(16) : '';
  }

  /** The revision of the record's write under the current lease: the member's fencing token. */
  get revision(): string {
    return this.rev;
  }

  /** Bind a key to the membership lease (telemetry, a service's address): it vanishes with the member. */
  async putLeased(key: string, value: string): Promise<void> {
    if (!this.alive) throw new ClusterError(`${this.name} is not a live member`, { code: 'ERR_LEASE_LOST' });
    await this.store.kv.put(key).value(value).lease(this.lid);
  }

  /** Replace the published facts. */
  async update(facts: Record<string, unknown>): Promise<void> {
    this.facts = facts;
    await this.putLeased(nodeKey(this.name), JSON.stringify(this.record(this.lid)));
  }

  /** Leave the cluster: the lease is revoked, the member's keys vanish at once. Idempotent. */
  async leave(): Promise<void> {
    const id = this.stop();
    if (id) await this.revoke(id); // unreachable etcd: the lease expires on its own
  }

  /**
   * Stop renewing without revoking (a daemon stopping for a restart): the record stays for up to a
   * TTL, and a restarted member given `resumeLease` takes it back. Idempotent.
   */
  detach(): void {
    this.stop();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.leave();
  }

  private stop(): string {
    if (this.closed) return '';
    this.closed = true;
    this.live = false;
    if (this.timer) clearTimeout(this.timer);
    return this.lid;
  }

  private record(lease: string): NodeRecord {
    return { ...this.facts, v: 1, name: this.name, lease: BigInt(lease).toString(16), joinedAt: this.joinedAt };
  }

  private async revoke(id: string): Promise<void> {
    await this.store.kv.leaseClient.leaseRevoke({ ID: id }, { deadline: Date.now() + 5000 }).catch(() => {});
  }

  /** One renewal of lease `id`: its remaining TTL (0: etcd says it expired); rejects when etcd does not answer by `deadline`. */
  private async renew(id: string, deadline: number): Promise<number> {
    const bound = Math.max(0, deadline - Date.now()) + 1000;
    const stream = await within(this.store.kv.leaseClient.leaseKeepAlive({ deadline }), bound);
    try {
      // Bounded beside etcd's deadline: a stream that never says anything (an etcd restarting under the
      // client) must not stop the renewal loop for good.
      const res = await within(
        new Promise<{ TTL: string }>((resolve, reject) => {
          stream.on('data', resolve);
          stream.on('error', reject);
          stream.write({ ID: id });
        }),
        bound,
      );
      return Number(res.TTL);
    } finally {
      stream.end();
    }
  }

  /** Take the record back under `id` when etcd still has the lease and the record names it. */
  private async resume(id: string): Promise<boolean> {
    let ttl: number;
    const sent = Date.now();
    try {
      ttl = await this.renew(id, sent + 5000);
    } catch {
      return false;
    }
    if (ttl <= 0) return false;
    const key = nodeKey(this.name);
    const kv = this.store.kv;
    this.joinedAt = Date.now();
    const res = await kv
      .if(key, 'Lease', '==', id)
      .then(
        kv
          .put(key)
          .value(JSON.stringify(this.record(id)))
          .lease(id),
      )
      .options({ deadline: Date.now() + 5000 })
      .commit()
      .catch(() => null);
    if (!res?.succeeded) return false;
    this.held(id, res.header.revision, sent);
    return true;
  }

  /** Grant a lease and take the name: free, or still held by `previous` (our own lease, lost but not expired). */
  private async acquire(previous: string | null): Promise<void> {
    let id: string;
    const sent = Date.now();
    // Deadlines on every call: one that waits on an etcd still restarting would hang this
    // member's loop (the next tick never comes) long after etcd is back.
    const options = () => ({ deadline: Date.now() + Math.max(5000, this.ttlSeconds * 1000) });
    try {
      id = (await this.store.kv.leaseClient.leaseGrant({ TTL: this.ttlSeconds, ID: 0 }, options())).ID;
    } catch (e) {
      throw new ClusterError(`etcd did not grant a lease: ${(e as Error).message}`, {
        code: 'ERR_ETCD_UNAVAILABLE',
        cause: e,
      });
    }
    this.joinedAt = Date.now();
    const key = nodeKey(this.name);
    const value = JSON.stringify(this.record(id));
    const kv = this.store.kv;
    // Free, or still ours: a lease that lapsed unconfirmed but has not expired in etcd yet.
    const take = (col: 'Create' | 'Lease', want: number | string) =>
      kv
        .if(key, col, '==', want)
        .then(kv.put(key).value(value).lease(id))
        .else(kv.get(key))
        .options(options())
        .commit();
    let res;
    try {
      res = await take('Create', 0);
      if (!res.succeeded && previous) res = await take('Lease', previous);
    } catch (e) {
      await this.revoke(id);
      throw new ClusterError(`etcd did not answer: ${(e as Error).message}`, {
        code: 'ERR_ETCD_UNAVAILABLE',
        cause: e,
      });
    }
    if (!res.succeeded) {
      await this.revoke(id);
      const held = res.responses[0]?.response_range?.kvs?.[0];
      const owner = held ? BigInt(held.lease).toString(16) : 'unknown';
      throw new ClusterError(`node name ${this.name} is held by another live member (lease ${owner})`, {
        code: 'ERR_NODE_NAME_TAKEN',
      });
    }
    if (previous && previous !== id) void this.revoke(previous);
    this.held(id, res.header.revision, sent);
  }

  private held(id: string, revision: string, sent: number): void {
    this.lid = id;
    this.rev = revision;
    this.lastAck = Date.now();
    this.ackedFrom = sent;
    this.live = true;
    if (this.closed) {
      void this.revoke(id); // left while joining
      return;
    }
    this.emit('joined', { lease: this.leaseHex, revision });
  }

  private schedule(): void {
    if (this.closed) return;
    const every = (this.ttlSeconds * 1000) / 3;
    this.timer = setTimeout(() => void this.tick(every), every);
    this.timer.unref();
  }

  private async tick(every: number): Promise<void> {
    if (this.closed) return;
    if (this.live) {
      let ttl: number | null = null;
      const sent = Date.now();
      try {
        // A deadline on each renewal: a silent network must not leave one hanging past the TTL.
        ttl = await this.renew(this.lid, Date.now() + every);
      } catch {
        ttl = null;
      }
      if (this.closed) return;
      if (ttl !== null && ttl > 0) {
        this.lastAck = Date.now();
        this.ackedFrom = sent;
        this.emit('renewed', { ttlSeconds: ttl });
      }
      const expired = ttl !== null && ttl <= 0;
      if (expired || Date.now() - this.lastAck >= this.ttlSeconds * 1000) {
        this.live = false;
        this.emit(
          'lost',
          new ClusterError(
            expired
              ? `${this.name}'s lease expired in etcd`
              : `${this.name}'s lease renewal was not acknowledged for ${this.ttlSeconds} s`,
            { code: 'ERR_LEASE_LOST' },
          ),
        );
      }
    }
    if (!this.live && !this.closed) {
      // etcd still away, or our name taken: acquire throws, and the next tick tries again.
      await this.acquire(this.lid || null).catch(() => {});
    }
    this.schedule();
  }
}

/** The cluster's live members (their records), by name. */
export async function listNodes(store: Store): Promise<Map<string, NodeRecord>> {
  const all = await store.kv.getAll().prefix(NODES).strings();
  const out = new Map<string, NodeRecord>();
  for (const [k, v] of Object.entries(all)) {
    const name = k.slice(NODES.length);
    try {
      out.set(name, parseNodeRecord<NodeRecord>(name, v));
    } catch {
      // a malformed record (any member can write here) is not acted on
    }
  }
  return out;
}

/** `p`, or a rejection once `ms` passed. */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
