// The SOCK_SEQPACKET socketpair of the addon (native/criu/seqpacket.cc), used by lib/criu: types only.

/** An AF_UNIX SOCK_SEQPACKET socketpair: our end polled by libuv, the peer end for a child. */
export interface NativeSeqPacket {
  peerFd(): number;
  closePeer(): void;
  send(data: Uint8Array | ArrayBuffer): number;
  recv(): Promise<Buffer | null>;
  close(): void;
  isClosed(): boolean;
}

export interface SeqPacketBinding {
  NativeSeqPacket: new () => NativeSeqPacket;
}
