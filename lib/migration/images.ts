// Sending a folder of CRIU images over the channel, and receiving it: one
// file at a time, each announced with its name and size, its bytes on a data
// stream (authenticated frame by frame), closed by file-end with the size
// the receiver must have written. Write errors (ENOSPC…) fail the transfer.
import fs from 'node:fs';
import path from 'node:path';
import { SosError, SystemError } from '../errors.js';
import type { AuthChannel } from '../net/channel.js';
import type { FileEnd, FileStart } from './messages.js';
import { IMAGE_NAME, MAX_FILES, ProtocolError } from './protocol.js';

const CHUNK = 4 * 1024 * 1024;
/** Received bytes not yet on disk before the socket is paused. */
export const HIGH_WATER = 32 * 1024 * 1024;

/** Where images go: one migration's channel, with a fresh stream per file. */
export interface ImageSink {
  readonly ch: AuthChannel;
  readonly id: string;
  stream(): number;
  send(m: FileStart | FileEnd): void;
}

/** Send every regular file of `dir` (except `skip`); `onBytes` hears each chunk. Resolves with the bytes sent. */
export async function sendImages(
  to: ImageSink,
  dir: string,
  onBytes: (n: number, file: string) => void,
  skip: (name: string) => boolean = () => false,
): Promise<{ bytes: number; files: number }> {
  let bytes = 0;
  let files = 0;
  for (const ent of await fs.promises.readdir(dir, { withFileTypes: true })) {
    if (!ent.isFile() || skip(ent.name)) continue;
    const file = path.join(dir, ent.name);
    const fh = await fs.promises.open(file, 'r');
    try {
      const { size } = await fh.stat();
      const stream = to.stream();
      to.send({ op: 'file', id: to.id, stream, name: ent.name, size });
      // Read the next chunk while the current one is being sent.
      const read = async (at: number) => {
        if (at >= size) return null;
        const buf = Buffer.allocUnsafe(Math.min(CHUNK, size - at));
        const { bytesRead } = await fh.read(buf, 0, buf.length, at);
        if (bytesRead === 0) throw new SosError(`${file} shrank while being sent`, { code: 'ERR_MIGRATION' });
        return buf.subarray(0, bytesRead);
      };
      let off = 0;
      let next = read(0);
      for (;;) {
        const buf = await next;
        if (!buf) break;
        off += buf.length;
        next = read(off);
        next.catch(() => undefined);
        await to.ch.sendData(stream, buf);
        bytes += buf.length;
        onBytes(buf.length, ent.name);
      }
      to.send({ op: 'file-end', id: to.id, stream, size });
      files++;
    } finally {
      await fh.close();
    }
  }
  return { bytes, files };
}

/** A write error as the library's own: the same message and code (ENOSPC stays ENOSPC). */
function systemError(e: unknown): Error {
  if (e instanceof SosError) return e;
  const n = e as NodeJS.ErrnoException;
  return new SystemError(n.message, {
    code: typeof n.code === 'string' ? n.code : 'EIO',
    errno: typeof n.errno === 'number' ? n.errno : 0,
    syscall: n.syscall ?? 'write',
    cause: e,
  });
}

/** The receiving side of sendImages, writing into `dir`. */
export class ImageReceiver {
  private current: {
    stream: number;
    name: string;
    size: number;
    written: number;
    fh: Promise<fs.promises.FileHandle>;
  } | null = null;
  private chain: Promise<void> = Promise.resolve();
  private pending = 0;
  private failure: Error | null = null;
  private readonly names = new Set<string>();
  files = 0;
  bytes = 0;

  constructor(
    private readonly ch: AuthChannel,
    private readonly dir: string,
    private maxBytes: number,
    private readonly onError: (e: Error) => void,
  ) {}

  private fail(e: Error) {
    if (this.failure) return;
    this.failure = systemError(e);
    this.onError(this.failure);
  }

  /** A `file` message. */
  open(m: FileStart): void {
    if (this.failure) return;
    if (this.current) throw new ProtocolError('file: the previous file was not ended');
    if (++this.files > MAX_FILES) throw new ProtocolError(`more than ${MAX_FILES} image files`);
    const { name, size } = m;
    // The parser checked these too (messages.ts); here they keep every write inside `dir`.
    if (typeof name !== 'string' || !IMAGE_NAME.test(name)) throw new ProtocolError('file: malformed name');
    if (!Number.isSafeInteger(size) || size < 0) throw new ProtocolError(`${name}: malformed size`);
    if (this.names.has(name)) throw new ProtocolError(`${name}: sent twice`);
    if (this.bytes + size > this.maxBytes) {
      const why = `images exceed the ${this.maxBytes}-byte limit`;
      // A limit set from the work folder's free space is a full disk, said before it fills.
      if (this.spaceBound) throw new SosError(`${why} (the work folder's free space)`, { code: 'ENOSPC' });
      throw new ProtocolError(why);
    }
    this.names.add(name);
    const fh = fs.promises.open(path.join(this.dir, name), 'wx');
    fh.catch(() => undefined);
    this.current = { stream: m.stream, name, size, written: 0, fh };
  }

  /** Whether `stream` is the file being received. */
  owns(stream: number): boolean {
    return this.current?.stream === stream;
  }

  /** A data chunk of the current file. */
  data(chunk: Buffer): void {
    const cur = this.current!;
    if (this.failure) return;
    if (cur.written + chunk.length > cur.size) throw new ProtocolError(`${cur.name}: more bytes than announced`);
    const at = cur.written;
    cur.written += chunk.length;
    this.bytes += chunk.length;
    this.pending += chunk.length;
    if (this.pending > HIGH_WATER) this.ch.socket.pause();
    this.chain = this.chain
      .then(async () => {
        if (this.failure) return;
        const fh = await cur.fh;
        let off = 0;
        while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off, at + off)).bytesWritten;
      })
      .catch((e: Error) => this.fail(e))
      .finally(() => {
        this.pending -= chunk.length;
        if (this.pending <= HIGH_WATER / 2) this.ch.socket.resume();
      });
  }

  /** A `file-end` message. */
  end(m: FileEnd): void {
    const cur = this.current;
    if (!cur || m.stream !== cur.stream) throw new ProtocolError('file-end for a file that is not open');
    if (m.size !== cur.size || cur.written !== cur.size)
      throw new ProtocolError(`${cur.name}: ${cur.written} bytes received, ${cur.size} announced`);
    this.current = null;
    // No fsync per file: a commit migration keeps the source's copy until the process runs here;
    // a hand-over syncs the whole folder (syncTree) before it answers `flushed`.
    this.chain = this.chain
      .then(async () => {
        const fh = await cur.fh;
        await fh.close();
      })
      .catch((e: Error) => this.fail(e));
  }

  /** Lower the byte limit (the free space found when the migration was admitted). */
  limit(bytes: number): void {
    if (bytes < this.maxBytes) this.spaceBound = true;
    this.maxBytes = Math.min(this.maxBytes, bytes);
  }
  private spaceBound = false;

  /** Everything received is on disk (or the first write error). */
  async flushed(): Promise<void> {
    await this.chain;
    if (this.failure) throw this.failure;
    if (this.current) throw new ProtocolError(`${this.current.name} was not ended`);
  }

  /** Close what is open (after a failure). */
  async dispose(): Promise<void> {
    const cur = this.current;
    this.current = null;
    await this.chain.catch(() => undefined);
    if (cur) await cur.fh.then((fh) => fh.close()).catch(() => undefined);
  }
}
