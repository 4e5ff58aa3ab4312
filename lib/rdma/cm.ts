/**
 * rdma_cm (librdmacm): how RoCE peers find each other by IP address.
 * A CmEventChannel delivers connection-manager events on the libuv loop; a
 * CmId resolves, connects, listens, accepts, rejects and disconnects, each
 * step a promise settled by its event. The queue pair stays an ordinary
 * QueuePair of the verbs tree: the id computes its INIT/RTR/RTS attributes
 * (with the PSNs and path the CM negotiated) and this module applies them.
 *
 *   using ch = new CmEventChannel();
 *   const id = ch.createId();
 *   await id.resolve('10.0.2.15', 7471);            // address, then route
 *   using ctx = Context.open(id.device!);            // the device the route uses
 *   ... pd, cq, qp = pd.createQp(cq, cq) ...
 *   const { privateData } = await id.connect(qp, { privateData: hello });
 *
 *   const server = ch.createId();
 *   server.listen('0.0.0.0', 7471);
 *   server.on('request', async (req) => { ...qp...; await req.accept(qp); });
 */
import { EventEmitter } from 'node:events';
import os from 'node:os';
import { native, type CmIdInfo, type RawCmChannel, type RawCmEvent, type RawCmId } from '../native/index.js';
import { StateError, SystemError, argType, errnoName } from '../errors.js';
import { integer, object } from '../validate.js';
import { accessBits, type Access } from './access.js';
import type { QueuePair } from './qp.js';

const raw = native.rdma;

export type { CmIdInfo };

/** A connection-manager event, as delivered to `CmId`'s 'event' listeners. */
export interface CmEvent {
  type: string;
  status: number;
  privateData?: Buffer;
  qpNum?: number;
  responderResources?: number;
  initiatorDepth?: number;
}

/** Connection parameters for connect() and accept(). */
export interface CmConnectOptions {
  /** Up to 56 bytes handed to the peer with the request (or the reply). */
  privateData?: Uint8Array;
  /** RDMA READs/atomics the peer may have outstanding on us (255 = the device maximum). */
  responderResources?: number;
  /** RDMA READs/atomics we may have outstanding on the peer (255 = the device maximum). */
  initiatorDepth?: number;
  retryCount?: number;
  rnrRetryCount?: number;
  /** Access the QP grants its peer, on top of what the CM sets (default: remote read, write and atomics). */
  access?: Access[];
  /** How long to wait for the peer's answer (default 10 s). */
  timeoutMs?: number;
}

/** librdmacm could be loaded (and why not). */
export function cmStatus(): { library: boolean; reason?: string } {
  return raw.cmStatus();
}

/** A connection-manager step that failed by event (ADDR_ERROR, REJECTED, UNREACHABLE…). */
export class CmError extends SystemError {
  /** The CM event that reported the failure. */
  readonly event: string;
  /** For REJECTED: the peer's private data, if any. */
  readonly privateData?: Buffer;
  constructor(syscall: string, ev: CmEvent) {
    const rejected = ev.type === 'REJECTED';
    const errno = rejected ? os.constants.errno.ECONNREFUSED : ev.status < 0 ? -ev.status : os.constants.errno.EIO;
    const code = errnoName(errno) ?? 'EIO';
    super(`${syscall} failed: ${ev.type}${rejected ? ` (reason ${ev.status})` : ` (${code})`}`, {
      code,
      errno: -errno,
      syscall,
    });
    this.event = ev.type;
    if (ev.privateData) this.privateData = ev.privateData;
  }
}

function closedError(what: string): StateError {
  return new StateError(`${what} is closed`, { code: 'ERR_CLOSED' });
}

const busyChannels = new Set<CmEventChannel>();

/** Connection-manager events of its ids, read on the event loop. Closing it closes its ids first. */
export class CmEventChannel implements Disposable {
  /** @internal */ readonly raw: RawCmChannel;
  private readonly ids = new Map<RawCmId, CmId>();
  private holds = 0;
  constructor() {
    this.raw = new raw.RdmaCmChannel();
    // Weakly held by the native callback, so that an idle channel dropped without close() is collected;
    // strongly (in `busyChannels`) while an id of it listens or waits for an event.
    const self = new WeakRef(this);
    this.raw.start((ev) => self.deref()?.dispatch(ev));
  }
  get closed(): boolean {
    return this.raw.isClosed();
  }
  /** A new RC (RDMA_PS_TCP) communication id. */
  createId(): CmId {
    if (this.closed) throw closedError('rdma_cm event channel');
    return new CmId(this, new raw.RdmaCmId(this.raw));
  }
  close(): void {
    if (this.closed) return;
    const ids = [...this.ids.values()];
    this.raw.close(); // the native tree closes every id first
    for (const id of ids) id.closedUnder();
    this.ids.clear();
    busyChannels.delete(this);
  }
  [Symbol.dispose](): void {
    this.close();
  }
  /** @internal */ register(r: RawCmId, id: CmId): void {
    this.ids.set(r, id);
  }
  /** @internal */ unregister(r: RawCmId): void {
    this.ids.delete(r);
  }
  /** @internal Pending steps and listeners keep the process alive, like sockets. */
  hold(delta: number): void {
    this.holds += delta;
    if (this.holds > 0) busyChannels.add(this);
    else busyChannels.delete(this);
    if (!this.closed) this.raw.ref(this.holds > 0);
  }
  private dispatch(ev: RawCmEvent): void {
    const { id: rid, listenId, ...rest } = ev;
    if (ev.type === 'CONNECT_REQUEST') {
      const listener = listenId ? this.ids.get(listenId) : undefined;
      const req = new CmId(this, rid, rest);
      if (!listener || !listener.deliverRequest(req)) {
        try {
          rid.reject();
        } catch {
          /* the peer sees a timeout instead */
        }
        req.close();
      }
      return;
    }
    this.ids.get(rid)?.handle(rest);
  }
}

interface Waiter {
  ok: string[];
  syscall: string;
  resolve: (ev: CmEvent) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

/**
 * A communication id. Events: 'request' (a listening id got a connection
 * request: a new CmId to accept() or reject()), 'disconnected' (the peer or
 * we disconnected), 'event' (every CM event, for diagnostics).
 */
export class CmId extends EventEmitter<{ request: [CmId]; disconnected: []; event: [CmEvent] }> implements Disposable {
  /** For an id from a connection request: the request's private data and parameters. */
  readonly request?: CmEvent;
  private waiter: Waiter | null = null;
  private qp: QueuePair | null = null;
  private listening = false;
  private connected = false;
  private isClosed = false;
  /**
   * Not for direct use: ids come from `channel.createId()` (and from a listening id's 'request' events).
   * @internal
   */
  constructor(
    readonly channel: CmEventChannel,
    private readonly raw: RawCmId,
    request?: CmEvent,
  ) {
    if (!(channel instanceof CmEventChannel) || !(raw instanceof native.rdma.RdmaCmId))
      throw argType('a CmId is not constructed directly: create one with channel.createId() of a CmEventChannel');
    super();
    if (request) this.request = request;
    channel.register(raw, this);
  }
  get closed(): boolean {
    return this.isClosed || this.raw.isClosed();
  }
  /** Device, port and addresses (device once the address is resolved or bound). */
  info(): CmIdInfo {
    if (this.closed) throw closedError('rdma_cm id');
    return this.raw.info();
  }
  /** The RDMA device this id uses (after resolve(), or on an id from a request). */
  get device(): string | undefined {
    return this.info().device;
  }

  /** Resolve the peer's address and then the route to it (rdma_resolve_addr + rdma_resolve_route). */
  async resolve(host: string, port: number, options: { timeoutMs?: number; source?: string } = {}): Promise<void> {
    const o = object('options', options);
    const timeoutMs = integer('options.timeoutMs', o.timeoutMs ?? 2000, 1, 600_000);
    if (o.source !== undefined && typeof o.source !== 'string')
      throw argType('options.source must be an address string');
    integer('port', port, 1, 65535);
    this.live();
    const addr = this.wait(['ADDR_RESOLVED'], 'rdma_resolve_addr', timeoutMs + 5000);
    this.step(() => this.raw.resolveAddr(host, port, timeoutMs, o.source as string | undefined));
    await addr;
    const route = this.wait(['ROUTE_RESOLVED'], 'rdma_resolve_route', timeoutMs + 5000);
    this.step(() => this.raw.resolveRoute(timeoutMs));
    await route;
  }

  /**
   * Connect `qp` (an RC QueuePair in RESET, on this id's device) to the
   * listening peer: INIT now, RTR and RTS when the peer accepts. Resolves with
   * the peer's private data and QP number.
   */
  async connect(qp: QueuePair, options: CmConnectOptions = {}): Promise<{ privateData?: Buffer; qpNum: number }> {
    const o = this.connOptions(options);
    this.live();
    this.initQp(qp, o.access);
    const answer = this.wait(['CONNECT_RESPONSE'], 'rdma_connect', o.timeoutMs);
    this.step(() => this.raw.connect({ ...o.param, qpNum: qp.qpNum }));
    const ev = await answer;
    try {
      this.initQp(qp, o.access); // again, now with the attributes the CM negotiated
      qp.modify(this.raw.qpAttr('RTR'));
      qp.modify(this.raw.qpAttr('RTS'));
      this.raw.establish();
    } catch (e) {
      try {
        this.raw.reject();
      } catch {
        /* already gone */
      }
      throw e;
    }
    this.connected = true;
    this.qp = qp;
    return ev.privateData ? { privateData: ev.privateData, qpNum: ev.qpNum ?? 0 } : { qpNum: ev.qpNum ?? 0 };
  }

  /** Bind to a local address (rdma_bind_addr): an address of an RDMA device ties the id to that device. */
  bind(host: string, port = 0): void {
    integer('port', port, 0, 65535);
    this.live();
    this.raw.bind(host, port);
  }

  /** Listen on host:port (host '0.0.0.0' or '::' for every address); 'request' events follow. */
  listen(host: string, port: number, backlog = 16): void {
    integer('port', port, 0, 65535);
    integer('backlog', backlog, 1, 4096);
    this.live();
    if (this.listening) throw new StateError('rdma_cm id is already listening', { code: 'ERR_BUSY' });
    this.step(() => {
      this.raw.bind(host, port);
      this.raw.listen(backlog);
    });
    this.listening = true;
    this.channel.hold(1);
  }

  /**
   * Accept this id's connection request with `qp` (an RC QueuePair in RESET
   * on this id's device): INIT, RTR, RTS, then the reply. Resolves once the
   * connection is established.
   */
  async accept(qp: QueuePair, options: CmConnectOptions = {}): Promise<void> {
    const o = this.connOptions(options);
    this.live();
    if (!this.request)
      throw new StateError('accept() is for ids from a connection request', { code: 'ERR_UNSUPPORTED' });
    this.initQp(qp, o.access);
    qp.modify(this.raw.qpAttr('RTR'));
    qp.modify(this.raw.qpAttr('RTS'));
    const done = this.wait(['ESTABLISHED'], 'rdma_accept', o.timeoutMs);
    this.step(() => this.raw.accept({ ...o.param, qpNum: qp.qpNum }));
    await done;
    this.connected = true;
    this.qp = qp;
  }

  /** Refuse this id's connection request (the peer's connect() fails with ECONNREFUSED), then close it. */
  reject(privateData?: Uint8Array): void {
    this.live();
    if (privateData !== undefined && !(privateData instanceof Uint8Array))
      throw argType('privateData must be a Buffer or a Uint8Array');
    this.step(() => this.raw.reject(privateData));
    this.close();
  }

  /**
   * Disconnect: the QP goes to the error state (its pending work completes
   * flushed in error) and both sides get 'disconnected'. Idempotent.
   */
  disconnect(): void {
    if (this.closed || !this.connected) return;
    this.connected = false;
    try {
      this.raw.disconnect();
    } catch {
      /* the peer went first */
    }
    this.breakQp();
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.listening) this.channel.hold(-1);
    this.listening = false;
    this.failWaiter(closedError('rdma_cm id'));
    this.raw.close();
    this.channel.unregister(this.raw);
  }
  [Symbol.dispose](): void {
    this.close();
  }

  /** @internal The channel closed under us. */
  closedUnder(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.listening) this.channel.hold(-1);
    this.failWaiter(closedError('rdma_cm id'));
  }
  /** @internal */
  deliverRequest(req: CmId): boolean {
    if (this.closed || this.listenerCount('request') === 0) return false;
    this.emit('request', req);
    return true;
  }
  /** @internal */
  handle(ev: CmEvent): void {
    this.emit('event', ev);
    const w = this.waiter;
    if (ev.type === 'DISCONNECTED') {
      this.connected = false;
      this.breakQp();
      if (w) this.failWaiter(new CmError(w.syscall, ev));
      this.emit('disconnected');
      return;
    }
    if (!w) return;
    if (w.ok.includes(ev.type)) {
      this.settle();
      w.resolve(ev);
    } else if (/ERROR|REJECTED|UNREACHABLE|DEVICE_REMOVAL/.test(ev.type)) {
      this.failWaiter(new CmError(w.syscall, ev));
    }
  }

  // As librdmacm does for a QP it owns: after a disconnect the QP is in error.
  private breakQp(): void {
    const qp = this.qp;
    this.qp = null;
    if (!qp || qp.closed) return;
    try {
      qp.modify({ state: 'ERR' });
    } catch {
      /* closed meanwhile */
    }
  }
  private live(): void {
    if (this.closed) throw closedError('rdma_cm id');
    if (this.waiter)
      throw new StateError(`rdma_cm id is busy (${this.waiter.syscall} in progress)`, { code: 'ERR_BUSY' });
  }
  private connOptions(options: CmConnectOptions): { param: object; access: number; timeoutMs: number } {
    const o = object('options', options);
    const u8 = (k: string, max: number, dflt: number) => integer(`options.${k}`, o[k] ?? dflt, 0, max);
    if (o.privateData !== undefined && !(o.privateData instanceof Uint8Array))
      throw argType('options.privateData must be a Buffer or a Uint8Array');
    return {
      param: {
        privateData: o.privateData,
        responderResources: u8('responderResources', 255, 255),
        initiatorDepth: u8('initiatorDepth', 255, 255),
        retryCount: u8('retryCount', 7, 7),
        rnrRetryCount: u8('rnrRetryCount', 7, 7),
      },
      access: accessBits(
        (o.access as Access[] | undefined) ?? ['local-write', 'remote-write', 'remote-read', 'remote-atomic'],
      ),
      timeoutMs: integer('options.timeoutMs', o.timeoutMs ?? 10_000, 1, 600_000),
    };
  }
  private initQp(qp: QueuePair, access: number): void {
    const a = this.raw.qpAttr('INIT');
    qp.modify({ ...a, access: (a.access ?? 0) | access });
  }
  // Start a native step; if it throws, the waiter for its event goes too.
  private step(f: () => void): void {
    try {
      f();
    } catch (e) {
      const w = this.waiter;
      this.settle();
      w?.reject(e as Error);
      throw e;
    }
  }
  private wait(ok: string[], syscall: string, timeoutMs: number): Promise<CmEvent> {
    let w!: Waiter;
    const p = new Promise<CmEvent>((resolve, reject) => {
      w = { ok, syscall, resolve, reject };
    });
    w.timer = setTimeout(
      () =>
        this.failWaiter(
          new SystemError(`${syscall}: no answer in ${timeoutMs} ms`, {
            code: 'ETIMEDOUT',
            errno: -os.constants.errno.ETIMEDOUT,
            syscall,
          }),
        ),
      timeoutMs,
    );
    w.timer.unref();
    this.waiter = w;
    this.channel.hold(1);
    p.catch(() => undefined); // a step that throws synchronously rejects it unobserved
    return p;
  }
  private settle(): void {
    const w = this.waiter;
    if (!w) return;
    this.waiter = null;
    clearTimeout(w.timer);
    this.channel.hold(-1);
  }
  private failWaiter(e: Error): void {
    const w = this.waiter;
    if (!w) return;
    this.settle();
    w.reject(e);
  }
}
