/** The cluster: identities (a CA per cluster, a certificate per member, roles, revocation), the etcd store, membership by lease. */
export {
  createCa,
  issue,
  revocationList,
  tlsOptions,
  peerIdentity,
  authorize,
  IdentityError,
  ROLES,
  type Role,
  type ClusterCa,
  type Credentials,
  type PeerIdentity,
} from './identity.js';
export { memberTls, type MemberTlsOptions, type MemberCredentials } from './member-tls.js';
export { ClusterError } from './errors.js';
export {
  startEtcd,
  etcdAt,
  stopEtcdAt,
  setEtcdCrl,
  type EtcdServer,
  type EtcdInfo,
  type EtcdStartOptions,
  type EtcdTls,
} from './etcd-server.js';
export { openStore, type Store, type StoreOptions } from './store.js';
export { Member, listNodes, type NodeRecord, type JoinOptions, type MemberEvents } from './membership.js';
export {
  TelemetryPublisher,
  listTelemetry,
  sample,
  type Telemetry,
  type PublisherOptions,
  type Counters,
} from './telemetry.js';
export {
  initCluster,
  loadConfig,
  setEtcd,
  issueMember,
  revoke,
  loadMember,
  type ClusterConfig,
  type MemberFiles,
} from './folder.js';
export { joinCluster, storeFromFolder, type ClusterNode } from './join.js';
export {
  listCheckpoints,
  readCheckpoint,
  recordCheckpoint,
  removeCheckpoint,
  parseCheckpointEntry,
  type CheckpointEntry,
} from './checkpoints.js';
export { EtcdRecordStore, migrationsOf } from './migration-records.js';
export { ProcessRegistry, listProcesses, findProcess, parseProcessEntry, type ProcessEntry } from './processes.js';
