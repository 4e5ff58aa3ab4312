// Drives build/Release/uffd_child (test/fixtures/uffd-child.c): a separate
// process that opens a userfaultfd with the features asked for, maps SIZE
// bytes, prints "READY <fd> <addr> <size>" and obeys one command per stdin
// line. Every wait has a deadline; the child is SIGKILLed at test teardown.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { FEATURES, Userfaultfd, type Feature } from '../../lib/uffd/index.js';
import { within } from './wait.js';

export const childBinary = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../build/Release/uffd_child');

export interface Exit { code: number | null; signal: NodeJS.Signals | null }

export class ServedChild {
  readonly proc: ChildProcessByStdio<Writable, Readable, null>;
  readonly exited: Promise<Exit>;
  pid = 0;
  fd = -1;
  address = 0;
  size = 0;
  private readonly queue: string[] = [];
  private waiters: { resolve: (l: string) => void; reject: (e: Error) => void }[] = [];
  private ended = false;

  private constructor(size: number, readonly features: Feature[]) {
    let bits = 0n;
    for (const f of features) bits |= 1n << BigInt(FEATURES[f]);
    this.proc = spawn(childBinary, [String(size), String(bits)], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.proc.stdin.on('error', () => {});  // EPIPE after the child died
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal })));
    const rl = readline.createInterface({ input: this.proc.stdout });
    rl.on('line', (l) => {
      const w = this.waiters.shift();
      if (w) w.resolve(l);
      else this.queue.push(l);
    });
    rl.on('close', () => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w.reject(new Error('uffd_child closed its output (exited)'));
    });
  }

  /** Start a child; `t.teardown` kills it (whatever the test did). */
  static async start(t: { teardown(fn: () => unknown): void }, size: number, features: Feature[] = []): Promise<ServedChild> {
    const c = new ServedChild(size, features);
    t.teardown(() => c.kill());
    const ready = await c.line();
    const m = /^READY (\d+) (\d+) (\d+)$/.exec(ready);
    if (!m) throw new Error(`uffd_child said: ${ready}`);
    c.pid = c.proc.pid!;
    c.fd = Number(m[1]);
    c.address = Number(m[2]);
    c.size = Number(m[3]);
    return c;
  }

  /** The child's whole mapping, as a Where of another process. */
  get range(): { address: number; length: number } {
    return { address: this.address, length: this.size };
  }

  /** Adopt the child's userfaultfd (pidfd_getfd), knowing the features it negotiated. */
  adopt(): Userfaultfd {
    return Userfaultfd.fromProcess(this.pid, this.fd, { features: this.features });
  }

  /** The next line the child prints. */
  line(ms = 15_000): Promise<string> {
    const l = this.queue.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.ended) return Promise.reject(new Error('uffd_child closed its output (exited)'));
    const w = { resolve: (_: string) => {}, reject: (_: Error) => {} };
    const p = new Promise<string>((resolve, reject) => Object.assign(w, { resolve, reject }));
    this.waiters.push(w);
    // A wait that timed out must not swallow the line that comes later.
    return within(p, ms, 'a line from uffd_child').catch((e: Error) => {
      this.waiters = this.waiters.filter((x) => x !== w);
      throw e;
    });
  }

  /** Send a command without waiting for its answer. */
  write(cmd: string): void {
    this.proc.stdin.write(cmd + '\n');
  }

  /** Send a command; resolves with its one-line answer. */
  async send(cmd: string, ms = 15_000): Promise<string> {
    this.write(cmd);
    return await this.line(ms);
  }

  /** How the child ended (rejects after `ms`). */
  exit(ms = 15_000): Promise<Exit> {
    return within(this.exited, ms, 'uffd_child to exit');
  }

  /**
   * SIGKILL the child and its own children (a forked grandchild shares its
   * stdout: left alive, blocked on a fault, it would keep the pipe and with
   * it this process's event loop open).
   */
  kill(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      for (const pid of descendants(this.pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      this.proc.kill('SIGKILL');
    }
    this.proc.stdout.destroy();
    this.proc.stdin.destroy();
  }
}

function descendants(pid: number): number[] {
  if (!pid) return [];
  let kids: number[] = [];
  try {
    kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
  return kids.flatMap((k) => [k, ...descendants(k)]);
}
