/**
 * The TCP form of RdmaConnection's setup. It runs over the channel of lib/net/channel.ts, which the
 * server hands over only once the client has proved it holds the shared secret (the client proves first,
 * so a peer without the secret gets nothing to test guesses against) and the server has proved it back;
 * from then on every frame is encrypted and authenticated with AES-256-GCM, one key per direction, and
 * sequenced and size-limited. So the server allocates its QP and its remotely writable MR, and sends
 * their endpoint, only to an authenticated peer. Over the channel each side sends what its RC queue pair
 * needs to connect (QP number, GID, PSN) and one memory window (addr, rkey, length), and validates the
 * peer's; a malformed one fails the handshake with a clear error, and the peer is told why. (The rdma_cm
 * form rides in the CM's private data instead: cm-auth.ts.)
 */
import { ChannelError, type AuthChannel, type Message } from '../net/channel.js';
import { HandshakeError } from './errors.js';

export interface Endpoint {
  qpNum: number;
  gid: string;
  psn: number;
  addr: number;
  rkey: number;
  length: number;
}

const VERSION = 1;
const OP_ENDPOINT = 'rdma-endpoint';
const OP_REFUSE = 'rdma-refuse';

/** A failure of the channel under the handshake, as a HandshakeError with the same code. */
export function handshakeError(e: unknown): unknown {
  return e instanceof ChannelError ? new HandshakeError(e.message, { code: e.code, cause: e }) : e;
}

function badFrame(message: string): HandshakeError {
  return new HandshakeError(message, { code: 'ERR_BAD_FRAME' });
}

function endpointOf(m: Message): Endpoint {
  if (m.v !== VERSION)
    throw new HandshakeError(`unsupported handshake version ${String(m.v)}`, { code: 'ERR_VERSION' });
  const e = m.endpoint as Record<string, unknown> | undefined;
  if (!e || typeof e !== 'object') throw badFrame('handshake has no endpoint');
  const u32 = (k: string) => {
    const v = e[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff)
      throw badFrame(`endpoint.${k} must be a 32-bit integer`);
    return v;
  };
  const addr = e.addr;
  const length = e.length;
  if (typeof addr !== 'number' || !Number.isSafeInteger(addr) || addr < 0)
    throw badFrame('endpoint.addr must be a safe integer');
  if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0)
    throw badFrame('endpoint.length must be a safe integer');
  const gid = e.gid;
  if (typeof gid !== 'string' || gid.length > 64 || !/^[0-9a-fA-F:.]+$/.test(gid))
    throw badFrame('endpoint.gid must be an IPv6-form GID');
  return { qpNum: u32('qpNum') & 0xffffff, gid, psn: u32('psn') & 0xffffff, addr, rkey: u32('rkey'), length };
}

/** Tell the peer why it is dropped (its handshake fails with ERR_PEER and the reason), then close the channel. */
export function refuse(channel: AuthChannel, e: unknown): void {
  const code = (e as { code?: unknown } | null)?.code;
  try {
    if (!channel.closed)
      channel.send({
        op: OP_REFUSE,
        code: typeof code === 'string' ? code : 'ERR_REFUSED',
        reason: String((e as Error | null)?.message ?? e).slice(0, 200),
      });
  } catch {
    /* the channel ended meanwhile */
  }
  channel.close();
}

/**
 * Exchange endpoints over an authenticated channel (`AuthChannel.connect()`, or from `AuthChannel.server()`);
 * resolves with the peer's. Rejects with HandshakeError; a peer whose endpoint is malformed is refused.
 */
export async function handshake(channel: AuthChannel, mine: Endpoint, timeoutMs = 10_000): Promise<Endpoint> {
  let m: Message;
  try {
    const reply = channel.waitFor((x) => x.op === OP_ENDPOINT || x.op === OP_REFUSE, timeoutMs, "the peer's endpoint");
    channel.send({ op: OP_ENDPOINT, v: VERSION, endpoint: { ...mine } });
    m = await reply;
  } catch (e) {
    throw handshakeError(e);
  }
  if (m.op === OP_REFUSE) {
    const code = typeof m.code === 'string' ? m.code.slice(0, 64) : 'unspecified';
    const reason = typeof m.reason === 'string' ? `: ${m.reason.slice(0, 200)}` : '';
    throw new HandshakeError(`peer refused: ${code}${reason}`, { code: 'ERR_PEER' });
  }
  try {
    return endpointOf(m);
  } catch (e) {
    refuse(channel, e);
    throw e;
  }
}
