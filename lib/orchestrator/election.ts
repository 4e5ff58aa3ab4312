/**
 * One orchestrator at a time: the leader key (`orchestrator/leader`), created only when absent and
 * bound to the candidate's membership lease (lib/cluster/membership.ts renews it and calls it lost
 * when a renewal goes unacknowledged for a TTL, not trusting a keep-alive stream). The key's create
 * revision is the term (fence.ts). Our own loop rather than etcd3's Election, which can elect two
 * leaders after an etcd restart (microsoft/etcd3#158): here the key and its revision are the truth,
 * read again on every pass, and every action is fenced by the term anyway.
 *
 * A leader stops leading ('deposed') when its lease is lost or the key is no longer its term's. A
 * dead leader's key goes with its lease (the TTL, 2 s in a local cluster). Every member watches the
 * key and looks again the moment it changes, so a new leader follows within the TTL and a round
 * trip; the watch costs nothing while the key stands still. A pass every `retryMs` (default 2 s, as
 * client-go's retry) is the safety net for a watch that missed something (an etcd restart).
 */
import { EventEmitter } from 'node:events';
import type { Watcher } from 'etcd3';
import { LEADER } from '../cluster/keys.js';
import type { Member } from '../cluster/membership.js';
import type { Store } from '../cluster/store.js';
import { argValue } from '../errors.js';
import { currentLeader, type Fence } from './fence.js';

export interface ElectionOptions {
  /** How often a candidate looks for a free leader key and a leader confirms its own, besides the watch (default 2000 ms). */
  retryMs?: number;
}

export interface ElectionEvents {
  /** This member leads, under `fence`. */
  elected: [Fence];
  /** It no longer does (the reason). */
  deposed: [string];
}

export class Election extends EventEmitter<ElectionEvents> {
  private term: Fence | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private running: Promise<void> | null = null;
  /** The key changed while a pass ran: another pass follows at once. */
  private again = false;
  private watcher: Watcher | null = null;
  private readonly retryMs: number;

  constructor(
    private readonly store: Store,
    private readonly member: Member,
    opts: ElectionOptions = {},
  ) {
    super();
    this.retryMs = opts.retryMs ?? 2000;
    if (!Number.isInteger(this.retryMs) || this.retryMs < 10 || this.retryMs > 60_000)
      throw argValue('retryMs must be an integer in [10, 60000]');
    member.on('lost', this.onLost);
  }

  /** The fence of the current term while this member leads, else null. */
  get fence(): Fence | null {
    return this.term;
  }

  /** Begin campaigning (idempotent). */
  start(): void {
    if (this.stopped || this.timer || this.running) return;
    this.schedule(0);
  }

  /** Watch the leader key: a change (a put, a delete) means a pass now. */
  private async watch(): Promise<void> {
    if (this.watcher || this.stopped) return;
    try {
      const w = await this.store.kv.watch().key(LEADER).create();
      if (this.stopped) return void (await w.cancel());
      this.watcher = w;
      w.on('put', () => this.soon());
      w.on('delete', () => this.soon());
      w.on('connected', () => this.soon()); // re-established after etcd came back: what changed meanwhile
    } catch {
      // etcd away: the next pass tries again, and the passes go on meanwhile
    }
  }

  private soon(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.schedule(0);
  }

  /** Stop campaigning; a leader resigns (its key deleted, if still its term's) so another takes over at once. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.member.off('lost', this.onLost);
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    await this.watcher?.cancel().catch(() => undefined);
    this.watcher = null;
    const f = this.term;
    if (!f) return;
    this.depose('resigned');
    const kv = this.store.kv;
    await kv
      .if(LEADER, 'Create', '==', f.term)
      .then(kv.delete().key(LEADER))
      .options({ deadline: Date.now() + 5000 })
      .commit()
      .catch(() => undefined); // unreachable etcd: the key goes with the lease
  }

  private readonly onLost = (): void => this.depose('its membership lease was lost');

  private depose(reason: string): void {
    if (!this.term) return;
    this.term = null;
    this.emit('deposed', reason);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.pass().finally(() => {
        this.running = null;
        const now = this.again;
        this.again = false;
        this.schedule(now ? 0 : this.retryMs);
      });
    }, ms);
    this.timer.unref();
  }

  private async pass(): Promise<void> {
    void this.watch();
    if (!this.member.alive) return this.depose('its membership lease is not confirmed');
    let now;
    try {
      now = await currentLeader(this.store);
    } catch {
      return; // etcd away: the lease decides (a leader whose renewals fail is deposed by 'lost')
    }
    if (this.stopped) return;
    if (this.term) {
      if (!now || now.term !== this.term.term) this.depose('the leader key is no longer its term');
      return;
    }
    if (now && now.leader === this.member.name && now.lease === this.member.leaseId) {
      // Ours under the lease this member resumed (sosd restarted within its TTL): the same term goes on.
      this.term = { leader: now.leader, term: now.term };
      this.emit('elected', this.term);
      return;
    }
    if (now) return; // another member leads
    const kv = this.store.kv;
    const value = JSON.stringify({ name: this.member.name, since: Date.now() });
    const res = await kv
      .if(LEADER, 'Create', '==', 0)
      .then(kv.put(LEADER).value(value).lease(this.member.leaseId))
      .options({ deadline: Date.now() + Math.max(1000, this.retryMs) })
      .commit()
      .catch(() => null);
    if (!res?.succeeded || this.stopped) return;
    // The put's revision is the key's create revision: the term.
    this.term = { leader: this.member.name, term: res.header.revision };
    this.emit('elected', this.term);
  }
}
