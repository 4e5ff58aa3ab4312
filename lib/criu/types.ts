// Public option and result types of the CRIU binding.

/** A CRIU notification ("action script"), e.g. `{ script: 'post-dump' }`;
 *  `pid` is the restored root's pid on setup-namespaces and post-restore. */
export interface CriuNotify {
  script: string;
  pid?: number;
}

/** CRIU's notify scripts delivered as async hooks: CRIU waits for each promise;
 *  a hook that throws (or rejects) fails the CRIU call (ERR_CRIU_HOOK with the error as `cause`). */
export interface CriuHooks {
  preDump?(e: CriuNotify): void | Promise<void>;
  postDump?(e: CriuNotify): void | Promise<void>;
  networkLock?(e: CriuNotify): void | Promise<void>;
  networkUnlock?(e: CriuNotify): void | Promise<void>;
  preRestore?(e: CriuNotify): void | Promise<void>;
  postRestore?(e: CriuNotify): void | Promise<void>;
  setupNamespaces?(e: CriuNotify): void | Promise<void>;
  postSetupNamespaces?(e: CriuNotify): void | Promise<void>;
  preResume?(e: CriuNotify): void | Promise<void>;
  postResume?(e: CriuNotify): void | Promise<void>;
  /** Every notification (after its named hook), including ones without a named hook (status-ready…). */
  any?(e: CriuNotify): void | Promise<void>;
}

export type ManageCgroups = 'ignore' | 'none' | 'props' | 'soft' | 'full' | 'strict';
export type NetworkLock = 'nftables' | 'iptables' | 'skip';

/** Options every CRIU call takes. */
export interface CriuCommonOptions {
  /** Image folder: created if missing on dump/pre-dump; must exist on restore. */
  imagesDir: string;
  /** CRIU's working folder (its log goes there); default imagesDir. */
  workDir?: string;
  /** Log file name inside workDir (default `<op>.log`); an absolute path sets workDir to its folder. */
  logFile?: string;
  /** CRIU's log verbosity, 0–4; default 4 (the log is the evidence when something fails). */
  logLevel?: 0 | 1 | 2 | 3 | 4;
  /** Run CRIU inside /run/netns/<netns> (`nsenter --net=…`). */
  netns?: string;
  tcpEstablished?: boolean;
  shellJob?: boolean;
  extUnixSk?: boolean;
  fileLocks?: boolean;
  manageCgroups?: ManageCgroups;
  /** Root of the restored tree (CRIU's --root). */
  root?: string;
  hooks?: CriuHooks;
  /** Abort kills the CRIU process and rejects with an AbortError. */
  signal?: AbortSignal;
  /** Default: /usr/local/sbin/criu, else `criu` on PATH. */
  criuPath?: string;
}

/**
 * Mutual TLS on a page-server connection (CRIU's --tls): paths of PEM files.
 * Both ends present a certificate and accept only a peer whose certificate
 * chains to `caCert` (which may simply be the peer's own self-signed one).
 */
export interface CriuTls {
  /** This side's certificate. */
  cert: string;
  /** Its private key. */
  key: string;
  /** The certificates trusted for the peer. */
  caCert: string;
  /** A certificate revocation list. */
  caCrl?: string;
  /** Also check the peer certificate's name against the address (default false: `caCert` alone decides). */
  verifyName?: boolean;
}

/** Where a page server listens (or a dump/lazy-pages connects), optionally over mutual TLS. */
export interface PageServerAddress {
  address: string;
  port: number;
  tls?: CriuTls;
}

export interface DumpOptions extends CriuCommonOptions {
  pid: number;
  leaveRunning?: boolean;
  leaveStopped?: boolean;
  /** Default: nftables (this project's hosts have no iptables) when CRIU locks anything: with
   *  tcpEstablished, or for a tree that owns its network namespace; else no lock is set up. */
  networkLock?: NetworkLock;
  trackMem?: boolean;
  /** Parent images (of a pre-dump), relative to imagesDir as CRIU takes it. */
  parentDir?: string;
  /** Post-copy: leave memory to be pulled lazily (see dumpLazy). */
  lazyPages?: boolean;
  /** Send pages to a CRIU page server; for a lazy dump, where this dump serves pages. */
  pageServer?: PageServerAddress;
  /** Seconds CRIU may take to freeze/collect the tree (CRIU's --timeout). */
  timeout?: number;
}

/** From the image folder's stats-dump: CRIU's own figures (times in µs). */
export interface DumpStats {
  freezingTimeUs: number;
  frozenTimeUs: number;
  memdumpTimeUs: number;
  memwriteTimeUs: number;
  pagesScanned: number;
  pagesWritten: number;
  pagesSkippedParent: number;
  pagesLazy: number;
}
export interface RestoreStats {
  forkingTimeUs: number;
  restoreTimeUs: number;
  pagesRestored: number;
  pagesCompared?: number;
}

export interface DumpResult {
  /** CRIU's figures; null for lazy dumps (CRIU 4.1.1 resets its counters when the lazy page server starts). */
  stats: DumpStats | null;
  imagesDir: string;
  logFile: string;
  /** Wall time of the call, ms. */
  ms: number;
  /** Lazy dumps: ms from the call until the images were complete and pages served (imagesReady). */
  imagesReadyMs?: number;
}

export interface RestoreOptions extends CriuCommonOptions {
  /** Default true: the restored tree is not a child of this process. false: its root
   *  becomes a child of this Node process (CRIU's rst_sibling); nobody reaps it here. */
  detached?: boolean;
  pidfile?: string;
  /** Restore lazily; needs a running lazyPages() daemon on the same workDir. */
  lazyPages?: boolean;
  /** Descriptors of this process handed to the restored tree for external resources (CRIU's --inherit-fd). */
  inheritFds?: { key: string; fd: number }[];
  /** Restore the established TCP connections a tcpEstablished dump took as closed (CRIU's --tcp-close): elsewhere, their peers lost them anyway. */
  tcpClose?: boolean;
}

export interface RestoreResult {
  pid: number;
  stats: RestoreStats | null;
  logFile: string;
  ms: number;
}

/** What check() found. */
export interface CriuCheck {
  ok: boolean;
  /** Human-readable reasons when !ok or degraded. */
  problems: string[];
  criuPath: string | null;
  version: string | null;
  features: { memTrack: boolean; lazyPages: boolean; pidfdStore: boolean };
  /** Whether an x86 debug-register breakpoint traps here (CRIU relies on it). */
  hwBreakpoints: boolean;
  /** CRIU_FAULT value the library sets for every CRIU it runs (130 when breakpoints do not fire), else null. */
  faultInjection: number | null;
  pipeMaxSize: number;
  /** fs.pipe-max-size large enough for lazy dumps. */
  pipeMaxSizeOk: boolean;
  userfaultfd: boolean;
  /** Soft-dirty bits available: pre-dump / trackMem are useful. */
  dirtyTracking: boolean;
}

/** A CRIU page server or lazy-pages daemon this process started. */
export interface CriuDaemon {
  pid: number;
  port?: number;
  /** Settles when the daemon exits: resolves on a clean exit, rejects with CriuError otherwise. */
  exited: Promise<void>;
  /** Stop it (SIGKILL if still running) and wait. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}
