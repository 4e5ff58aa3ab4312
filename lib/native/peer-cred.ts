// Who is behind a unix socket (native/core/peer_cred.cc) and taking a descriptor from a process
// (native/core/pidfd_getfd.cc), used by lib/daemon and lib/memory/run: types only.

/** Who connected: the peer's pid, uid and gid at connect() time, as the kernel recorded them. */
export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

export interface PeerCredBinding {
  /** The credentials of `fd`'s peer; a SystemError (`syscall` 'getsockopt(SO_PEERCRED)', errno) on failure. */
  peerCred(fd: number): PeerCred;
  /** A close-on-exec copy of descriptor `fd` of process `pid` (pidfd_getfd; native/core/pidfd_getfd.cc). */
  takeFd(pid: number, fd: number): number;
}
