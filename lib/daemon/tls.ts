/**
 * sosd's mutual-TLS listener, for the cluster's other members: nodes, the orchestrator, operators.
 *
 * A plain TCP server accepts and counts first (connections in all, unverified ones in all and per
 * address); only a connection within those bounds is handed to Node's TLS server (as its documented
 * `'connection'` injection), which requires a client certificate of the cluster CA, not revoked by the
 * CRL (TLS 1.3, `requestCert` + `rejectUnauthorized`), within the handshake timeout. Then the peer's
 * identity is read (`peerIdentity`: this cluster's O, a role in OU); only then is the connection given
 * to the daemon, which allocates its line buffer and serves frames. Before that the peer is sent
 * nothing but the TLS handshake, and nothing of it is read.
 */
import 'reflect-metadata'; // before @peculiar/x509, which needs it loaded
import net from 'node:net';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import { peerIdentity, type PeerIdentity } from '../cluster/identity.js';
import { contextOptions as pemContext } from '../net/channel-tls.js';
import { ArgRangeError, ArgValueError, SosError } from '../errors.js';
import { ListenError } from './errors.js';
import type { DaemonMetrics, TlsOutcome } from './metrics.js';
import type { Reply } from './protocol.js';
import type { DaemonLogger } from './server.js';

/** What the listener proves itself with and checks peers against (`loadMember`'s MemberFiles fit). */
export interface TlsCredentials {
  /** The cluster CA's certificate. */
  caPem: string;
  /** This node's certificate and key. */
  certPem: string;
  keyPem: string;
  /** The CA's revocation list (strongly advised: without it a revoked member is served). */
  crlPem?: string;
}

export interface TlsListenOptions {
  /** An address to bind (a loopback one in tests); port 0: one the kernel picks. */
  host: string;
  port: number;
  credentials: TlsCredentials;
  /** The cluster a peer's certificate must name (its O); another cluster's is refused even if the CA signed it. */
  cluster: string;
  /** A peer must finish the TLS handshake within this (default 10 000 ms). */
  handshakeTimeoutMs?: number;
  /** A verified connection with no traffic and nothing in flight this long is closed (default 300 000 ms). */
  idleTimeoutMs?: number;
  /** TLS connections at once, verified or not (default 256); more are closed at accept. */
  maxConnections?: number;
  /** Connections at once that have not finished the handshake (default 64) … */
  maxPending?: number;
  /** … and of those, from one address (default 8). */
  maxPendingPerAddress?: number;
}

/** A verified peer, as the daemon's handlers see it. */
export interface TlsPeer {
  kind: 'tls';
  role: PeerIdentity['role'];
  name: string;
  serial: string;
}

interface Hooks {
  log: DaemonLogger;
  metrics: DaemonMetrics;
  /** Serve a verified connection's frames. */
  serve(sock: tls.TLSSocket, peer: TlsPeer): void;
}

// A refused peer gets its reply and this long to read it before the socket is destroyed.
const REFUSED_LINGER_MS = 1000;
// Refusals at accept are logged at most this often (a flood of them is counted, not logged line by line).
const REFUSAL_LOG_EVERY_MS = 10_000;

function limit(name: string, v: number | undefined, dflt: number, max = 2 ** 31 - 1): number {
  const n = v ?? dflt;
  if (!Number.isSafeInteger(n) || n < 1 || n > max)
    throw new ArgRangeError(`${name} must be a whole number from 1 to ${max}, got ${String(v)}`);
  return n;
}

function contextOptions(c: TlsCredentials): tls.SecureContextOptions {
  if (!c || typeof c !== 'object') throw new ArgValueError('credentials must be { caPem, certPem, keyPem, crlPem? }');
  for (const k of ['caPem', 'certPem', 'keyPem'] as const)
    if (typeof c[k] !== 'string' || !c[k]) throw new ArgValueError(`credentials.${k} must be a PEM string`);
  if (c.crlPem !== undefined && typeof c.crlPem !== 'string')
    throw new ArgValueError('credentials.crlPem must be a PEM string');
  return pemContext(c);
}

/** A secure context built now, so that bad PEM is an error here and not at the next handshake. */
function checkedContext(o: tls.SecureContextOptions): void {
  try {
    tls.createSecureContext(o);
  } catch (e) {
    throw new ArgValueError(`the TLS credentials do not load: ${(e as Error).message}`);
  }
}

export class TlsListener {
  private readonly tcp: net.Server;
  private readonly tls: tls.Server;
  private readonly handshakeTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly maxConnections: number;
  private readonly maxPending: number;
  private readonly maxPendingPerAddress: number;
  private readonly cluster: string;
  private creds: TlsCredentials;
  private readonly pendingBy = new Map<string, number>();
  // Unverified connections by "address port" (unique among live ones), so the TLS socket that comes out
  // of the handshake finds its accounting.
  private readonly unverified = new Map<string, { addr: string; raw: net.Socket; settle(): void }>();
  private readonly verified = new Map<tls.TLSSocket, TlsPeer>();
  private all = 0;
  private pending = 0;
  private refusedSinceLog = 0;
  private lastRefusalLog = 0;

  constructor(
    opts: TlsListenOptions,
    private readonly hooks: Hooks,
  ) {
    if (typeof opts?.host !== 'string' || !opts.host) throw new ArgValueError('host must be an address');
    if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535)
      throw new ArgRangeError(`port must be 0-65535, got ${String(opts.port)}`);
    if (typeof opts.cluster !== 'string' || !opts.cluster) throw new ArgValueError('cluster must be a cluster name');
    this.cluster = opts.cluster;
    this.handshakeTimeoutMs = limit('handshakeTimeoutMs', opts.handshakeTimeoutMs, 10_000);
    this.idleTimeoutMs = limit('idleTimeoutMs', opts.idleTimeoutMs, 300_000);
    this.maxConnections = limit('maxConnections', opts.maxConnections, 256, 65_536);
    this.maxPending = limit('maxPending', opts.maxPending, 64, 65_536);
    this.maxPendingPerAddress = limit('maxPendingPerAddress', opts.maxPendingPerAddress, 8, 65_536);
    const ctx = contextOptions(opts.credentials);
    checkedContext(ctx);
    this.creds = { ...opts.credentials };
    this.tls = tls.createServer({
      ...ctx,
      requestCert: true,
      rejectUnauthorized: true,
      handshakeTimeout: this.handshakeTimeoutMs,
    });
    this.tls.on('secureConnection', (s) => this.verifiedConnection(s));
    this.tls.on('tlsClientError', (e, s) => this.handshakeFailed(e, s));
    this.tcp = net.createServer((raw) => this.accept(raw));
    this.tcp.on('error', (e) => hooks.log.error({ err: e }, `the TLS listener failed: ${e.message}`));
    this.address = { host: opts.host, port: opts.port };
  }

  /** Where it listens (the kernel's port once listening on port 0). */
  address: { host: string; port: number };

  /** Connections now: `pending` (in the handshake), `open` (verified and served). */
  get connections(): { pending: number; open: number } {
    return { pending: this.pending, open: this.verified.size };
  }

  async listen(): Promise<void> {
    const { host, port } = this.address;
    const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    await new Promise<void>((resolve, reject) => {
      const failed = (e: NodeJS.ErrnoException) =>
        reject(
          new ListenError(`cannot serve TLS on ${where}: ${e.message}`, where, {
            code: e.code ?? 'ERR_INTERNAL',
            cause: e,
          }),
        );
      this.tcp.once('error', failed);
      this.tcp.listen(port, host, () => {
        this.tcp.off('error', failed);
        resolve();
      });
    });
    const a = this.tcp.address();
    if (a && typeof a === 'object') this.address = { host: a.address, port: a.port };
  }

  /** Stop accepting and drop every connection, verified or not. Idempotent. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.tcp.close(() => resolve()));
    for (const s of this.verified.keys()) s.destroy();
    for (const u of this.unverified.values()) u.raw.destroy();
    await closed;
  }

  /**
   * New credentials (rotation, or a new CRL): connections from now on are checked against them. Open
   * connections whose certificate serial the new CRL names are closed. Throws ArgValueError (and keeps the
   * old ones) when they do not load. Returns how many connections it closed.
   */
  async setCredentials(c: TlsCredentials): Promise<number> {
    const ctx = contextOptions(c);
    checkedContext(ctx);
    const revoked = c.crlPem ? await revokedSerials(c.crlPem, c.caPem) : new Set<string>();
    this.tls.setSecureContext(ctx);
    this.creds = { ...c };
    let closed = 0;
    for (const [s, peer] of this.verified)
      if (revoked.has(normalSerial(peer.serial))) {
        this.hooks.log.warn(
          { peer: { role: peer.role, name: peer.name, serial: peer.serial } },
          `closed the connection of ${peer.role} ${peer.name}: the new CRL revokes its certificate`,
        );
        this.hooks.metrics.tlsConnections.inc({ outcome: 'revoked_open' });
        s.destroy();
        closed++;
      }
    return closed;
  }

  /** `setCredentials` with only the CRL changed. */
  setCrl(crlPem: string): Promise<number> {
    if (typeof crlPem !== 'string' || !crlPem) throw new ArgValueError('the CRL must be a PEM string');
    return this.setCredentials({ ...this.creds, crlPem });
  }

  private count(outcome: TlsOutcome): void {
    this.hooks.metrics.tlsConnections.inc({ outcome });
  }

  private accept(raw: net.Socket): void {
    raw.on('error', () => raw.destroy());
    const addr = raw.remoteAddress ?? '?';
    const mine = this.pendingBy.get(addr) ?? 0;
    let refusal: string | null = null;
    if (this.all >= this.maxConnections) refusal = `${this.maxConnections} TLS connections in all`;
    else if (this.pending >= this.maxPending) refusal = `${this.maxPending} connections in their handshake`;
    else if (mine >= this.maxPendingPerAddress)
      refusal = `${this.maxPendingPerAddress} connections in their handshake from ${addr}`;
    if (refusal) {
      raw.destroy();
      this.count('too_many');
      this.refusedSinceLog++;
      const now = Date.now();
      if (now - this.lastRefusalLog >= REFUSAL_LOG_EVERY_MS) {
        this.hooks.log.warn(
          { addr, refused: this.refusedSinceLog },
          `refused a TLS connection from ${addr}: sosd holds ${refusal} (${this.refusedSinceLog} refused since the last such line)`,
        );
        this.lastRefusalLog = now;
        this.refusedSinceLog = 0;
      }
      return;
    }
    const key = `${addr} ${raw.remotePort}`;
    this.all++;
    this.pending++;
    this.pendingBy.set(addr, mine + 1);
    this.hooks.metrics.tlsPending.set(this.pending);
    const settle = () => {
      if (!this.unverified.delete(key)) return;
      this.pending--;
      const n = (this.pendingBy.get(addr) ?? 1) - 1;
      if (n > 0) this.pendingBy.set(addr, n);
      else this.pendingBy.delete(addr);
      this.hooks.metrics.tlsPending.set(this.pending);
    };
    this.unverified.set(key, { addr, raw, settle });
    raw.once('close', () => {
      settle();
      this.all--;
    });
    this.tls.emit('connection', raw);
  }

  private verifiedConnection(s: tls.TLSSocket): void {
    s.on('error', () => s.destroy());
    const key = `${s.remoteAddress ?? '?'} ${s.remotePort}`;
    const u = this.unverified.get(key);
    const addr = u?.addr ?? s.remoteAddress ?? '?';
    u?.settle();
    let peer: PeerIdentity;
    try {
      peer = peerIdentity(s, this.cluster);
    } catch (e) {
      const code = (e as SosError).code ?? 'ERR_NO_PEER_CERT';
      this.count('identity_refused');
      this.hooks.log.warn({ addr, code }, `refused a TLS peer from ${addr}: ${(e as Error).message}`);
      const refusal: Reply = {
        v: 1,
        id: null,
        ok: false,
        error: {
          code: 'ERR_PEER_REFUSED',
          message: `sosd serves members of cluster ${this.cluster} only: ${(e as Error).message}`,
        },
      };
      s.resume(); // what it sent is dropped unread
      s.setTimeout(REFUSED_LINGER_MS, () => s.destroy());
      s.end(JSON.stringify(refusal) + '\n');
      return;
    }
    const p: TlsPeer = { kind: 'tls', role: peer.role, name: peer.name, serial: peer.serial };
    this.count('accepted');
    this.verified.set(s, p);
    this.hooks.metrics.tlsOpen.set(this.verified.size);
    s.once('close', () => {
      this.verified.delete(s);
      this.hooks.metrics.tlsOpen.set(this.verified.size);
    });
    this.hooks.log.info({ addr, peer: { role: p.role, name: p.name, serial: p.serial } }, 'TLS peer connected');
    // Idle: no bytes either way for the whole period, and no request in flight (a slow op is not idle).
    s.setTimeout(this.idleTimeoutMs, () => {
      if (inFlight(s) > 0) return;
      this.count('idle');
      this.hooks.log.debug({ addr, peer: p.name }, 'closed an idle TLS connection');
      s.destroy();
    });
    this.hooks.serve(s, p);
  }

  private handshakeFailed(e: Error & { code?: string }, s: tls.TLSSocket): void {
    s.destroy(); // Node leaves a timed-out handshake open
    // Node closed the connection already. A certificate that failed verification (unknown CA, revoked,
    // expired) comes as a hang-up with the reason in authorizationError.
    const why = s.authorizationError ? String(s.authorizationError) : (e.code ?? e.message);
    const outcome: TlsOutcome =
      e.code === 'ERR_TLS_HANDSHAKE_TIMEOUT'
        ? 'handshake_timeout'
        : s.authorizationError
          ? 'certificate_refused'
          : 'handshake_failed';
    this.count(outcome);
    this.hooks.log.warn(
      { code: e.code, reason: why },
      `refused a TLS connection before its certificate was verified: ${why}`,
    );
  }
}

/** Requests in flight on a socket the daemon serves (it keeps the count there). */
export const IN_FLIGHT = Symbol('sosd.inFlight');
function inFlight(s: net.Socket): number {
  return (s as net.Socket & { [IN_FLIGHT]?: number })[IN_FLIGHT] ?? 0;
}

/** The serials `crlPem` revokes, when the CA signed it (a CRL that is not the CA's closes nothing). */
async function revokedSerials(crlPem: string, caPem: string): Promise<Set<string>> {
  let crl: x509.X509Crl;
  let ca: x509.X509Certificate;
  try {
    crl = new x509.X509Crl(crlPem);
    ca = new x509.X509Certificate(caPem);
  } catch (e) {
    throw new ArgValueError(`the CRL or the CA certificate does not parse: ${(e as Error).message}`);
  }
  if (!(await crl.verify({ publicKey: ca.publicKey })))
    throw new ArgValueError("the CRL is not signed by the cluster CA's key");
  return new Set(crl.entries.map((e) => normalSerial(e.serialNumber)));
}

/** Hex serials compare without case or leading zeros. */
const normalSerial = (s: string): string => s.toLowerCase().replace(/^0+(?=.)/, '');
