// A client for the node daemon's local API (what sosctl uses).
import net from 'node:net';
import { DaemonError } from './errors.js';
import { DEFAULT_SOCKET, PROTOCOL_VERSION, type Reply } from './protocol.js';

/** Send one request to sosd; resolves with its result, rejects with a DaemonError. */
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
      reject(new DaemonError(`sosd did not answer within ${timeoutMs} ms`, { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new DaemonError(`cannot reach sosd at ${socketPath}: ${e.message}${hint(e.code)}`, {
          code: e.code ?? 'ECONNRESET',
          cause: e,
        }),
      );
    });
    // A sosd that dies (or closes) before it answers: say so now, not at the timeout. (After an
    // answer or an error the promise is settled already and this does nothing.)
    sock.on('close', () => {
      clearTimeout(timer);
      reject(new DaemonError(`sosd at ${socketPath} closed the connection before it answered`, { code: 'ECONNRESET' }));
    });
    sock.on('connect', () => sock.write(JSON.stringify({ v: PROTOCOL_VERSION, id: 1, op, args }) + '\n'));
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      let r: Reply;
      try {
        r = JSON.parse(buf.slice(0, nl)) as Reply;
      } catch (e) {
        return reject(
          new DaemonError('sosd answered with a frame that is not JSON', { code: 'ERR_BAD_FRAME', cause: e }),
        );
      }
      if (r.ok) resolve(r.result);
      else
        reject(
          new DaemonError(String(r.error?.message ?? 'sosd failed'), {
            code: typeof r.error?.code === 'string' ? r.error.code : 'ERR_INTERNAL',
          }),
        );
    });
  });
}

/** What a user can do about the usual reasons a connect fails. */
function hint(code: string | undefined): string {
  if (code === 'ENOENT' || code === 'ECONNREFUSED')
    return '; is sosd running? Start it with `sosd`, or point at its socket with --socket';
  if (code === 'EACCES') return '; sosd serves root and its own user only';
  return '';
}
