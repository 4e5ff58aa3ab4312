/**
 * The node daemon's server. Two walls keep other users out: the socket is
 * born 0600 (only the daemon's user may connect to it), and every peer's
 * credentials (SO_PEERCRED) are checked on connect: root or the daemon's own
 * uid, everyone else is refused and logged. The socket path is the caller's:
 * the server never chmods or unlinks what it did not make, only a stale
 * socket that nobody answers on.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { ArgValueError, SosError } from '../errors.js';
import { native } from '../native/index.js';
import { nodeInfo } from '../node-info.js';
import { FrameError, ListenError } from './errors.js';
import { startHttp, type HttpAddress, type HttpOptions } from './http.js';
import { DaemonMetrics, UNKNOWN_OP, type Outcome } from './metrics.js';
import { MAX_FRAME, PROTOCOL_VERSION, parseRequest, type Reply } from './protocol.js';
import type http from 'node:http';

/** An op's handler: its validated args in, a JSON-serialisable result (or a promise of one) out. */
export type Handler = (args: Record<string, unknown>) => unknown;

/** A JSON schema of an op's args: an object schema with `additionalProperties: false`. */
export type ArgsSchema = Record<string, unknown>;

/** An op as plain data, for `registerAll` (the shape services such as ClusterService hand out). */
export interface OpSpec {
  op: string;
  schema: ArgsSchema;
  handler: Handler;
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
  private serving = false;

  constructor(
    readonly socketPath: string,
    options: DaemonServerOptions = {},
  ) {
    this.log = toLogger(options.log);
    this.metrics = options.metrics ?? new DaemonMetrics();
    this.httpOptions = options.http;
    this.register('version', NO_ARGS, () => ({ protocol: PROTOCOL_VERSION, daemon: 'sosd' }));
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
   * server listens. Throws ArgValueError for an op already served or a schema that does not compile.
   */
  register(op: string, schema: ArgsSchema, handler: Handler): this {
    if (typeof op !== 'string' || !/^[a-z][a-z0-9]*(?:[._-][a-z0-9]+)*$/.test(op))
      throw new ArgValueError(`op must be a lowercase name such as "node.info", not ${JSON.stringify(op)}`);
    if (this.ops.has(op)) throw new ArgValueError(`op "${op}" is already registered`);
    if (typeof handler !== 'function') throw new ArgValueError(`op "${op}": handler must be a function`);
    if (schema?.type !== 'object' || schema.additionalProperties !== false)
      throw new ArgValueError(`op "${op}": its args schema must be {type: 'object', additionalProperties: false, …}`);
    let validate: ValidateFunction;
    try {
      validate = this.ajv.compile(schema);
    } catch (e) {
      throw new ArgValueError(`op "${op}": its args schema does not compile: ${(e as Error).message}`);
    }
    this.ops.set(op, { handler, validate });
    this.opNames.add(op);
    return this;
  }

  /** `register` each of `ops`. */
  registerAll(ops: Iterable<OpSpec>): this {
    for (const o of ops) this.register(o.op, o.schema, o.handler);
    return this;
  }

  /** The ops served, in registration order. */
  get opList(): string[] {
    return [...this.opNames];
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

  /** Stop serving: the socket first (so /healthz says 503 meanwhile), then the HTTP listener. Idempotent. */
  async close(): Promise<void> {
    this.serving = false;
    this.metrics.up.set(0);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
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
      if (cred.uid === 0 || cred.uid === this.uid) return this.serve(sock);
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

  private serve(sock: net.Socket): void {
    this.metrics.connections.inc();
    this.metrics.connectionsOpen.inc();
    sock.once('close', () => this.metrics.connectionsOpen.dec());
    let buf = '';
    // Inside a line already refused as too large: its rest is dropped up to its newline, so one
    // oversized line gets one reply, and the line after it is served as usual.
    let skipping = false;
    let inFlight = 0;
    const send = (line: string) => {
      if (!sock.destroyed && sock.writable) sock.write(line);
    };
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      if (skipping) {
        const nl = chunk.indexOf('\n');
        if (nl < 0) return;
        skipping = false;
        chunk = chunk.slice(nl + 1);
      }
      buf += chunk;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.trim()) continue;
        // Replies go out as their requests complete (an async op does not hold back the ones after
        // it): a client matches them by id.
        if (++inFlight >= MAX_IN_FLIGHT) sock.pause();
        void this.handle(line).then((out) => {
          send(out);
          if (--inFlight < MAX_IN_FLIGHT && sock.isPaused()) sock.resume();
        });
      }
      if (buf.length > MAX_FRAME) {
        buf = '';
        skipping = true;
        this.count(UNKNOWN_OP, 'rejected', 'ERR_FRAME_TOO_LARGE');
        send(
          JSON.stringify(reply(null, new FrameError('ERR_FRAME_TOO_LARGE', `frame exceeds ${MAX_FRAME} bytes`))) + '\n',
        );
      }
    });
  }

  /** One request line's reply line; never rejects. */
  private async handle(line: string): Promise<string> {
    const t0 = process.hrtime.bigint();
    let id: number | null = null;
    let op = UNKNOWN_OP;
    try {
      const req = parseRequest(line, this.opNames);
      id = req.id;
      op = req.op;
      const entry = this.ops.get(op)!;
      const args = req.args ?? {};
      if (!entry.validate(args)) throw new FrameError('ERR_BAD_ARGS', describe(entry.validate.errors), id);
      const result = await entry.handler(args);
      const out = JSON.stringify({ v: 1, id, ok: true, result } satisfies Reply) + '\n';
      this.count(op, 'ok', null, t0);
      return out;
    } catch (e) {
      if (e instanceof FrameError) {
        this.count(op, e.code === 'ERR_BAD_ARGS' ? 'bad_args' : 'rejected', e.code, op === UNKNOWN_OP ? null : t0);
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
