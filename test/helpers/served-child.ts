// Drives build/Release/uffd_child (test/fixtures/uffd-child.c): a separate
// process that opens a userfaultfd with the features asked for, maps SIZE
// bytes, prints "READY <fd> <addr> <size>" and obeys one command per stdin
// line. Every wait has a deadline; the child is SIGKILLed at test teardown.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FEATURES, Userfaultfd, type Feature } from '../../lib/uffd/index.js';
import { LineProcess } from '../../testkit/line-process.js';

export const childBinary = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../build/Release/uffd_child',
);

export type { Exit } from '../../testkit/line-process.js';

export class ServedChild extends LineProcess {
  fd = -1;
  address = 0;
  size = 0;

  private constructor(
    size: number,
    readonly features: Feature[],
  ) {
    let bits = 0n;
    for (const f of features) bits |= 1n << BigInt(FEATURES[f]);
    super(childBinary, [String(size), String(bits)], { name: 'uffd_child' });
  }

  /** Start a child; `t.teardown` kills it (whatever the test did). */
  static async start(
    t: { teardown(fn: () => unknown): void },
    size: number,
    features: Feature[] = [],
  ): Promise<ServedChild> {
    const c = new ServedChild(size, features);
    t.teardown(() => c.kill());
    const ready = await c.line();
    const m = /^READY (\d+) (\d+) (\d+)$/.exec(ready);
    if (!m) throw new Error(`uffd_child said: ${ready}`);
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
}
