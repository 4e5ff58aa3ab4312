/**
 * A client of sosd's TLS API, for the cluster's members: one connection over mutual TLS that carries
 * many requests at once, replies matched by id. The server must prove itself too: a certificate of the
 * cluster CA (not revoked by our CRL, when we have one), of this cluster, of a node (sosd runs on
 * nodes), and, when `serverName` is given, of that node.
 *
 *   const c = await RemoteClient.connect({ host, port, credentials: loadMember(dir, 'operator', 'operator'), cluster });
 *   await c.request('cluster.status');
 */
import tls from 'node:tls';
import { loadConfig, loadMember } from '../cluster/folder.js';
import { peerIdentity, tlsOptions, type PeerIdentity, type Role } from '../cluster/identity.js';
import type { NodeRecord } from '../cluster/membership.js';
import { ArgValueError, SosError } from '../errors.js';
import { DaemonError } from './errors.js';
import { MAX_FRAME, PROTOCOL_VERSION, type Reply } from './protocol.js';
import type { TlsCredentials } from './tls.js';

export interface RemoteOptions {
  host: string;
  port: number;
  /** Our own certificate and key, the CA, and the CRL (which the server's certificate is checked against). */
  credentials: TlsCredentials;
  /** The cluster the server's certificate must name. */
  cluster: string;
  /** The node name the server's certificate must carry (its CN); default: any node of the cluster. */
  serverName?: string;
  /** The roles the server's certificate may have (default: node). */
  serverRoles?: readonly Role[];
  /** Connecting, the handshake and the first round trip must end within this (default 10 000 ms). */
  connectTimeoutMs?: number;
}

export interface RequestOptions {
  /** The reply must come within this (default 30 000 ms); else ETIMEDOUT, and a late reply is dropped. */
  timeoutMs?: number;
}

// A reply line longer than this closes the connection: a server that never sends a newline is not buffered forever.
const MAX_REPLY = 16 * 2 ** 20;

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

export class RemoteClient {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private buf = '';
  private answered = false;
  private ended: DaemonError | null = null;

  private constructor(
    private readonly sock: tls.TLSSocket,
    /** The server's verified identity. */
    readonly server: PeerIdentity,
    private readonly where: string,
  ) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.read(d));
    sock.on('error', (e: NodeJS.ErrnoException) => this.fail(connectionError(this.where, e)));
    sock.on('close', () => this.fail(this.closedError()));
  }

  /**
   * Connect and check the server's certificate; then, unless `probe` is false, one round trip (`version`)
   * so that a server that refuses our certificate (revoked, another CA, another cluster) is an error here,
   * not at the first request.
   */
  static async connect(opts: RemoteOptions, { probe = true }: { probe?: boolean } = {}): Promise<RemoteClient> {
    const c = await open(opts);
    if (!probe) return c;
    const timeoutMs = opts.connectTimeoutMs ?? 10_000;
    try {
      const v = (await c.request('version', {}, { timeoutMs })) as { protocol?: unknown };
      if (v?.protocol !== PROTOCOL_VERSION)
        throw new DaemonError(`sosd at ${c.where} speaks protocol ${String(v?.protocol)}, not ${PROTOCOL_VERSION}`, {
          code: 'ERR_VERSION',
        });
    } catch (e) {
      c.close();
      throw e;
    }
    return c;
  }

  /** @internal */
  static wrap(sock: tls.TLSSocket, server: PeerIdentity, where: string): RemoteClient {
    return new RemoteClient(sock, server, where);
  }

  /** Whether the connection is gone (every request from now on fails with its error). */
  get closed(): boolean {
    return this.ended !== null;
  }

  /** Send one request; resolves with its result, rejects with a DaemonError (the server's code, or the connection's). */
  async request(op: string, args: Record<string, unknown> = {}, opts: RequestOptions = {}): Promise<unknown> {
    if (this.ended) throw this.ended;
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const id = this.nextId++;
    const line = JSON.stringify({ v: PROTOCOL_VERSION, id, op, args });
    if (Buffer.byteLength(line) > MAX_FRAME)
      throw new DaemonError(`the request for op "${op}" exceeds ${MAX_FRAME} bytes: not sent`, {
        code: 'ERR_FRAME_TOO_LARGE',
      });
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new DaemonError(`sosd at ${this.where} did not answer op "${op}" within ${timeoutMs} ms`, {
            code: 'ETIMEDOUT',
          }),
        );
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.sock.write(line + '\n');
    });
  }

  /** Close the connection; requests still waiting fail with ERR_CLOSED. Idempotent. */
  close(): void {
    this.fail(new DaemonError(`the connection to sosd at ${this.where} was closed`, { code: 'ERR_CLOSED' }));
    this.sock.end();
    this.sock.destroy();
  }

  private read(d: string): void {
    this.buf += d;
    for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      if (line.trim()) this.reply(line);
    }
    if (this.buf.length > MAX_REPLY) {
      this.fail(
        new DaemonError(`sosd at ${this.where} sent a reply over ${MAX_REPLY} bytes`, { code: 'ERR_BAD_FRAME' }),
      );
      this.sock.destroy();
    }
  }

  private reply(line: string): void {
    let r: Reply;
    try {
      r = JSON.parse(line) as Reply;
    } catch (e) {
      this.fail(
        new DaemonError(`sosd at ${this.where} answered with a frame that is not JSON`, {
          code: 'ERR_BAD_FRAME',
          cause: e,
        }),
      );
      this.sock.destroy();
      return;
    }
    this.answered = true;
    const err = r?.ok
      ? null
      : new DaemonError(String(r?.error?.message ?? 'sosd failed'), {
          code: typeof r?.error?.code === 'string' ? r.error.code : 'ERR_INTERNAL',
        });
    // A reply without an id is about the connection (a refusal, a frame it could not read): every waiting request hears it.
    if (typeof r?.id !== 'number') {
      if (err) for (const id of [...this.pending.keys()]) this.settle(id, err);
      return;
    }
    this.settle(r.id, err, r.result);
  }

  private settle(id: number, err: Error | null, result?: unknown): void {
    const p = this.pending.get(id);
    if (!p) return; // timed out already
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve(result);
  }

  private fail(e: DaemonError): void {
    this.ended ??= e;
    for (const id of [...this.pending.keys()]) this.settle(id, this.ended);
  }

  private closedError(): DaemonError {
    return new DaemonError(
      `sosd at ${this.where} closed the connection${this.pending.size ? ' before answering' : ''}${
        this.answered ? '' : ' (it may have refused our certificate: revoked, expired, or not of its CA or cluster)'
      }`,
      { code: 'ECONNRESET' },
    );
  }
}

/** A connection whose server's certificate was checked, without the round trip. */
async function open(opts: RemoteOptions): Promise<RemoteClient> {
  if (typeof opts?.host !== 'string' || !opts.host) throw new ArgValueError('host must be an address or a name');
  if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535)
    throw new ArgValueError(`port must be 1-65535, got ${String(opts.port)}`);
  if (typeof opts.cluster !== 'string' || !opts.cluster) throw new ArgValueError('cluster must be a cluster name');
  const c = opts.credentials;
  if (!c || typeof c.caPem !== 'string' || typeof c.certPem !== 'string' || typeof c.keyPem !== 'string')
    throw new ArgValueError('credentials must be { caPem, certPem, keyPem, crlPem? } (loadMember gives them)');
  const where = opts.host.includes(':') ? `[${opts.host}]:${opts.port}` : `${opts.host}:${opts.port}`;
  const roles = opts.serverRoles ?? ['node'];
  const timeoutMs = opts.connectTimeoutMs ?? 10_000;
  const sni = opts.serverName && !/^[\d.]+$|:/.test(opts.serverName) ? { servername: opts.serverName } : {};
  return await new Promise<RemoteClient>((resolve, reject) => {
    const sock = tls.connect({ host: opts.host, port: opts.port, ...tlsOptions(c.caPem, c, c.crlPem), ...sni });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(
        new DaemonError(`sosd at ${where} did not complete the TLS handshake within ${timeoutMs} ms`, {
          code: 'ETIMEDOUT',
        }),
      );
    }, timeoutMs);
    const failed = (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(connectionError(where, e));
    };
    sock.once('error', failed);
    sock.once('secureConnect', () => {
      clearTimeout(timer);
      sock.off('error', failed);
      let server: PeerIdentity;
      try {
        server = peerIdentity(sock, opts.cluster);
        if (!roles.includes(server.role))
          throw new SosError(`the server at ${where} is ${server.role} ${server.name}, not a ${roles.join(' or ')}`, {
            code: 'ERR_ROLE',
          });
        if (opts.serverName !== undefined && server.name !== opts.serverName)
          throw new SosError(`the server at ${where} is ${server.role} ${server.name}, not ${opts.serverName}`, {
            code: 'ERR_WRONG_PEER',
          });
      } catch (e) {
        sock.destroy();
        const err = e as SosError;
        return reject(
          new DaemonError(`refusing sosd at ${where}: ${err.message}`, {
            code: err.code ?? 'ERR_NO_PEER_CERT',
            cause: e,
          }),
        );
      }
      resolve(RemoteClient.wrap(sock, server, where));
    });
  });
}

/**
 * Connect to the API of the node whose record (as listNodes read it) is `rec`, as the member
 * `as` of the cluster folder `dir` (an operator for sosctl, this node for a peer).
 */
export async function connectNode(
  dir: string,
  rec: NodeRecord,
  as: { role: Role; name: string },
): Promise<RemoteClient> {
  if (typeof rec.addr !== 'string' || typeof rec.api !== 'number')
    throw new SosError(`node ${rec.name} publishes no API address (its sosd runs with --api off?)`, {
      code: 'ERR_NOT_FOUND',
    });
  return RemoteClient.connect({
    host: rec.addr,
    port: rec.api,
    credentials: loadMember(dir, as.role, as.name),
    cluster: loadConfig(dir).cluster,
    serverName: rec.name,
  });
}

/** One request over a connection of its own: connect, ask, close. */
export async function remoteRequest(
  opts: RemoteOptions,
  op: string,
  args: Record<string, unknown> = {},
  req: RequestOptions = {},
): Promise<unknown> {
  const c = await RemoteClient.connect(opts, { probe: false });
  try {
    return await c.request(op, args, req);
  } finally {
    c.close();
  }
}

/** A failed connect or handshake as a DaemonError that says what to check. */
function connectionError(where: string, e: NodeJS.ErrnoException): DaemonError {
  const code = e.code ?? 'ECONNRESET';
  let hint = '';
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ENOTFOUND')
    hint = '; is sosd running and serving TLS there?';
  else if (/^ERR_SSL_|^ERR_TLS_|CERT|UNABLE_TO|SELF_SIGNED/.test(code))
    hint =
      ': the TLS handshake failed (is our certificate of the cluster CA, current and not revoked, and the server a member?)';
  return new DaemonError(`cannot reach sosd at ${where}: ${e.message}${hint}`, { code, cause: e });
}
