// What every verbs object shares: its raw native object, an idempotent close, `using`.
import type { RawNode } from '../native/index.js';

/** A node of the verbs tree (pyverbs' base object). */
export abstract class VerbsObject implements Disposable {
  /** @internal */ abstract readonly raw: RawNode;
  get closed(): boolean {
    return this.raw.isClosed();
  }
  /** Close (idempotent); children first. */
  close(): void {
    this.raw.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
