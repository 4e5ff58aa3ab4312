// An opened RDMA device: the root of the verbs tree.
import { EventEmitter } from 'node:events';
import {
  native,
  type AsyncEvent,
  type DeviceAttributes,
  type PortAttributes,
  type RawContext,
} from '../native/index.js';
import { StateError, SystemError, argType } from '../errors.js';
import { integer } from '../validate.js';
import { CompletionChannel, CompletionQueue } from './cq.js';
import { ProtectionDomain } from './pd.js';
import { VerbsObject } from './verbs-object.js';

/** The error of a device that cannot be opened, saying which device (ENOSYS from a kernel without RDMA does not). */
function namingDevice(name: string, e: unknown): unknown {
  const message = `cannot open RDMA device '${name}': ${(e as Error).message}`;
  if (e instanceof SystemError)
    return new SystemError(message, { code: e.code, errno: e.errno, syscall: e.syscall, cause: e });
  if (e instanceof StateError) return new StateError(message, { code: e.code, cause: e });
  return e;
}

export class Context extends VerbsObject {
  /** @internal */ readonly raw: RawContext;
  /** Device async events ('event' listeners): port active/error, QP fatal, CQ error… */
  readonly events = new EventEmitter<{ event: [AsyncEvent] }>();
  private constructor(r: RawContext) {
    if (!(r instanceof native.rdma.RdmaContext))
      throw argType('a Context is not constructed directly: use Context.open(name)');
    super();
    this.raw = r;
    // The native side holds this callback strongly: it must not hold the Context (or the Context could never be collected).
    const events = this.events;
    (events as EventEmitter).on('newListener', () => r.startEvents((ev) => events.emit('event', ev)));
  }
  /** Open a device by name (e.g. 'rxe0'). */
  static open(name: string): Context {
    if (typeof name !== 'string') throw argType('device name must be a string');
    let r: RawContext;
    try {
      r = new native.rdma.RdmaContext(name);
    } catch (e) {
      throw namingDevice(name, e);
    }
    return new Context(r);
  }
  query(): DeviceAttributes {
    return this.raw.query();
  }
  queryPort(port = 1): PortAttributes {
    return this.raw.queryPort(integer('port', port, 1, 255));
  }
  queryGid(port = 1, index = 0): string {
    return this.raw.queryGid(integer('port', port, 1, 255), integer('index', index, 0));
  }
  allocPd(): ProtectionDomain {
    return new ProtectionDomain(this);
  }
  /** A completion queue; with a channel it can be awaited (`next()`) without polling. */
  createCq(cqe = 256, channel?: CompletionChannel): CompletionQueue {
    return new CompletionQueue(this, cqe, channel);
  }
  createCompChannel(): CompletionChannel {
    return new CompletionChannel(this);
  }
  /** @internal Channels of this context: closing it wakes their waiters. */
  readonly channels = new Set<CompletionChannel>();
  override close(): void {
    super.close();
    for (const ch of this.channels) ch.close(); // closed natively already: this settles awaited next()s
    this.channels.clear();
  }
}
