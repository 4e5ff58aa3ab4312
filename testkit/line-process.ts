// A child process driven by a line protocol: one command per stdin line, one
// answer per stdout line. Every wait has a deadline, and a line that arrives
// after its wait timed out is kept for the next one.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { within } from './wait.js';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class LineProcess {
  readonly proc: ChildProcessByStdio<Writable, Readable, null>;
  readonly exited: Promise<Exit>;
  private readonly queue: string[] = [];
  private waiters: { resolve: (l: string) => void; reject: (e: Error) => void }[] = [];
  private ended = false;

  readonly name: string;
  /** How long a wait lasts unless told otherwise. */
  readonly waitMs: number;

  /** `name` appears in timeout and exit errors. */
  constructor(file: string, args: string[], opts: { name?: string; waitMs?: number } = {}) {
    this.name = opts.name ?? file;
    this.waitMs = opts.waitMs ?? 60_000;
    this.proc = spawn(file, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    this.proc.stdin.on('error', () => {}); // EPIPE after the child died
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal })));
    const rl = readline.createInterface({ input: this.proc.stdout });
    rl.on('line', (l) => {
      const w = this.waiters.shift();
      if (w) w.resolve(l);
      else this.queue.push(l);
    });
    rl.on('close', () => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w.reject(new Error(`${this.name} closed its output (exited)`));
    });
  }

  get pid(): number {
    return this.proc.pid ?? 0;
  }

  /** The next line the process prints. */
  line(ms = this.waitMs): Promise<string> {
    const l = this.queue.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.ended) return Promise.reject(new Error(`${this.name} closed its output (exited)`));
    const w = { resolve: (_: string) => {}, reject: (_: Error) => {} };
    const p = new Promise<string>((resolve, reject) => Object.assign(w, { resolve, reject }));
    this.waiters.push(w);
    return within(p, ms, `a line from ${this.name}`).catch((e: Error) => {
      this.waiters = this.waiters.filter((x) => x !== w);
      throw e;
    });
  }

  /** Send a command without waiting for its answer. */
  write(cmd: string): void {
    this.proc.stdin.write(cmd + '\n');
  }

  /** Send a command; resolves with its one-line answer. */
  async ask(cmd: string, ms = this.waitMs): Promise<string> {
    this.write(cmd);
    return await this.line(ms);
  }

  /** How the process ended (rejects after `ms`). */
  exit(ms = this.waitMs): Promise<Exit> {
    return within(this.exited, ms, `${this.name} to exit`);
  }

  /**
   * SIGKILL the process and its descendants (a forked grandchild sharing its
   * stdout would otherwise keep the pipe, and this process's event loop, open).
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
