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
import { native } from '../native/index.js';
import { nodeInfo } from '../node-info.js';
import { FrameError, ListenError } from './errors.js';
import { MAX_FRAME, PROTOCOL_VERSION, parseRequest, type Reply } from './protocol.js';

export type Handler = (args: Record<string, unknown>) => unknown;

export interface DaemonServerOptions {
  /** Where the server says what it refused (default: nowhere). */
  log?: (line: string) => void;
}

// A refused peer gets its reply and this long to read it before the socket is destroyed.
const REFUSED_LINGER_MS = 1000;

export class DaemonServer {
  private readonly server: net.Server;
  private readonly handlers = new Map<string, Handler>();
  private readonly started = Date.now();
  private readonly uid = process.getuid?.() ?? 0;
  private readonly log: (line: string) => void;

  constructor(
    readonly socketPath: string,
    options: DaemonServerOptions = {},
  ) {
    this.log = options.log ?? (() => {});
    this.handlers.set('version', () => ({ protocol: PROTOCOL_VERSION, daemon: 'sosd' }));
    this.handlers.set('node.info', () => nodeInfo());
    this.handlers.set('status', () => ({ pid: process.pid, uptimeMs: Date.now() - this.started }));
    this.server = net.createServer((sock) => this.admit(sock));
  }

  /**
   * Listen on `socketPath`. Its folder is made 0700 when missing (an existing one keeps its mode); a
   * stale socket there is replaced, anything else is a ListenError and stays as it was.
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
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Serve root and the daemon's own user; refuse (and log) everyone else, and a peer that cannot be told. */
  private admit(sock: net.Socket): void {
    sock.on('error', () => sock.destroy());
    let who: string;
    try {
      const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd ?? -1;
      const cred = native.peerCred(fd);
      if (cred.uid === 0 || cred.uid === this.uid) return this.serve(sock);
      who = `uid ${cred.uid} gid ${cred.gid} pid ${cred.pid}`;
    } catch (e) {
      who = `a peer whose credentials cannot be read (${(e as Error).message})`;
    }
    const allowed = this.uid === 0 ? 'root' : `root and uid ${this.uid}`;
    this.log(`refused a connection from ${who}: sosd serves ${allowed} only`);
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
    let buf = '';
    // Inside a line already refused as too large: its rest is dropped up to its newline, so one
    // oversized line gets one reply, and the line after it is served as usual.
    let skipping = false;
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
        if (line.trim()) sock.write(JSON.stringify(this.handle(line)) + '\n');
      }
      if (buf.length > MAX_FRAME) {
        buf = '';
        skipping = true;
        sock.write(
          JSON.stringify(reply(null, new FrameError('ERR_FRAME_TOO_LARGE', `frame exceeds ${MAX_FRAME} bytes`))) + '\n',
        );
      }
    });
  }

  private handle(line: string): Reply {
    let id: number | null = null;
    try {
      const req = parseRequest(line, new Set(this.handlers.keys()));
      id = req.id;
      return { v: 1, id, ok: true, result: this.handlers.get(req.op)!(req.args ?? {}) };
    } catch (e) {
      return reply(e instanceof FrameError ? e.id : id, e);
    }
  }
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
