// CRIU's page-server protocol has no authentication, so it never leaves
// loopback: on the target a 127.0.0.1 listener takes `criu lazy-pages`'s
// connection, and each byte crosses to the source inside the authenticated
// channel, where it goes to the dump's page server on the source's
// 127.0.0.1. Streams of tunnels are numbered from TUNNEL_BASE.
import net from 'node:net';
import { once } from 'node:events';
import type { AuthChannel } from '../net/channel.js';

export const TUNNEL_BASE = 0x80000000;

interface End { sock: net.Socket | null; queue: Buffer[]; closed: boolean }

/** One side of the tunnels over one channel. */
export class Tunnels {
  private readonly ends = new Map<number, End>();
  private nextStream = TUNNEL_BASE;
  private server: net.Server | null = null;
  /** Bytes carried in either direction. */
  bytes = 0;

  constructor(private readonly ch: AuthChannel, private readonly id: string, private readonly onBytes: (n: number) => void = () => {}) {}

  /** Target side: listen on 127.0.0.1; resolves with the port. */
  async listen(): Promise<number> {
    this.server = net.createServer((sock) => {
      const stream = this.nextStream++;
      this.attach(stream, sock);
      this.ch.send({ op: 'tunnel-open', id: this.id, stream });
    });
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Source side: a tunnel-open for `stream` → connect to 127.0.0.1:port, retrying until it listens (up to `ms`). */
  open(stream: number, port: number, ms = 60_000): void {
    if (stream < TUNNEL_BASE || this.ends.has(stream)) throw new Error(`tunnel stream ${stream} is invalid or already open`);
    const end: End = { sock: null, queue: [], closed: false };
    this.ends.set(stream, end);
    const deadline = Date.now() + ms;
    const attempt = () => {
      if (end.closed) return;
      const sock = net.connect(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.removeAllListeners('error');
        this.attach(stream, sock, end);
      });
      sock.once('error', () => {
        sock.destroy();
        if (Date.now() < deadline) setTimeout(attempt, 20);
        else this.close(stream, true);
      });
    };
    attempt();
  }

  private attach(stream: number, sock: net.Socket, end: End = { sock: null, queue: [], closed: false }) {
    end.sock = sock;
    this.ends.set(stream, end);
    sock.setNoDelay(true);
    for (const b of end.queue) sock.write(b);
    end.queue = [];
    sock.on('data', (d: Buffer) => {
      this.count(d.length);
      if (this.ch.closed) return sock.destroy();
      this.ch.sendData(stream, d).catch(() => sock.destroy());
      if (this.ch.congested) {
        sock.pause();
        this.ch.socket.once('drain', () => sock.resume());
      }
    });
    sock.on('error', () => sock.destroy());
    sock.on('close', () => this.close(stream, true));
  }

  private count(n: number) {
    this.bytes += n;
    this.onBytes(n);
  }

  /** Whether `stream` belongs to a tunnel. */
  owns(stream: number): boolean {
    return this.ends.has(stream);
  }

  /** Bytes from the peer for `stream`. */
  data(stream: number, chunk: Buffer): void {
    const end = this.ends.get(stream);
    if (!end || end.closed) return;
    this.count(chunk.length);
    if (end.sock) end.sock.write(chunk);
    else end.queue.push(chunk);
  }

  /** Close one tunnel; `tell` the peer when the close started here. */
  close(stream: number, tell: boolean): void {
    const end = this.ends.get(stream);
    if (!end || end.closed) return;
    end.closed = true;
    if (end.sock) end.sock.end();
    if (tell && !this.ch.closed) this.ch.send({ op: 'tunnel-close', id: this.id, stream });
  }

  /** Close every tunnel and the listener. */
  closeAll(): void {
    for (const [stream, end] of this.ends) {
      end.closed = true;
      end.sock?.destroy();
      this.ends.delete(stream);
    }
    this.server?.close();
    this.server = null;
  }
}
