// The source's side of its channel to the target agent: typed sends, and waits for one of the
// target's answers that fail at once when the target reported a failure (or broke the protocol).
// The target's page-byte counts go to the progress meter.
import type { AuthChannel, Message } from '../net/channel.js';
import { TargetFailedError } from './errors.js';
import { failpoint } from '../failpoint.js';
import { parseToSource, send, type SessionMessage, type ToAgent, type ToSource } from './messages.js';
import type { ProgressMeter } from './source-progress.js';

type Answer<K extends ToSource['op']> = Extract<ToSource, { op: K }>;

export class TargetLink {
  /** The first failure the target reported (every later wait fails with it). */
  private failure: Error | null = null;
  private nextStream = 1;
  private pagesDoneNow: () => void = () => {};
  /** Resolves when the target sent its final page count (post-copy: the last page moved). */
  readonly pagesDone = new Promise<void>((r) => (this.pagesDoneNow = r));

  constructor(
    readonly ch: AuthChannel,
    readonly id: string,
    private readonly meter: ProgressMeter,
  ) {
    ch.on('message', (m) => this.onMessage(m));
  }

  get closed(): boolean {
    return this.ch.closed;
  }

  /** A fresh data stream for one image file. */
  stream(): number {
    return this.nextStream++;
  }

  send(m: Exclude<ToAgent, { op: 'migrate' }>): void {
    send(this.ch, m);
    if (m.op === 'commit') failpoint('source-commit-sent'); // the frame is in the kernel's hands
  }

  /** Tell the target to drop the migration, if the channel still works. */
  abort(reason: string): void {
    if (this.ch.closed) return;
    try {
      this.send({ op: 'abort', id: this.id, reason });
    } catch {
      // gone meanwhile
    }
  }

  /** Ask (send `m`, if given) and wait for the target's answer `ops`; its failure rejects. */
  async ask<K extends ToSource['op']>(
    m: SessionMessage | null,
    ops: readonly K[],
    what: string,
    timeoutMs = 0,
  ): Promise<Answer<K>> {
    if (this.failure) throw this.failure;
    const answer = this.ch.waitFor(
      (x) => (x.id === this.id && ((ops as readonly string[]).includes(x.op) || x.op === 'failed')) || x.op === 'error',
      timeoutMs,
      what,
    );
    if (m) this.send(m);
    const p = parseToSource(await answer);
    if (p.op === 'failed' || p.op === 'error') throw (this.failure ??= failureOf(p));
    return p as Answer<K>;
  }

  /** The target's failure (the first one) once the migration has gone wrong there. */
  get targetFailure(): Error | null {
    return this.failure;
  }

  private onMessage(raw: Message) {
    if (raw.id !== this.id && raw.op !== 'error') return;
    let m: ToSource;
    try {
      m = parseToSource(raw);
    } catch (e) {
      this.failure ??= e as Error;
      return;
    }
    if (m.op === 'pages-received') this.meter.receivedPages(m.bytes);
    else if (m.op === 'pages-done') {
      this.meter.receivedPages(m.bytes);
      this.meter.receivedPagesExact(m.bytes);
      this.pagesDoneNow();
    } else if (m.op === 'failed' || m.op === 'error') this.failure ??= failureOf(m);
  }
}

function failureOf(m: Answer<'failed' | 'error'>): TargetFailedError {
  return m.op === 'failed'
    ? new TargetFailedError(m.step, m.message, m.code)
    : new TargetFailedError('protocol', m.error.message, m.error.code);
}
