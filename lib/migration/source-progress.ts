// A migration's progress as the source reports it: phases with their times, bytes sent over
// the channel, and the page bytes the target says it received. Counts never go back, and the
// last event carries the result's exact counts (an estimate is never above them).
import type { Phase, Progress } from './types.js';

const PAGE = 4096;

export class ProgressMeter {
  private readonly t0 = performance.now();
  readonly phases: { phase: Phase; ms: number }[] = [];
  private phaseNow: Phase = 'connect';
  /** Image bytes sent over the channel, and how many of them were page images. */
  private sent = 0;
  private sentPages = 0;
  /** Page bytes the target reported so far, and its final count. */
  private received = 0;
  private receivedExact: number | null = null;

  constructor(private readonly listener?: (p: Progress) => void) {}

  get elapsedMs(): number {
    return performance.now() - this.t0;
  }

  phase(p: Phase): void {
    this.phases.push({ phase: p, ms: this.elapsedMs });
    this.phaseNow = p;
    this.emit(p === 'done' ? this.totals() : this.estimate());
  }

  /** `n` bytes of an image file went over the channel. */
  sentBytes(n: number, pageImage: boolean): void {
    this.sent += n;
    if (pageImage) this.sentPages += n;
    this.emit(this.estimate());
  }

  /** The target's running count of page bytes received (a total, not an increment). */
  receivedPages(total: number): void {
    if (total <= this.received) return;
    this.received = total;
    this.emit(this.estimate());
  }

  /** The target's exact final count of page bytes. */
  receivedPagesExact(total: number): void {
    this.receivedExact = total;
  }

  /** Bytes and pages moved, exact where the target sent its final count (never below an event sent). */
  totals(): { bytes: number; pages: number } {
    const pageBytes = Math.max(this.received, this.receivedExact ?? 0);
    return { bytes: this.sent + pageBytes, pages: Math.ceil((this.sentPages + pageBytes) / PAGE) };
  }

  private estimate(): { bytes: number; pages: number } {
    return { bytes: this.sent + this.received, pages: (this.sentPages + this.received) / PAGE };
  }

  private emit(c: { bytes: number; pages: number }) {
    try {
      this.listener?.({ phase: this.phaseNow, ...c });
    } catch {
      // a progress listener cannot break a migration
    }
  }
}
