/**
 * The node daemon's server. Peers authenticate by the socket's file
 * permissions: the socket is created 0600 in a 0700 directory, so only the
 * daemon's own user (root) can connect.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { nodeInfo } from '../node-info.js';
import { FrameError } from './errors.js';
import { MAX_FRAME, PROTOCOL_VERSION, parseRequest, type Reply } from './protocol.js';

export type Handler = (args: Record<string, unknown>) => unknown;

export class DaemonServer {
  private readonly server: net.Server;
  private readonly handlers = new Map<string, Handler>();
  private readonly started = Date.now();

  constructor(readonly socketPath: string) {
    this.handlers.set('version', () => ({ protocol: PROTOCOL_VERSION, daemon: 'sosd' }));
    this.handlers.set('node.info', () => nodeInfo());
    this.handlers.set('status', () => ({ pid: process.pid, uptimeMs: Date.now() - this.started }));
    this.server = net.createServer((sock) => this.serve(sock));
  }

  async listen(): Promise<void> {
    const dir = path.dirname(this.socketPath);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(dir, 0o700);
    try {
      fs.unlinkSync(this.socketPath); // a stale socket from a previous run
    } catch {
      /* none */
    }
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.socketPath, () => resolve());
    });
    fs.chmodSync(this.socketPath, 0o600);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private serve(sock: net.Socket): void {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => sock.destroy());
    sock.on('data', (chunk: string) => {
      buf += chunk;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim()) sock.write(JSON.stringify(this.handle(line)) + '\n');
      }
      if (buf.length > MAX_FRAME) {
        buf = '';
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

function reply(id: number | null, e: unknown): Reply {
  const err = e as { code?: string; message?: string };
  return { v: 1, id, ok: false, error: { code: err.code ?? 'ERR_INTERNAL', message: err.message ?? String(e) } };
}
