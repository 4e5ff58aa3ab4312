// Writes the seed corpus of the memory-frame libFuzzer target (test/fuzz/native/memory-frame.cc):
// a valid frame of each type, in the target's input layout. Run after a build when the protocol changes:
//   node dist/test/fuzz/native/memory-frame-seeds.js
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MAX_BATCH, PAGE, T, clientHello, header } from '../../memory/wire.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(here, '../../../../test/fuzz/corpus/native-memory-frame');

const HELLO = 0;
const AUTH = 2;
const DIRECT = 0x80;
const ATTACH_RDMA = 7;
const tag = Buffer.alloc(16); // the target skips it: bodies are taken as decrypted

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}
function u64(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
}
function range(id: number, region: bigint, first: bigint, count: number): Buffer {
  return Buffer.concat([u32(id), u64(region), u64(first), u32(count)]);
}
function sealed(type: number, body: Buffer): Buffer {
  return Buffer.concat([header(body.length, type), body, tag]);
}

const hello = clientHello('billing', Buffer.alloc(32, 0xab));
const bodies: Record<string, [number, Buffer]> = {
  alloc: [T.ALLOC, Buffer.concat([u32(1), u64(256n)])],
  read: [T.READ, range(2, 1n, 0n, 1)],
  'read-batch': [T.READ, range(3, 1n, 7n, MAX_BATCH)],
  write: [T.WRITE, Buffer.concat([range(4, 1n, 3n, 1), Buffer.alloc(PAGE, 0x5a)])],
  free: [T.FREE, Buffer.concat([u32(5), u64(1n)])],
  renew: [T.RENEW, Buffer.concat([u32(6), u64(1n)])],
  stats: [T.STATS, u32(7)],
  'attach-rdma': [ATTACH_RDMA, Buffer.concat([u32(8), u64(1n), u32(0x11), u32(0x22), Buffer.alloc(16, 0xfe)])],
};

const seeds: Record<string, Buffer> = {
  // The whole conversation: hello, proof, then requests.
  handshake: Buffer.concat([
    Buffer.from([HELLO]),
    header(hello.length, T.CLIENT_HELLO),
    hello,
    header(32, T.PROOF),
    Buffer.alloc(32, 0x77),
    sealed(...bodies.alloc),
    sealed(...bodies.stats),
  ]),
  'direct-hello': Buffer.concat([Buffer.from([DIRECT, T.CLIENT_HELLO, 0]), hello]),
  'direct-read': Buffer.concat([Buffer.from([DIRECT, T.READ, 0]), bodies.read[1]]),
};
for (const [name, [type, body]] of Object.entries(bodies))
  seeds[name] = Buffer.concat([Buffer.from([AUTH]), sealed(type, body)]);

fs.mkdirSync(out, { recursive: true });
for (const [name, data] of Object.entries(seeds)) fs.writeFileSync(path.join(out, name), data);
console.log(`${Object.keys(seeds).length} seeds in ${path.relative(process.cwd(), out)}`);
