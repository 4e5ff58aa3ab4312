// The migration messages (lib/migration/messages.ts): parseToAgent, parseToSource, parseToClient and
// incomingHead, on what the channel hands them (a JSON object with a string op). The input is JSON text,
// or (first byte odd) a message built field by field from known ops, names and value shapes, so that the
// fuzzer gets past the first checks. Only a SosError may come out.
import type { Message } from '../../../lib/net/channel.js';
import { incomingHead, parseToAgent, parseToClient, parseToSource } from '../../../lib/migration/messages.js';
import { Reader, contained } from '../input.js';
import { MESSAGE_FIELDS, MESSAGE_OPS } from '../vocabulary.js';

const FIELDS = [...MESSAGE_FIELDS, 'host', 'port', 'address', 'interface', 'started', 'toString', '__proto__'];
const STRINGS = [
  '0123456789abcdef0123456789abcdef',
  'precopy',
  'postcopy',
  'handover',
  'commit',
  '127.0.0.1',
  '::1',
  'core-1.img',
  '..',
  '',
  'receiving',
  'resumed',
  'failed',
  '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n',
];
const NUMBERS = [0, 1, -1, 0.5, 65535, 65536, 0xffffffff, 2 ** 32, Number.MAX_SAFE_INTEGER, 2 ** 53, 1e308];

function value(r: Reader, depth: number): unknown {
  switch (r.u8() % 9) {
    case 0:
      return r.pick(STRINGS);
    case 1:
      return r.pick(NUMBERS);
    case 2:
      return r.u32();
    case 3:
      return r.string();
    case 4:
      return r.bool();
    case 5:
      return null;
    case 6:
      return depth > 2 ? {} : object(r, depth + 1);
    case 7:
      return depth > 2 ? [] : Array.from({ length: r.u8() % 4 }, () => value(r, depth + 1));
    default:
      return r.pick(MESSAGE_OPS);
  }
}

function object(r: Reader, depth: number): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (let n = r.u8() % 8; n > 0 && r.left; n--) o[r.pick(FIELDS)] = value(r, depth);
  return o;
}

/** What the channel passes on: a JSON object with a string op, or nothing. */
function message(data: Buffer): Message | null {
  if (data[0] & 1) {
    const r = new Reader(data.subarray(1));
    const op = r.pick(MESSAGE_OPS);
    return { ...object(r, 0), op };
  }
  let v: unknown;
  try {
    v = JSON.parse(data.subarray(1).toString('utf8'));
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v) || typeof (v as Message).op !== 'string') return null;
  return v as Message;
}

export function fuzz(data: Buffer): void {
  if (!data.length) return;
  const m = message(data);
  if (!m) return;
  for (const parse of [parseToAgent, parseToSource, parseToClient, incomingHead]) contained(() => parse(m));
}

export const seeds = [
  Buffer.from(`\x00{"op":"file","id":"${'a'.repeat(32)}","stream":1,"name":"core-1.img","size":10}`),
  Buffer.from(`\x00{"op":"incoming","id":"${'a'.repeat(32)}","mode":"precopy","criu":{},"cert":"x"}`),
  Buffer.from(`\x00{"op":"failed","id":"${'a'.repeat(32)}","error":{"code":"E","message":"m"},"step":"x"}`),
  Buffer.from(`\x00{"op":"progress","phase":"dump","bytes":1}`),
  Buffer.from([1, 1, 3, 1, 0, 7, 2, 0, 0, 0, 1]),
];
export const dictionary = [...MESSAGE_OPS, ...FIELDS, ...STRINGS].map((s) => JSON.stringify(s));
