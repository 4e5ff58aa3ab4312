/**
 * The line protocol between the preload shim (native/memory/run_shim.c) and its monitor (run.ts), over
 * a unix stream socket; one request at a time, each answered by one line:
 *   hello <pid> <uffd fd> <memfd fd> <arena address> <arena bytes> <features>  -> ok | err <message>
 *   discard <offset> <bytes>                                                   -> ok
 * The shim is the program's code, so the monitor trusts none of it: every field is checked here, and
 * a line that fails closes the connection (the shim then stops the program).
 */
import { SosError } from '../errors.js';

const PAGE = 4096;
/** The shim's lines are far shorter: a longer one is not from it. */
export const MAX_LINE = 256;

export interface Hello {
  pid: number;
  uffd: number;
  memfd: number;
  address: number;
  bytes: number;
  features: bigint;
}

const bad = (why: string) => new SosError(`monitor protocol: ${why}`, { code: 'ERR_PROTOCOL' });

function count(s: string, what: string, max: number): number {
  // Digits only, no leading zeros: one spelling per number.
  if (!/^(0|[1-9]\d{0,19})$/.test(s)) throw bad(`${what} is not a number`);
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n > max) throw bad(`${what} out of range`);
  return n;
}

/** A hello line for an arena of `arenaBytes`; throws ERR_PROTOCOL. */
export function parseHello(line: string, arenaBytes: number): Hello {
  const f = line.split(' ');
  if (f.length !== 7 || f[0] !== 'hello') throw bad('expected a hello line');
  const pid = count(f[1], 'pid', 2 ** 22);
  const uffd = count(f[2], 'the userfaultfd', 2 ** 31 - 1);
  const memfd = count(f[3], 'the memfd', 2 ** 31 - 1);
  const address = count(f[4], 'the arena address', 2 ** 47);
  const bytes = count(f[5], 'the arena size', 2 ** 47);
  if (!/^(0|[1-9]\d{0,19})$/.test(f[6]) || BigInt(f[6]) >= 2n ** 64n) throw bad('features out of range');
  if (pid < 1 || uffd === memfd) throw bad('bad pid or descriptors');
  if (address % PAGE || address === 0 || address + bytes > 2 ** 47) throw bad(`bad arena address ${address}`);
  if (bytes !== arenaBytes) throw bad(`the arena is ${bytes} bytes, ${arenaBytes} expected`);
  return { pid, uffd, memfd, address, bytes, features: BigInt(f[6]) };
}

/** A discard line inside an arena of `arenaBytes`: whole pages (none: a no-op); throws ERR_PROTOCOL. */
export function parseDiscard(line: string, arenaBytes: number): { offset: number; bytes: number } {
  const f = line.split(' ');
  if (f.length !== 3 || f[0] !== 'discard') throw bad('expected a discard line');
  const offset = count(f[1], 'the offset', arenaBytes);
  const bytes = count(f[2], 'the length', arenaBytes);
  if (offset % PAGE || bytes % PAGE || offset + bytes > arenaBytes) throw bad(`bad discard range ${offset}+${bytes}`);
  return { offset, bytes };
}

/** Cuts a byte stream into lines, holding at most MAX_LINE bytes of an unfinished one. */
export class LineSplitter {
  private buf = '';

  /** The lines completed by `chunk` (latin1); throws ERR_FRAME_TOO_LARGE for an overlong line. */
  push(chunk: string): string[] {
    this.buf += chunk;
    const lines = this.buf.split('\n');
    this.buf = lines.pop()!;
    if (this.buf.length > MAX_LINE || lines.some((l) => l.length > MAX_LINE))
      throw new SosError(`monitor protocol: a line longer than ${MAX_LINE} bytes`, { code: 'ERR_FRAME_TOO_LARGE' });
    return lines;
  }
}
