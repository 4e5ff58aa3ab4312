// SO_PEERCRED of a connected unix socket (native/core/peer_cred.cc), used by lib/daemon: types only.

/** Who connected: the peer's pid, uid and gid at connect() time, as the kernel recorded them. */
export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

export interface PeerCredBinding {
  /** The credentials of `fd`'s peer; a SystemError (`syscall` 'getsockopt(SO_PEERCRED)', errno) on failure. */
  peerCred(fd: number): PeerCred;
}
