// A client for the node daemon's local API (what sosctl uses).
import net from 'node:net';
import { DEFAULT_SOCKET, PROTOCOL_VERSION, type Reply } from './protocol.js';

export async function request(
  op: string,
  args: Record<string, unknown> = {},
  socketPath = DEFAULT_SOCKET,
  timeoutMs = 5000,
): Promise<unknown> {
  return await new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(Object.assign(new Error(`sosd did not answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('connect', () => sock.write(JSON.stringify({ v: PROTOCOL_VERSION, id: 1, op, args }) + '\n'));
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      const r = JSON.parse(buf.slice(0, nl)) as Reply;
      if (r.ok) resolve(r.result);
      else reject(Object.assign(new Error(r.error!.message), { code: r.error!.code }));
    });
  });
}
