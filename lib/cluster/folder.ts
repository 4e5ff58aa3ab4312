/**
 * A cluster folder: what `sosctl cluster init` makes and every member reads. Layout:
 *   cluster.json               { cluster, etcd: [URLs] }
 *   ca.pem, ca-key.pem         the cluster CA (the key stays with whoever issues: copy only ca.pem to nodes)
 *   crl.pem, revoked.json      the revocation list and the serials it names
 *   <role>/<name>.pem, -key.pem  each member's certificate and key (node/, orchestrator/, operator/)
 * Keys are 0600 in 0700 folders; files are written to a temporary name, fsync'd, and renamed into
 * place, so a crash leaves the old file or the new one, never half of one.
 */
import fs from 'node:fs';
import path from 'node:path';
import { argValue } from '../errors.js';
import { createCa, issue, revocationList, type ClusterCa, type Credentials, type Role } from './identity.js';
import { ClusterError } from './errors.js';
import { writeDurableSync } from '../durable.js';

export interface ClusterConfig {
  cluster: string;
  /** etcd client URLs. */
  etcd: string[];
  /** The name etcd's certificate carries, when the URLs are IP addresses. */
  etcdServerName?: string;
}

/** What a member needs to connect: the CA, its own certificate and key, the current CRL. */
export interface MemberFiles {
  name: string;
  role: Role;
  cluster: string;
  caPem: string;
  certPem: string;
  keyPem: string;
  crlPem: string;
}

const write = (file: string, data: string, mode: number): void => writeDurableSync(file, data, mode);

function read(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ClusterError(`cannot read ${what} (${file}): ${(e as Error).message}`, {
      code: (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'ERR_NOT_FOUND' : 'ERR_CLUSTER_FOLDER',
      cause: e,
    });
  }
}

/** Make a new cluster folder with its CA, an empty CRL and an operator certificate named `operator`. */
export async function initCluster(
  dir: string,
  opts: { cluster: string; etcd?: string[]; days?: number },
): Promise<{ config: ClusterConfig; operator: Credentials }> {
  if (typeof dir !== 'string' || !dir) throw argValue('dir must be a folder path');
  if (fs.existsSync(path.join(dir, 'ca.pem')))
    throw new ClusterError(`${dir} already holds a cluster CA: refusing to replace it`, { code: 'ERR_EXISTS' });
  const etcd = opts.etcd ?? [];
  if (!etcd.every((u) => /^https?:\/\/\S+$/.test(u))) throw argValue('etcd must be http:// or https:// URLs');
  const ca = await createCa({ cluster: opts.cluster, days: opts.days });
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  write(path.join(dir, 'ca-key.pem'), ca.keyPem, 0o600);
  write(path.join(dir, 'ca.pem'), ca.certPem, 0o644);
  write(path.join(dir, 'revoked.json'), '[]\n', 0o644);
  write(path.join(dir, 'crl.pem'), await revocationList(ca, []), 0o644);
  const config: ClusterConfig = { cluster: ca.cluster, etcd };
  write(path.join(dir, 'cluster.json'), JSON.stringify(config, null, 2) + '\n', 0o644);
  const operator = await issueMember(dir, { name: 'operator', role: 'operator' });
  return { config, operator };
}

export function loadConfig(dir: string): ClusterConfig {
  const raw = read(path.join(dir, 'cluster.json'), 'the cluster config');
  let c: ClusterConfig;
  try {
    c = JSON.parse(raw) as ClusterConfig;
  } catch {
    throw new ClusterError(`${path.join(dir, 'cluster.json')} is not JSON`, { code: 'ERR_CLUSTER_FOLDER' });
  }
  if (typeof c?.cluster !== 'string' || !Array.isArray(c.etcd))
    throw new ClusterError(`${path.join(dir, 'cluster.json')} must hold { cluster, etcd: [URLs] }`, {
      code: 'ERR_CLUSTER_FOLDER',
    });
  return c;
}

/** Set the etcd endpoints members connect to (and the name its certificate carries). */
export function setEtcd(dir: string, etcd: string[], serverName?: string): void {
  const c = loadConfig(dir);
  const next: ClusterConfig = { ...c, etcd, ...(serverName ? { etcdServerName: serverName } : {}) };
  write(path.join(dir, 'cluster.json'), JSON.stringify(next, null, 2) + '\n', 0o644);
}

function loadCa(dir: string): ClusterCa {
  return {
    cluster: loadConfig(dir).cluster,
    certPem: read(path.join(dir, 'ca.pem'), 'the CA certificate'),
    keyPem: read(path.join(dir, 'ca-key.pem'), "the CA's key (only the issuing machine has it)"),
  };
}

const certFile = (dir: string, role: Role, name: string) => path.join(dir, role, `${name}.pem`);
const keyFile = (dir: string, role: Role, name: string) => path.join(dir, role, `${name}-key.pem`);

/**
 * Issue (or re-issue: rotation) `name`'s certificate. The previous certificate stays valid until it
 * expires or is revoked, so a member can be rotated without a moment offline.
 */
export async function issueMember(
  dir: string,
  opts: { name: string; role: Role; hosts?: string[]; days?: number },
): Promise<Credentials> {
  const creds = await issue(loadCa(dir), opts);
  write(keyFile(dir, opts.role, creds.name), creds.keyPem, 0o600);
  write(certFile(dir, opts.role, creds.name), creds.certPem, 0o644);
  return creds;
}

/** Revoke serials (hex) and re-sign the CRL; members re-read it (see `loadMember`). Returns the revoked set. */
export async function revoke(dir: string, serials: string[]): Promise<string[]> {
  const ca = loadCa(dir);
  const had = JSON.parse(read(path.join(dir, 'revoked.json'), 'the revoked serials')) as string[];
  const all = [...new Set([...had, ...serials.map((s) => s.toLowerCase())])].sort();
  const crl = await revocationList(ca, all); // validates the serials before anything is written
  write(path.join(dir, 'revoked.json'), JSON.stringify(all) + '\n', 0o644);
  write(path.join(dir, 'crl.pem'), crl, 0o644);
  return all;
}

/** A member's files, ready for `tlsOptions` and `openStore`. */
export function loadMember(dir: string, role: Role, name: string): MemberFiles {
  return {
    name,
    role,
    cluster: loadConfig(dir).cluster,
    caPem: read(path.join(dir, 'ca.pem'), 'the CA certificate'),
    certPem: read(certFile(dir, role, name), `${role} ${name}'s certificate`),
    keyPem: read(keyFile(dir, role, name), `${role} ${name}'s key`),
    crlPem: read(path.join(dir, 'crl.pem'), 'the revocation list'),
  };
}
