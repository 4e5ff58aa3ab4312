// A small coverage-guided fuzzer in libFuzzer's mould: keep every input that reaches code not reached
// before, mutate the kept ones, stop at the first input the target throws on. The feedback is V8's own
// block coverage (taken through node:inspector after each input), so it needs no native fuzzer and sees
// ES modules as they run. Targets keep Jazzer.js's contract: a module exporting `fuzz(data: Buffer)`.
import inspector from 'node:inspector';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface Target {
  fuzz(data: Buffer): unknown;
  /** Inputs to start from (the kept corpus). */
  seeds?: Buffer[];
  /** Tokens the mutator inserts (field names, ops, magic values). */
  dictionary?: string[];
}

export interface FuzzOptions {
  runs: number;
  seconds: number;
  seed: number;
  maxLen: number;
  /** Folder of the corpus: read at the start, every input adding coverage written to it. */
  corpus?: string;
  /** Folder of inputs to start from, read only (the corpus kept in git: test/fuzz/corpus/<target>). */
  seeds?: string;
  /** Folder for the input of a finding (crash-<sha1>). */
  artifacts: string;
  /** Block coverage, started before the target's modules were loaded (see Coverage). */
  coverage: Coverage;
}

export interface FuzzResult {
  execs: number;
  corpus: number;
  features: number;
  ms: number;
  finding?: { input: Buffer; error: unknown; file: string };
}

/** xorshift32: the same seed gives the same run. */
class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (this.s = x >>> 0);
  }
  below(n: number): number {
    return n <= 0 ? 0 : this.next() % n;
  }
}

function post<T>(s: inspector.Session, method: string, params?: object): T {
  let out: T | undefined;
  let err: Error | null = null;
  // A session on this thread answers synchronously.
  s.post(method, params ?? {}, (e, r) => {
    err = e;
    out = r as T;
  });
  if (err) throw err as Error;
  return out!;
}

/**
 * Blocks run since the last call, as features: each function run with the blocks it skipped, each block
 * run with its count (bucketed as libFuzzer does).
 * Start it before importing the code to fuzz: V8 counts blocks only in functions compiled after that.
 */
export class Coverage {
  private readonly s = new inspector.Session();
  constructor(private readonly covers: (url: string) => boolean) {
    this.s.connect();
    post(this.s, 'Profiler.enable');
    post(this.s, 'Profiler.startPreciseCoverage', { callCount: true, detailed: true });
  }
  take(): string[] {
    const { result } = post<inspector.Profiler.TakePreciseCoverageReturnType>(this.s, 'Profiler.takePreciseCoverage');
    const out: string[] = [];
    for (const script of result) {
      if (!this.covers(script.url)) continue;
      for (const fn of script.functions) {
        const [whole, ...blocks] = fn.ranges;
        if (!whole.count) continue;
        // V8 lists a block only where its count differs from the function's: the blocks that did not
        // run say which way the function went.
        const skipped = blocks.filter((r) => !r.count).map((r) => r.startOffset);
        out.push(`${script.url}:${whole.startOffset}:${bucket(whole.count)}:${skipped.join(',')}`);
        for (const r of blocks) if (r.count) out.push(`${script.url}:${r.startOffset}:${bucket(r.count)}`);
      }
    }
    return out;
  }
  stop(): void {
    post(this.s, 'Profiler.stopPreciseCoverage');
    this.s.disconnect();
  }
}

const bucket = (n: number) => (n < 4 ? n : n < 8 ? 4 : n < 16 ? 5 : n < 32 ? 6 : n < 128 ? 7 : 8);

const BYTES = [0, 1, 2, 3, 0x10, 0x11, 0x12, 0x20, 0x7f, 0x80, 0xfe, 0xff];
const WORDS = [0, 1, 4, 16, 20, 32, 37, 49, 160, 255, 256, 0x7fff, 0xffff, 0x10000, 0x100004, 0x7fffffff, 0xffffffff];

/** One to five stacked mutations of `base` (libFuzzer's repertoire, minus the comparison tables). */
function mutate(base: Buffer, rng: Rng, corpus: Buffer[], dict: Buffer[], maxLen: number): Buffer {
  let b = Buffer.from(base);
  const n = 1 + rng.below(5);
  for (let i = 0; i < n; i++) {
    const at = rng.below(b.length + 1);
    switch (rng.below(11)) {
      case 0:
        if (b.length) b[rng.below(b.length)] ^= 1 << rng.below(8);
        break;
      case 1:
        if (b.length) b[rng.below(b.length)] = rng.below(256);
        break;
      case 2:
        if (b.length) b[rng.below(b.length)] = BYTES[rng.below(BYTES.length)];
        break;
      case 3: {
        const ins = Buffer.alloc(1 + rng.below(8)).map(() => rng.below(256));
        b = Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
        break;
      }
      case 4:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rng.below(16))]);
        break;
      case 5: {
        const from = rng.below(b.length);
        b = Buffer.concat([b.subarray(0, at), b.subarray(from, from + 1 + rng.below(32)), b.subarray(at)]);
        break;
      }
      case 6: {
        if (b.length < 4) break;
        const w = WORDS[rng.below(WORDS.length)];
        const o = rng.below(b.length - 3);
        if (rng.below(2)) b.writeUInt32BE(w >>> 0, o);
        else b.writeUInt32LE(w >>> 0, o);
        break;
      }
      case 7: {
        if (!dict.length) break;
        const tok = dict[rng.below(dict.length)];
        b = rng.below(2)
          ? Buffer.concat([b.subarray(0, at), tok, b.subarray(at)])
          : Buffer.concat([b.subarray(0, at), tok, b.subarray(at + tok.length)]);
        break;
      }
      case 8: {
        const other = corpus[rng.below(corpus.length)];
        const from = rng.below(other.length);
        b = Buffer.concat([b.subarray(0, at), other.subarray(from, from + 1 + rng.below(64)), b.subarray(at)]);
        break;
      }
      case 9:
        if (b.length) {
          const o = rng.below(b.length);
          b[o] = (b[o] + (rng.below(2) ? 1 : -1) * (1 + rng.below(8))) & 0xff;
        }
        break;
      default:
        b = b.subarray(0, rng.below(b.length + 1));
    }
  }
  return b.length > maxLen ? b.subarray(0, maxLen) : b;
}

const sha1 = (b: Buffer) => crypto.createHash('sha1').update(b).digest('hex');

/** The files of `dir` (none if it does not exist), in name order. */
function readDir(dir: string | undefined): Buffer[] {
  if (!dir || !fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .sort()
    .map((f) => fs.readFileSync(path.join(dir, f)));
}

/** A coverage feature reduced to the function or block it names: that it ran, not how often or along which path. */
function reached(f: string): string {
  const fn = /^(.*):(\d+):\d+:([\d,]*)$/.exec(f);
  if (fn) return `${fn[1]}:${fn[2]}`;
  const block = /^(.*):(\d+):\d+$/.exec(f);
  return block ? `${block[1]}:${block[2]}` : f;
}

/**
 * Distil the inputs in `from` into `to`: replayed smallest first, an input is kept only if it
 * reaches a function or block none kept before it did. What remains is small enough to keep in git.
 */
export async function distill(
  target: Target,
  from: string,
  to: string,
  coverage: Coverage,
): Promise<{ read: number; kept: number }> {
  const inputs = readDir(from).sort((a, b) => a.length - b.length || a.compare(b));
  const seen = new Set<string>();
  coverage.take();
  fs.mkdirSync(to, { recursive: true });
  let kept = 0;
  for (const input of inputs) {
    try {
      const r = target.fuzz(input);
      if (r instanceof Promise) await r;
    } catch {
      continue; // a finding is not corpus
    }
    let fresh = false;
    for (const f of coverage.take().map(reached))
      if (!seen.has(f)) {
        seen.add(f);
        fresh = true;
      }
    if (!fresh) continue;
    fs.writeFileSync(path.join(to, sha1(input)), input);
    kept++;
  }
  return { read: inputs.length, kept };
}

/** Fuzz `target` until `runs` inputs or `seconds` have passed, or the first finding. */
export async function fuzz(target: Target, o: FuzzOptions): Promise<FuzzResult> {
  const rng = new Rng(o.seed);
  const dict = (target.dictionary ?? []).map((s) => Buffer.from(s));
  const initial = [...(target.seeds ?? []), ...readDir(o.seeds)];
  if (o.corpus) {
    fs.mkdirSync(o.corpus, { recursive: true });
    for (const f of fs.readdirSync(o.corpus).sort()) initial.push(fs.readFileSync(path.join(o.corpus, f)));
  }
  if (!initial.length) initial.push(Buffer.alloc(0));
  const cov = o.coverage;
  const seen = new Set<string>();
  const corpus: Buffer[] = [];
  const started = Date.now();
  let execs = 0;
  cov.take(); // what loading the modules ran

  const run = async (input: Buffer): Promise<{ error: unknown } | boolean> => {
    execs++;
    try {
      const r = target.fuzz(input);
      if (r instanceof Promise) await r;
    } catch (error) {
      return { error };
    }
    let fresh = false;
    for (const f of cov.take())
      if (!seen.has(f)) {
        seen.add(f);
        fresh = true;
      }
    return fresh;
  };
  const result = (finding?: FuzzResult['finding']): FuzzResult => {
    return { execs, corpus: corpus.length, features: seen.size, ms: Date.now() - started, finding };
  };
  const found = (input: Buffer, error: unknown) => {
    fs.mkdirSync(o.artifacts, { recursive: true });
    const file = path.join(o.artifacts, `crash-${sha1(input)}`);
    fs.writeFileSync(file, input);
    return result({ input, error, file });
  };

  for (const input of initial) {
    const r = await run(input);
    if (typeof r === 'object') return found(input, r.error);
    if (r || !corpus.length) corpus.push(input);
  }
  while (execs < o.runs && Date.now() - started < o.seconds * 1000) {
    const input = mutate(corpus[rng.below(corpus.length)], rng, corpus, dict, o.maxLen);
    const r = await run(input);
    if (typeof r === 'object') return found(input, r.error);
    if (r) {
      corpus.push(input);
      if (o.corpus) fs.writeFileSync(path.join(o.corpus, sha1(input)), input);
    }
  }
  return result();
}
