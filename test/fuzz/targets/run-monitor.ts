// sosctl run's monitor lines (lib/memory/run-protocol.ts), from the shim inside the program: only
// an ERR_PROTOCOL or ERR_FRAME_TOO_LARGE may come out; an accepted hello names a page-aligned arena
// of the expected size below 2^47, an accepted discard whole pages inside it, and the splitter never
// holds more than MAX_LINE bytes of an unfinished line.
import { LineSplitter, MAX_LINE, parseDiscard, parseHello } from '../../../lib/memory/run-protocol.js';
import { contained, invariant } from '../input.js';

const ARENA = 64 << 20;

export function fuzz(data: Buffer): void {
  const split = new LineSplitter();
  const text = data.toString('latin1');
  for (let at = 0; at < text.length; at += 97) {
    let lines: string[] = [];
    if (!contained(() => (lines = split.push(text.slice(at, at + 97))))) return;
    for (const l of lines) {
      invariant(l.length <= MAX_LINE && !l.includes('\n'), 'an overlong or unsplit line');
      contained(() => {
        const h = parseHello(l, ARENA);
        invariant(h.bytes === ARENA && h.address % 4096 === 0 && h.address + h.bytes <= 2 ** 47, `hello ${l}`);
        invariant(h.pid >= 1 && h.uffd !== h.memfd, `hello ${l}`);
      });
      contained(() => {
        const d = parseDiscard(l, ARENA);
        invariant(d.offset % 4096 === 0 && d.bytes % 4096 === 0 && d.offset + d.bytes <= ARENA, `discard ${l}`);
      });
    }
  }
}

export const seeds = [
  Buffer.from(`hello 4242 5 6 140000000000000 ${ARENA} 16417\n`),
  Buffer.from('discard 4096 8192\ndiscard 0 0\n'),
  Buffer.from(`hello 1 3 4 4096 ${ARENA} 0\ndiscard ${ARENA - 4096} 4096\n`),
];
export const dictionary = ['hello ', 'discard ', ' ', '\n', '4096', String(ARENA), '0', '140737488355328', '-1'];
