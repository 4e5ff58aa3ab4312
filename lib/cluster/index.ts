/** The cluster: identities (a CA per cluster, a certificate per member, roles, revocation). */
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
