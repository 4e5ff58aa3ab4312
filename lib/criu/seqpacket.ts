// A SOCK_SEQPACKET socketpair from the addon: the transport of CRIU's RPC.
import { native, type NativeSeqPacket } from '../native/index.js';
import { argType } from '../errors.js';

/**
 * A connected pair of `AF_UNIX`/`SOCK_SEQPACKET` sockets. This process keeps
 * one end (non-blocking, read on the libuv loop); {@link SeqPacket.peerFd} is
 * the other, to hand to a child process through `spawn`'s `stdio` array and
 * then close here with {@link SeqPacket.closePeer}. Each `recv()` yields one
 * whole message; descriptors passed along with a message are closed.
 */
export class SeqPacket implements Disposable {
  readonly #h: NativeSeqPacket = new native.NativeSeqPacket();

  /** The peer end's descriptor (close-on-exec; spawn's dup2 hands it over). */
  get peerFd(): number {
    return this.#h.peerFd();
  }

  /** Close the peer end here, once a child holds its own copy. Idempotent. */
  closePeer(): void {
    this.#h.closePeer();
  }

  /** Send one message; returns its length. Throws SystemError (EPIPE when the peer is gone). */
  send(data: Uint8Array): number {
    if (!(data instanceof Uint8Array)) throw argType('data must be a Uint8Array or a Buffer');
    return this.#h.send(data);
  }

  /** The next whole message, or `null` once the peer has closed its end. One at a time (ERR_BUSY). */
  recv(): Promise<Buffer | null> {
    return this.#h.recv();
  }

  /** Close both ends; a pending `recv()` rejects with ERR_CLOSED. Idempotent. */
  close(): void {
    this.#h.close();
  }

  get closed(): boolean {
    return this.#h.isClosed();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
