// sosd's request lines (lib/daemon/protocol.ts parseRequest): only a FrameError may come out, and an
// accepted request has a safe-integer id, a known op and object args (or none).
import { parseRequest } from '../../../lib/daemon/protocol.js';
import { contained, invariant } from '../input.js';
import { JSON_TOKENS } from '../vocabulary.js';

const OPS = new Set(['status', 'ping']);

export function fuzz(data: Buffer): void {
  contained(() => {
    const q = parseRequest(data.toString('utf8'), OPS);
    invariant(Number.isSafeInteger(q.id) && OPS.has(q.op), `accepted ${JSON.stringify(q)}`);
    invariant(q.args === undefined || (typeof q.args === 'object' && q.args !== null), 'args is not an object');
  });
}

export const seeds = [
  Buffer.from('{"v":1,"id":1,"op":"status"}'),
  Buffer.from('{"v":1,"id":2,"op":"ping","args":{"x":[1,2]}}'),
  Buffer.from('{"v":2,"id":3,"op":"x"}'),
];
export const dictionary = [
  '"v"',
  '"id"',
  '"op"',
  '"args"',
  '"status"',
  '"ping"',
  '1',
  ...JSON_TOKENS,
  '"toString"',
  '"valueOf"',
  '9007199254740993',
];
