// The migration image receiver (lib/migration/images.ts ImageReceiver), in a fresh folder per input,
// fed a sequence of file / data / file-end messages and limit changes that the fuzzer chooses (names,
// sizes, stream ids, chunks), either parsed first as the target agent does or handed over as typed
// messages. It may only throw (or report, or reject with) a SosError with a string code; it never writes
// outside its folder (not through '..', '/', NUL or a symlink planted in it); it never holds more bytes
// than its limit nor more than HIGH_WATER unwritten without pausing the socket; and (first byte odd) a
// well-formed sequence leaves exactly the files announced, byte for byte.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AuthChannel, Message } from '../../../lib/net/channel.js';
import { HIGH_WATER, ImageReceiver } from '../../../lib/migration/images.js';
import { parseToAgent, type FileEnd, type FileStart } from '../../../lib/migration/messages.js';
import { Reader, contained, invariant, isContained } from '../input.js';

const ID = '0123456789abcdef0123456789abcdef';
const PLANTED = 'core-1.img';
const NAMES = [
  PLANTED,
  'pages-1.img',
  'inventory.img',
  'a',
  'a..b',
  '..',
  '.',
  '../escaped',
  '../../escaped',
  '/tmp/escaped',
  'sub/x',
  'x\0y',
  '',
  ' ',
  'x'.repeat(201),
  'x'.repeat(300),
];
const SIZES = [0, 1, 7, 4096, 65536, -1, 2 ** 32, Number.MAX_SAFE_INTEGER, 2 ** 53, 0.5];
const LIMITS = [0, 1, 10, 4096, 1 << 16, 1 << 20, 64 << 20];

/** A channel as far as the receiver uses it: a socket to pause and resume. */
class Socket {
  paused = false;
  pause() {
    this.paused = true;
  }
  resume() {
    this.paused = false;
  }
}

/** Everything under `root`, as "relative path:kind". */
function tree(root: string, at = ''): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(root, at), { withFileTypes: true })) {
    const rel = path.join(at, e.name);
    out.push(`${rel}:${e.isSymbolicLink() ? 'link' : e.isDirectory() ? 'dir' : e.isFile() ? 'file' : 'other'}`);
    if (e.isDirectory()) out.push(...tree(root, rel));
  }
  return out.sort();
}

async function settled(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (e) {
    invariant(isContained(e), `rejected with ${String(e)}`);
  }
}

interface Run {
  rec: ImageReceiver;
  dir: string;
  socket: Socket;
  /** The byte limit now (limit() only lowers it), and when the last file was admitted: the bound on what is held. */
  limit: number;
  admitted: number;
  reported: unknown[];
}

/** The receiver's own bounds, after every step. */
function bounded(run: Run): void {
  const { rec, socket } = run;
  invariant(rec.bytes <= run.admitted, `${rec.bytes} bytes held over the ${run.admitted}-byte limit`);
  const pending = (rec as unknown as { pending: number }).pending;
  invariant(pending <= HIGH_WATER || socket.paused, `${pending} bytes unwritten and the socket not paused`);
}

/** The file being received (a private field), and its bytes so far: the size a well-behaved file-end would say. */
const current = (rec: ImageReceiver) => (rec as unknown as { current: { written: number } | null }).current;
const written = (rec: ImageReceiver) => current(rec)?.written ?? 0;

/** A file message with fuzzer-chosen fields, parsed as the target does (or not), then given to open(). */
function open(run: Run, r: Reader, parse: boolean): number {
  const stream = r.pick([1, 2, 3, 0xffffffff]);
  const name = r.bool() ? r.pick(NAMES) : r.string();
  const size = r.bool() ? r.pick(SIZES) : r.u16();
  const raw: Message = { op: 'file', id: ID, stream, name, size };
  contained(() => {
    const m = parse ? (parseToAgent(raw) as FileStart) : (raw as FileStart);
    const before = current(run.rec);
    run.rec.open(m);
    // After a failure open() ignores the file: only a file it took is admitted, under today's limit.
    if (current(run.rec) === before) return;
    run.admitted = run.limit;
    const to = path.resolve(run.dir, m.name);
    invariant(path.dirname(to) === run.dir && path.basename(to) === m.name, `opened ${JSON.stringify(m.name)}`);
  });
  return stream;
}

function end(run: Run, parse: boolean, stream: number, size: number): void {
  const raw: Message = { op: 'file-end', id: ID, stream, size };
  contained(() => run.rec.end(parse ? (parseToAgent(raw) as FileEnd) : (raw as FileEnd)));
}

/** What the target does with a data frame: the receiver's if it owns the stream. */
function data(run: Run, stream: number, chunk: Buffer): void {
  if (run.rec.owns(stream)) contained(() => run.rec.data(chunk));
}

async function hostile(run: Run, r: Reader): Promise<void> {
  const parse = r.bool();
  let stream = 1;
  for (let step = 0; step < 24 && r.left; step++) {
    switch (r.u8() % 6) {
      case 0:
        stream = open(run, r, parse);
        break;
      case 1:
        data(run, r.bool() ? stream : r.u8(), r.bytes(r.u8()));
        break;
      case 2:
        // A big chunk (a frame's worth) of zeros, to push on the byte limits.
        data(run, stream, Buffer.alloc(r.pick([4096, 65536, 1 << 20])));
        break;
      case 3:
        end(run, parse, r.bool() ? stream : r.u8(), r.bool() ? r.u16() : written(run.rec));
        break;
      case 4: {
        const l = r.pick(LIMITS);
        run.rec.limit(l);
        run.limit = Math.min(run.limit, l);
        break;
      }
      default:
        // Let queued writes reach the disk before the next message.
        await new Promise((res) => setImmediate(res));
    }
    bounded(run);
  }
}

async function wellFormed(run: Run, r: Reader): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (let n = 1 + (r.u8() % 5), stream = 1; n > 0; n--, stream++) {
    const name = `${r.pick(['core', 'pages', 'mm', 'fs'])}-${r.u8()}.img`;
    if (files.has(name)) continue;
    const body = r.bytes(r.u16() % 2048);
    files.set(name, body);
    run.rec.open(parseToAgent({ op: 'file', id: ID, stream, name, size: body.length }) as FileStart);
    for (let at = 0; at < body.length;) {
      const n = 1 + r.u8() * 4;
      data(run, stream, body.subarray(at, at + n));
      at += n;
    }
    run.rec.end(parseToAgent({ op: 'file-end', id: ID, stream, size: body.length }) as FileEnd);
    bounded(run);
  }
  return files;
}

export async function fuzz(input: Buffer): Promise<void> {
  const r = new Reader(input);
  const ok = r.bool();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-fuzz-images-'));
  try {
    // root/a/b/images, beside a file the receiver must never touch; in a hostile run one of its names
    // is already taken by a symlink to that file (a later image of that name must not write through it).
    const dir = path.join(root, 'a', 'b', 'images');
    fs.mkdirSync(dir, { recursive: true });
    const outside = path.join(root, 'a', 'b', 'outside');
    fs.writeFileSync(outside, 'untouched');
    if (!ok) fs.symlinkSync(outside, path.join(dir, PLANTED));
    const before = tree(root);
    const limit = ok ? 64 << 20 : r.pick(LIMITS);
    const run: Run = { dir, socket: new Socket(), limit, admitted: limit, reported: [], rec: null! };
    run.rec = new ImageReceiver(
      { socket: run.socket } as unknown as AuthChannel,
      dir,
      limit,
      (e) => void run.reported.push(e),
    );
    const files = ok ? await wellFormed(run, r) : (await hostile(run, r), null);
    await settled(run.rec.flushed());
    await settled(run.rec.dispose());
    bounded(run);
    for (const e of run.reported) invariant(isContained(e), `reported ${String(e)}`);
    invariant(!run.socket.paused, 'the socket stays paused with everything written');

    invariant(fs.readFileSync(outside, 'utf8') === 'untouched', 'wrote through to a file outside its folder');
    const after = tree(root);
    const inside = `a/b/images${path.sep}`;
    for (const e of after)
      invariant(before.includes(e) || (e.startsWith(inside) && e.endsWith(':file')), `created ${e}`);
    let held = 0;
    for (const f of fs.readdirSync(dir)) if (f !== PLANTED || ok) held += fs.statSync(path.join(dir, f)).size;
    invariant(held <= run.admitted, `${held} bytes on disk over the ${run.admitted}-byte limit`);
    if (files) {
      invariant(run.reported.length === 0, `a well-formed transfer failed: ${String(run.reported[0])}`);
      invariant(after.length === before.length + files.size, `${after.length - before.length} files for ${files.size}`);
      for (const [name, body] of files)
        invariant(fs.readFileSync(path.join(dir, name)).equals(body), `${name} differs from what was sent`);
      invariant(run.rec.files === files.size, `counted ${run.rec.files} files for ${files.size}`);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

export const seeds = [
  Buffer.from([1, 2, 0, 0, 0, 5, 1, 2, 3, 4, 5, 6, 0, 1, 1, 0, 3, 9, 9, 9]),
  Buffer.from([0, 1, 3, 0, 1, 0, 0, 1, 1, 4, 1, 2, 3, 4, 3, 1, 1, 5]),
  Buffer.from([0, 2, 0, 0, 1, 1, 0, 1, 0, 0, 2, 0, 5, 3, 0, 0]),
  Buffer.from([0, 4, 1, 0, 1, 2, 0, 1, 3, 2, 1, 2, 3, 1, 1, 3]),
];
