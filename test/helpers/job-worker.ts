// Main-thread side of test/helpers/uffd-worker.ts: start a job in a worker
// thread, read its messages with deadlines, terminate it at test teardown.
import { Worker } from 'node:worker_threads';
import type { Job } from './uffd-worker.js';
import { within } from '../../testkit/wait.js';

const script = new URL('./uffd-worker.js', import.meta.url);

interface Message {
  type: 'info' | 'result' | 'error';
  value?: unknown;
  message?: string;
  code?: string;
}

export class JobWorker {
  readonly worker: Worker;
  /** The worker's exit code. */
  readonly exited: Promise<number>;
  /** The job's result; rejects if it failed or the worker ended without one. */
  readonly result: Promise<unknown>;
  private readonly infos: unknown[] = [];
  private infoWaiters: ((v: unknown) => void)[] = [];

  constructor(job: Job, t?: { teardown(fn: () => unknown): void }) {
    // Without the test runner's loaders (TypeScript hooks, mocks): a worker starts 5x faster.
    this.worker = new Worker(script, { workerData: job, execArgv: ['--enable-source-maps'] });
    this.exited = new Promise((resolve) => this.worker.once('exit', resolve));
    this.result = new Promise((resolve, reject) => {
      this.worker.on('message', (m: Message) => {
        if (m.type === 'info') {
          const w = this.infoWaiters.shift();
          if (w) w(m.value);
          else this.infos.push(m.value);
        } else if (m.type === 'result') resolve(m.value);
        else reject(Object.assign(new Error(`worker job failed: ${m.message}`), { code: m.code }));
      });
      this.worker.once('error', reject);
      this.worker.once('exit', (code) => reject(new Error(`worker exited (${code}) without a result`)));
    });
    this.result.catch(() => {}); // observed by whoever awaits it
    if (t) t.teardown(() => this.worker.terminate());
  }

  /** The next info message. */
  info<T>(ms = 15_000): Promise<T> {
    const v = this.infos.shift();
    if (v !== undefined) return Promise.resolve(v as T);
    return within(
      new Promise<T>((resolve) => this.infoWaiters.push(resolve as (v: unknown) => void)),
      ms,
      'an info message from the worker',
    );
  }

  send(m: unknown): void {
    this.worker.postMessage(m);
  }

  /** The job's result (rejects after `ms`). */
  done<T>(ms = 15_000): Promise<T> {
    return within(this.result, ms, 'the worker job to finish') as Promise<T>;
  }

  /** Run a job to completion and return its result. */
  static async run<T>(job: Job, ms = 15_000): Promise<T> {
    const w = new JobWorker(job);
    try {
      return await w.done<T>(ms);
    } finally {
      await w.worker.terminate();
    }
  }
}
