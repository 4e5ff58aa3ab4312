import type { RecordStore } from './record.js';
// The public shapes of a migration: its options, its progress events and its result.
import type * as criu from '../criu/index.js';
import type { MoveAddress } from './address.js';
import type { Mode } from './protocol.js';
import type { ChannelAuth } from '../net/channel.js';

/** Phases reported through onProgress, in order. */
export type Phase = 'connect' | 'dump' | 'transfer' | 'restore' | 'commit' | 'pages' | 'done';

/**
 * A progress event. Counts never go back, and the last event (phase 'done') carries the
 * result's exact `bytes` and `pages`; no event before it counts more.
 */
export interface Progress {
  phase: Phase;
  /** Bytes moved so far: image files, and memory pages as the target receives them. */
  bytes: number;
  /** Pages moved so far (memory page bytes / 4096: a page image in transit counts in part). */
  pages: number;
}

export interface MigrateOptions {
  /** The target node's migration agent. */
  to: { host: string; port: number };
  /**
   * The secret shared by the agents (32 random bytes: `generateSecret()`), or this node's certificates
   * for mutual TLS with the target (`ChannelTls`; a cluster's: `memberTls` naming the target node).
   */
  secret: ChannelAuth;
  /**
   * Called once right before CRIU dumps the tree (sosd detaches its far memory here); a rejection fails
   * the migration on the source, the process running on there.
   */
  beforeDump?: () => Promise<void>;
  /** 'precopy' (default): all memory moves before the target resumes. 'postcopy': the target resumes at once and pulls pages. */
  mode?: Mode;
  /** Where this side writes its images (a folder per migration is made inside). */
  workDir: string;
  /** An address to move from this node to the target with the process. */
  moveAddress?: MoveAddress;
  /** Carry ESTABLISHED TCP connections (default true; locks the network with nftables while frozen). */
  tcpEstablished?: boolean;
  shellJob?: boolean;
  extUnixSk?: boolean;
  fileLocks?: boolean;
  /** Abort before the commit: the source resumes. */
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** How long to keep asking a target that went silent after our commit (default 30 s). */
  inDoubtMs?: number;
  /**
   * The target agent's secret, asked anew when it refuses ours while the outcome is asked after a
   * lost connection (a restarted agent may have another: sosd makes one at each start).
   */
  refreshSecret?: () => Promise<Buffer>;
  /** Keep this side's images after success (default false). */
  keepImages?: boolean;
  /**
   * 'commit': the source stays frozen until the target runs the process, and resumes if it
   * never does. 'handover' (pre-copy only): the source goes once the target holds every image,
   * and is restored back here if the target cannot restore — needed when both sides share
   * state a frozen source still holds (one machine: FIFOs, files, one namespace's TCP 4-tuples).
   * 'auto' (default): handover on one machine, commit between machines.
   */
  strategy?: 'auto' | 'commit' | 'handover';
  /** A connection silent this long (ms) counts as cut (default 15000). */
  idleTimeoutMs?: number;
  /**
   * Where the source's decisions are kept durably (default: files in `workDir/records`; in a cluster,
   * `EtcdRecordStore` from serverlessos/cluster). `resolveInDoubt` must be given the same store.
   */
  records?: RecordStore;
  /**
   * The migration's id (32 lowercase hex digits; default: random). A caller that records the
   * migration elsewhere before it starts (sosd, in etcd) chooses it.
   */
  id?: string;
}

export interface MigrationResult {
  id: string;
  mode: Mode;
  /** From freezing the source to the target's report that the process runs again. */
  downtimeMs: number;
  totalMs: number;
  /** Bytes moved: image files plus post-copy page traffic. */
  bytes: number;
  pages: number;
  criu: { dump: criu.DumpStats | null; restore: criu.RestoreStats | null };
  sourcePid: number;
  /** The process's pid on the target (as the target sees it). */
  targetPid: number;
  /** How the hand-over went: 'commit' (source frozen until the target ran) or 'handover' (source gone once the images were safe on the target). */
  strategy: 'commit' | 'handover';
  /** Source and target ran on one machine (boot id). */
  sameHost: boolean;
  phases: { phase: Phase; ms: number }[];
}
