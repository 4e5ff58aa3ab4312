/**
 * The node daemon's server. Two walls keep other users out: the socket is
 * born 0600 (only the daemon's user may connect to it), and every peer's
 * credentials (SO_PEERCRED) are checked on connect: root or the daemon's own
 * uid, everyone else is refused and logged. The socket path is the caller's:
 * the server never chmods or unlinks what it did not make, only a stale
 * socket that nobody answers on.
 *
 * The same frames are served to the cluster's members over mutual TLS
 * (`listenTls`, lib/daemon/tls.ts). The local socket may call every op (it is
 * the node's admin); a TLS peer only the ops registered with its
 * certificate's role, others get ERR_FORBIDDEN.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { ROLES, type Role } from '../cluster/identity.js';
import { ArgValueError, SosError } from '../errors.js';
import { native } from '../native/index.js';
import { nodeInfo } from '../node-info.js';
import { FrameError, ListenError } from './errors.js';
import { startHttp, type HttpAddress, type HttpOptions } from './http.js';
import { DaemonMetrics, UNKNOWN_OP, type Outcome } from './metrics.js';
import { MAX_FRAME, PROTOCOL_VERSION, parseRequest, type Reply } from './protocol.js';
import { IN_FLIGHT, TlsListener, type TlsCredentials, type TlsListenOptions, type TlsPeer } from './tls.js';
import type http from 'node:http';

/** Who sent a request: a local process (root or sosd's user), or a cluster member over TLS. */
export type Peer = { kind: 'local'; uid: number } | TlsPeer;

/** What a handler is told besides its args. */
export interface RequestContext {
  peer: Peer;
}

/**
 * An op's handler: its validated args in, a JSON-serialisable result (or a promise of one) out. `ctx` says who
 * asks, so that a service can scope further than the op's roles (e.g. only the node a record names).
 */
export type Handler = (args: Record<string, unknown>, ctx: RequestContext) => unknown;

/** Who may call an op besides the local socket. */
export interface OpOptions {
  /** The certificate roles whose TLS peers may call it (default none: the op is local-only). */
  roles?: readonly Role[];
}

/** A JSON schema of an op's args: an object schema with `additionalProperties: false`. */
export type ArgsSchema = Record<string, unknown>;

/** An op as plain data, for `registerAll` (the shape services such as ClusterService hand out). */
export interface OpSpec {
  op: string;
  schema: ArgsSchema;
  handler: Handler;
  /** As `register`'s `options.roles`: who may call it over TLS (default: nobody, local-only). */
  roles?: readonly Role[];
}

/** The args schema of an op that takes none. */
export const NO_ARGS: ArgsSchema = Object.freeze({ type: 'object', additionalProperties: false, properties: {} });

/** A pino-compatible logger: fields first, then the message. */
export interface DaemonLogger {
  debug(fields: Record<string, unknown>, msg: string): void;
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

export interface DaemonServerOptions {
  /**
   * Where the server says what it did and refused (default: nowhere): a pino logger (or anything with
   * its `info(fields, msg)` shape), or a function given each warning and error as one line of text.
   */
  log?: DaemonLogger | ((line: string) => void);
  /** The metrics to count into (default: a new DaemonMetrics, with its own registry). */
  metrics?: DaemonMetrics;
  /** Also serve `GET /metrics` and `GET /healthz` over HTTP there (default: no HTTP listener). */
  http?: HttpOptions;
}

// A refused peer gets its reply and this long to read it before the socket is destroyed.
const REFUSED_LINGER_MS = 1000;
// Requests of one connection being served at once; past this, its socket is not read until one ends.
const MAX_IN_FLIGHT = 64;
// How much of a field name an ERR_BAD_ARGS message quotes.
const MAX_NAME_IN_MESSAGE = 64;

interface Entry {
  handler: Handler;
  validate: ValidateFunction;
  roles: ReadonlySet<Role>;
}

export class DaemonServer {
  /** The metrics this server counts into; register a service's own metrics on `metrics.registry`. */
  readonly metrics: DaemonMetrics;
  private readonly server: net.Server;
  private readonly ops = new Map<string, Entry>();
  private readonly opNames = new Set<string>();
  private readonly ajv = new Ajv({ strict: true, allErrors: false, coerceTypes: false, useDefaults: false });
  private readonly started = Date.now();
  private readonly uid = process.getuid?.() ?? 0;
  private readonly log: DaemonLogger;
  private readonly httpOptions: HttpOptions | undefined;
  private http: http.Server | null = null;
  private tls: TlsListener | null = null;
  private serving = false;

  constructor(
    readonly socketPath: string,
    options: DaemonServerOptions = {},
  ) {
    this.log = toLogger(options.log);
    this.metrics = options.metrics ?? new DaemonMetrics();
    this.httpOptions = options.http;
    // Any member may ask which protocol is spoken; what the node is and does stays local.
    this.register('version', NO_ARGS, () => ({ protocol: PROTOCOL_VERSION, daemon: 'sosd' }), { roles: ROLES });
    this.register('node.info', NO_ARGS, () => nodeInfo());
    this.register('status', NO_ARGS, () => ({ pid: process.pid, uptimeMs: Date.now() - this.started }));
    this.server = net.createServer((sock) => this.admit(sock));
  }

  /**
   * Serve `op`: its args are checked against `schema` (compiled once, here) before `handler` sees them, and
   * a request whose args do not fit gets `ERR_BAD_ARGS` naming the field. The schema must be an object
   * schema with `additionalProperties: false` (ajv strict mode: an unknown keyword is refused too). The
   * handler may be async; a SosError it throws or rejects with is the reply's code and message, anything
   * else is `ERR_INTERNAL` (logged with its stack, which the peer never sees). Ops may be added while the
   * server listens. `options.roles` are the certificate roles whose TLS peers may call it; without them the
   * op is served on the local socket only. Throws ArgValueError for an op already served, a schema that
   * does not compile, or a role that is not one.
   */
  register(op: string, schema: ArgsSchema, handler: Handler, options: OpOptions = {}): this {
    if (typeof op !== 'string' || !/^[a-z][a-z0-9]*(?:[._-][a-z0-9]+)*$/.test(op))
      throw new ArgValueError(`op must be a lowercase name such as "node.info", not ${JSON.stringify(op)}`);
    if (this.ops.has(op)) throw new ArgValueError(`op "${op}" is already registered`);
    if (typeof handler !== 'function') throw new ArgValueError(`op "${op}": handler must be a function`);
    if (schema?.type !== 'object' || schema.additionalProperties !== false)
      throw new ArgValueError(`op "${op}": its args schema must be {type: 'object', additionalProperties: false, …}`);
    const roles: unknown = options?.roles ?? [];
    if (!Array.isArray(roles) || !roles.every((r: unknown) => ROLES.includes(r as Role)))
      throw new ArgValueError(`op "${op}": roles must be a list of ${ROLES.join(', ')}, not ${JSON.stringify(roles)}`);
    let validate: ValidateFunction;
    try {
      validate = this.ajv.compile(schema);
    } catch (e) {
      throw new ArgValueError(`op "${op}": its args schema does not compile: ${(e as Error).message}`);
    }
    this.ops.set(op, { handler, validate, roles: new Set(roles as Role[]) });
    this.opNames.add(op);
    return this;
  }

  /** `register` each of `ops`. */
  registerAll(ops: Iterable<OpSpec>): this {
    for (const o of ops) this.register(o.op, o.schema, o.handler, { roles: o.roles });
    return this;
  }

  /** The ops served, in registration order. */
  get opList(): string[] {
    return [...this.opNames];
  }

  /** The ops a TLS peer of `role` may call, in registration order. */
  opsFor(role: Role): string[] {
    return [...this.opNames].filter((op) => this.ops.get(op)!.roles.has(role));
  }

  /** Whether the socket serves (what `/healthz` reports). */
  get listening(): boolean {
    return this.serving;
  }

  /** Where the HTTP listener is bound (its port when asked for port 0), or null when there is none. */
  get httpAddress(): HttpAddress | null {
    const a = this.http?.address();
    return a && typeof a === 'object' ? { host: a.address, port: a.port } : null;
  }

  /**
   * Listen on `socketPath`. Its folder is made 0700 when missing (an existing one keeps its mode); a
   * stale socket there is replaced, anything else is a ListenError and stays as it was. Then the HTTP
   * listener when asked for; when it cannot listen, the socket is closed again and its ListenError thrown.
   */
  async listen(): Promise<void> {
    const p = this.socketPath;
    fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o700 });
    await clearStale(p);
    await new Promise<void>((resolve, reject) => {
      const failed = (e: NodeJS.ErrnoException) =>
        reject(new ListenError(`cannot listen on ${p}: ${e.message}`, p, { code: e.code ?? 'ERR_INTERNAL', cause: e }));
      this.server.once('error', failed);
      // The socket is born 0600: bind(2) gives it 0777 & ~umask, and it binds synchronously inside listen()
      // (only its errors come later). No window with a looser mode, unlike chmod after bind; and bind(2) never
      // replaces an existing file (EADDRINUSE), unlike binding in a private folder and rename(2)ing the socket
      // into place, which would replace whatever appeared at the path in between. The umask is the process's:
      // a file made meanwhile by another thread only comes out stricter, and the old one is back at once.
      const umask = process.umask(0o177);
      process.umask(umask | 0o177);
      try {
        this.server.listen(p, () => {
          this.server.off('error', failed);
          resolve();
        });
      } finally {
        process.umask(umask);
      }
    });
    const mode = fs.lstatSync(p).mode & 0o777;
    if (mode & 0o077) {
      await this.close();
      throw new ListenError(`${p} came out with mode 0${mode.toString(8)}, readable by others`, p, {
        code: 'ERR_SOCKET_MODE',
      });
    }
    this.serving = true;
    this.metrics.up.set(1);
    this.metrics.startTime.set(Date.now() / 1000);
    if (this.httpOptions) {
      try {
        this.http = await startHttp(this.httpOptions, {
          metrics: this.metrics,
          healthy: () => this.serving,
          started: this.started,
        });
      } catch (e) {
        await this.close();
        throw e;
      }
    }
  }

  /**
   * Serve the same ops to the cluster's members over mutual TLS on `opts.host:opts.port` (see TlsListenOptions
   * for its bounds). Independent of `listen()`; once per server. Resolves with where it listens (the kernel's
   * port for port 0); a ListenError when it cannot, ArgValueError for credentials that do not load.
   */
  async listenTls(opts: TlsListenOptions): Promise<{ host: string; port: number }> {
    if (this.tls) throw new ArgValueError('sosd already serves TLS: one listener per server');
    const l = new TlsListener(opts, {
      log: this.log,
      metrics: this.metrics,
      serve: (sock, peer) => this.serve(sock, peer),
    });
    this.tls = l;
    try {
      await l.listen();
    } catch (e) {
      this.tls = null;
      throw e;
    }
    this.log.info({ tls: l.address, cluster: opts.cluster }, 'serving TLS');
    return l.address;
  }

  /** Where the TLS listener is bound, or null when there is none. */
  get tlsAddress(): { host: string; port: number } | null {
    return this.tls?.address ?? null;
  }

  /** TLS connections now: `pending` (in their handshake) and `open` (verified); zeros without a listener. */
  get tlsConnections(): { pending: number; open: number } {
    return this.tls?.connections ?? { pending: 0, open: 0 };
  }

  /**
   * A new CRL for the TLS listener (after `revoke`, or its periodic re-signing), without a restart: new
   * connections are checked against it, and open ones whose certificate it revokes are closed. Resolves
   * with how many it closed; ArgValueError (the old CRL kept) when it does not load or is not the CA's.
   */
  async setCrl(crlPem: string): Promise<number> {
    if (!this.tls) throw new ArgValueError('sosd serves no TLS: call listenTls first');
    return await this.tls.setCrl(crlPem);
  }

  /** New credentials for the TLS listener (rotation of this node's certificate, a new CA bundle or CRL): as `setCrl`. */
  async setTlsCredentials(credentials: TlsCredentials): Promise<number> {
    if (!this.tls) throw new ArgValueError('sosd serves no TLS: call listenTls first');
    return await this.tls.setCredentials(credentials);
  }

  /** Stop serving: the sockets first (so /healthz says 503 meanwhile), then the HTTP listener. Idempotent. */
  async close(): Promise<void> {
    this.serving = false;
    this.metrics.up.set(0);
    const t = this.tls;
    this.tls = null;
    await Promise.all([new Promise<void>((resolve) => this.server.close(() => resolve())), t?.close()]);
    const h = this.http;
    this.http = null;
    if (h) {
      await new Promise<void>((resolve) => {
        h.close(() => resolve());
        h.closeAllConnections();
      });
    }
  }

  /** Serve root and the daemon's own user; refuse (and log) everyone else, and a peer that cannot be told. */
  private admit(sock: net.Socket): void {
    sock.on('error', () => sock.destroy());
    let who: string;
    let fields: Record<string, unknown>;
    try {
      const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd ?? -1;
      const cred = native.peerCred(fd);
      if (cred.uid === 0 || cred.uid === this.uid) {
        this.metrics.connections.inc();
        this.metrics.connectionsOpen.inc();
        sock.once('close', () => this.metrics.connectionsOpen.dec());
        return this.serve(sock, { kind: 'local', uid: cred.uid });
      }
      who = `uid ${cred.uid} gid ${cred.gid} pid ${cred.pid}`;
      fields = { uid: cred.uid, gid: cred.gid, pid: cred.pid };
    } catch (e) {
      who = `a peer whose credentials cannot be read (${(e as Error).message})`;
      fields = { reason: (e as Error).message };
    }
    this.metrics.connectionsRefused.inc();
    const allowed = this.uid === 0 ? 'root' : `root and uid ${this.uid}`;
    this.log.warn({ peer: fields }, `refused a connection from ${who}: sosd serves ${allowed} only`);
    const refusal: Reply = {
      v: 1,
      id: null,
      ok: false,
      error: { code: 'ERR_PEER_REFUSED', message: `sosd serves ${allowed} only; refused ${who}` },
    };
    sock.resume(); // what it sent is dropped unread
    sock.setTimeout(REFUSED_LINGER_MS, () => sock.destroy());
    sock.end(JSON.stringify(refusal) + '\n');
  }

  /** Serve request lines on a connection whose peer is admitted: the local socket's or a verified TLS one's. */
  private serve(sock: net.Socket, peer: Peer): void {
    const counted = sock as net.Socket & { [IN_FLIGHT]?: number };
    const ctx: RequestContext = { peer };
    let buf = '';
    // Inside a line already refused as too large: its rest is dropped up to its newline, so one
    // oversized line gets one reply, and the line after it is served as usual.
    let skipping = false;
    let inFlight = 0;
    const send = (line: string) => {
      if (!sock.destroyed && sock.writable) sock.write(line);
    };
    // Read only while fewer than MAX_IN_FLIGHT requests run and the peer reads its replies.
    const flow = () => {
      if (inFlight < MAX_IN_FLIGHT && !sock.writableNeedDrain) {
        if (sock.isPaused()) sock.resume();
      } else if (!sock.isPaused()) sock.pause();
    };
    const pump = () => {
      while (inFlight < MAX_IN_FLIGHT) {
        const nl = buf.indexOf('\n');
        if (nl < 0) break;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.trim()) continue;
        // Replies go out as their requests complete (an async op does not hold back the ones after
        // it): a client matches them by id.
        counted[IN_FLIGHT] = ++inFlight;
        void this.handle(line, ctx).then((out) => {
          counted[IN_FLIGHT] = --inFlight;
          send(out);
          pump();
        });
      }
      if (buf.length > MAX_FRAME && buf.indexOf('\n') < 0) {
        buf = '';
        skipping = true;
        this.count(UNKNOWN_OP, 'rejected', 'ERR_FRAME_TOO_LARGE');
        send(
          JSON.stringify(reply(null, new FrameError('ERR_FRAME_TOO_LARGE', `frame exceeds ${MAX_FRAME} bytes`))) + '\n',
        );
      }
      flow();
    };
    sock.on('drain', flow);
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      if (skipping) {
        const nl = chunk.indexOf('\n');
        if (nl < 0) return;
        skipping = false;
        chunk = chunk.slice(nl + 1);
      }
      buf += chunk;
      pump();
    });
  }

  /**
   * The reply line (newline included) to one request `line` from `peer`, exactly as a connection would be
   * answered: for tests and fuzzing, which need no socket. Never rejects.
   */
  answer(line: string, peer: Peer): Promise<string> {
    return this.handle(String(line), { peer });
  }

  /** One request line's reply line; never rejects. */
  private async handle(line: string, ctx: RequestContext): Promise<string> {
    const t0 = process.hrtime.bigint();
    let id: number | null = null;
    let op = UNKNOWN_OP;
    const peer = ctx.peer;
    try {
      // A TLS peer is told only of the ops it may call.
      const req = parseRequest(line, this.opNames, peer.kind === 'tls' ? this.opsFor(peer.role) : undefined);
      id = req.id;
      op = req.op;
      const entry = this.ops.get(op)!;
      // Before its args are looked at: a peer that may not call the op learns nothing of its schema.
      if (peer.kind === 'tls' && !entry.roles.has(peer.role)) throw this.forbidden(op, entry, peer, id);
      const args = req.args ?? {};
      if (!entry.validate(args)) throw new FrameError('ERR_BAD_ARGS', describe(entry.validate.errors), id);
      const result = await entry.handler(args, ctx);
      const out = JSON.stringify({ v: 1, id, ok: true, result } satisfies Reply) + '\n';
      this.count(op, 'ok', null, t0);
      return out;
    } catch (e) {
      if (e instanceof FrameError) {
        const outcome = e.code === 'ERR_BAD_ARGS' ? 'bad_args' : e.code === 'ERR_FORBIDDEN' ? 'forbidden' : 'rejected';
        this.count(op, outcome, e.code, op === UNKNOWN_OP ? null : t0);
        return JSON.stringify(reply(e.id ?? id, e)) + '\n';
      }
      if (e instanceof SosError && typeof (e as { code?: unknown }).code === 'string') {
        this.count(op, 'error', null, t0);
        return JSON.stringify(reply(id, e)) + '\n';
      }
      // Not one of ours (a bug, or a result that is not JSON): the peer gets a code, the log the rest.
      this.count(op, 'internal', null, t0);
      this.log.error({ op, id, err: e }, `op "${op}" failed: ${(e as Error)?.message ?? String(e)}`);
      return (
        JSON.stringify({
          v: 1,
          id,
          ok: false,
          error: { code: 'ERR_INTERNAL', message: `op "${op}" failed with an internal error (see sosd's log)` },
        } satisfies Reply) + '\n'
      );
    }
  }

  /** ERR_FORBIDDEN for `peer` asking for `op`, logged (the peer's name goes to the log, never to a label). */
  private forbidden(op: string, entry: Entry, peer: TlsPeer, id: number): FrameError {
    const need = entry.roles.size
      ? `needs the role ${[...entry.roles].join(' or ')}`
      : 'is served on the local socket only';
    this.log.warn(
      { op, peer: { role: peer.role, name: peer.name, serial: peer.serial } },
      `refused op "${op}" to ${peer.role} ${peer.name}: it ${need}`,
    );
    return new FrameError(
      'ERR_FORBIDDEN',
      `op "${op}" ${need}; this connection is ${peer.role} ${JSON.stringify(peer.name)}`,
      id,
    );
  }

  private count(op: string, outcome: Outcome, reason: string | null, t0?: bigint | null): void {
    this.metrics.requests.inc({ op, outcome });
    if (reason) this.metrics.framesRejected.inc({ reason });
    const seconds = t0 ? Number(process.hrtime.bigint() - t0) / 1e9 : null;
    if (seconds !== null) this.metrics.duration.observe({ op }, seconds);
    this.log.debug({ op, outcome, code: reason, seconds }, 'request');
  }
}

/** Ajv's first error as one sentence about the field: "args.pid must be integer". */
function describe(errors: ErrorObject[] | null | undefined): string {
  const e = errors?.[0];
  if (!e) return 'args do not fit the op';
  const at = fieldPath(e.instancePath);
  const p = e.params as Record<string, unknown>;
  if (e.keyword === 'additionalProperties')
    return `${at} has an unknown field ${JSON.stringify(clip(String(p.additionalProperty)))}`;
  if (e.keyword === 'required') return `${fieldPath(e.instancePath, String(p.missingProperty))} is required`;
  return `${at} ${e.message ?? 'is not valid'}`;
}

/** A JSON pointer into args as a JavaScript-ish path: /a/0/b c → args.a[0]["b c"]. */
function fieldPath(pointer: string, last?: string): string {
  const parts = pointer
    .split('/')
    .slice(1)
    .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
  if (last !== undefined) parts.push(last);
  let out = 'args';
  for (const s of parts) {
    const c = clip(s);
    if (/^\d+$/.test(c)) out += `[${c}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(c)) out += `.${c}`;
    else out += `[${JSON.stringify(c)}]`;
  }
  return out;
}

function clip(s: string): string {
  return s.length > MAX_NAME_IN_MESSAGE ? `${s.slice(0, MAX_NAME_IN_MESSAGE)}…` : s;
}

/** A function logger as a DaemonLogger: warnings and errors as lines, debug and info dropped. */
function toLogger(log: DaemonServerOptions['log']): DaemonLogger {
  if (!log) return { debug() {}, info() {}, warn() {}, error() {} };
  if (typeof log !== 'function') return log;
  const line = (_: Record<string, unknown>, msg: string) => log(msg);
  return { debug() {}, info() {}, warn: line, error: line };
}

/**
 * Make room at `p` for a new socket: nothing there is fine; a socket that nobody answers on (a daemon that
 * died) is unlinked; a socket that answers, or anything that is not a socket (a symlink included), is refused.
 */
async function clearStale(p: string): Promise<void> {
  const st = lstat(p);
  if (!st) return;
  if (!st.isSocket())
    throw new ListenError(`${p} exists and is not a socket (${kind(st)}): refusing to replace it`, p, {
      code: 'ERR_SOCKET_NOT_SOCKET',
    });
  // 'live' with the listener's pid (SO_PEERCRED of a connected unix socket names the process that listened).
  const answer = await new Promise<{ live: number | null } | string | null>((resolve) => {
    const s = net.connect(p);
    s.once('connect', () => {
      let pid: number | null = null;
      try {
        pid = native.peerCred((s as unknown as { _handle?: { fd?: number } })._handle?.fd ?? -1).pid;
      } catch {
        // credentials unreadable: still a live daemon
      }
      s.destroy();
      resolve({ live: pid });
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED' ? null : (e.code ?? e.message)));
  });
  if (answer === 'ENOENT') return; // gone meanwhile
  if (typeof answer === 'object' && answer !== null)
    throw new ListenError(
      `${p}: sosd is already running (${answer.live ? `pid ${answer.live}` : 'pid unknown'}): refusing to take its socket over`,
      p,
      { code: 'ERR_SOCKET_IN_USE' },
    );
  if (answer !== null)
    throw new ListenError(`${p}: cannot tell whether a daemon answers on this socket (${answer})`, p, {
      code: 'ERR_SOCKET_IN_USE',
    });
  // Unlink only the socket probed: not one put there since.
  const now = lstat(p);
  if (!now) return;
  if (now.ino !== st.ino || now.dev !== st.dev)
    throw new ListenError(`${p} was replaced while sosd checked it: refusing to unlink it`, p, {
      code: 'ERR_SOCKET_IN_USE',
    });
  fs.unlinkSync(p);
}

function lstat(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new ListenError(`cannot look at ${p}: ${(e as Error).message}`, p, {
      code: (e as NodeJS.ErrnoException).code ?? 'ERR_INTERNAL',
      cause: e,
    });
  }
}

function kind(st: fs.Stats): string {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isDirectory()) return 'a directory';
  if (st.isFile()) return 'a regular file';
  return 'a special file';
}

function reply(id: number | null, e: unknown): Reply {
  const err = e as { code?: string; message?: string };
  return { v: 1, id, ok: false, error: { code: err.code ?? 'ERR_INTERNAL', message: err.message ?? String(e) } };
}
