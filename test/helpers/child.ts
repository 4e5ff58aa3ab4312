// Drives test/fixtures/uffd-child.c: a separate process whose userfaultfd
// the test adopts (pidfd_getfd) and whose faults the test serves.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { FEATURES, Userfaultfd, type Feature } from '../../lib/uffd/index.js';

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../build/Release/uffd_child');

export class UffdChild {
  readonly proc: ChildProcessByStdio<Writable, Readable, null>;
  private readonly lines: string[] = [];
  private waiter: ((l: string) => void) | null = null;
  pid = 0;
  fd = -1;
  address = 0;
  size = 0;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(size: number, readonly features: Feature[]) {
    let bits = 0;
    for (const f of features) bits |= 1 << FEATURES[f];
    this.proc = spawn(bin, [String(size), String(bits)], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.exited = new Promise((res) => this.proc.once('exit', (code, signal) => res({ code, signal })));
    readline.createInterface({ input: this.proc.stdout }).on('line', (l) => {
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = null;
        w(l);
      } else this.lines.push(l);
    });
  }

  static async start(size: number, features: Feature[] = []): Promise<UffdChild> {
    const c = new UffdChild(size, features);
    const ready = await c.line();
    const m = /^READY (\d+) (\d+) (\d+)$/.exec(ready);
    if (!m) throw new Error(`uffd_child said: ${ready}`);
    c.pid = c.proc.pid!;
    c.fd = Number(m[1]);
    c.address = Number(m[2]);
    c.size = Number(m[3]);
    return c;
  }

  /** Adopt the child's userfaultfd into this process. */
  adopt(): Userfaultfd {
    return Userfaultfd.fromProcess(this.pid, this.fd, { features: this.features });
  }

  line(timeoutMs = 20_000): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('uffd_child did not answer in time')), timeoutMs);
      this.waiter = (s) => {
        clearTimeout(t);
        resolve(s);
      };
    });
  }

  /** Send a command; resolves with its one-line answer. */
  async send(cmd: string): Promise<string> {
    this.proc.stdin.write(cmd + '\n');
    return await this.line();
  }

  kill(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }
}

/** What `touch` in the child answers for pages whose first 8 bytes are `v` (little-endian u64 sum). */
export function sumOfPages(firstWords: bigint[]): string {
  return `SUM ${firstWords.reduce((a, b) => a + b, 0n) & ((1n << 64n) - 1n)}`;
}
