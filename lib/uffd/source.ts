/**
 * Page sources: where a FaultEngine gets the contents of missing pages.
 * The interface is small on purpose (a C++ fetch/store of a run of pages);
 * network sources of later modules plug in behind the same handle.
 */
import fs from 'node:fs';
import { native, type NativeSource } from '../native/index.js';
import { integer, object } from '../validate.js';
import { Region } from './region.js';
import { argType } from '../errors.js';

export class PageSource implements Disposable {
  /** @internal */ readonly native: NativeSource;
  /** @internal */ constructor(n: NativeSource) {
    this.native = n;
  }

  /** Every page reads as zeros (resolved with UFFDIO_ZEROPAGE, no copy). */
  static zero(): PageSource {
    return new PageSource(new native.NativeSource({ kind: 'zero' }));
  }

  /** Pages of another region of this process (copied straight from it, no bounce). */
  static fromRegion(region: Region): PageSource {
    if (!(region instanceof Region)) throw argType('region must be a Region');
    return new PageSource(new native.NativeSource({ kind: 'region', region: region.native }));
  }

  /** Pages of a file or memfd, read with pread from `offset`; past its end they read as zeros. */
  static fromFile(file: number | string, options?: { offset?: number; size?: number }): PageSource {
    const o = object('options', options);
    const offset = o.offset === undefined ? 0 : integer('options.offset', o.offset);
    const size = o.size === undefined ? undefined : integer('options.size', o.size);
    if (typeof file === 'string') {
      const fd = fs.openSync(file, 'r');
      try {
        return new PageSource(new native.NativeSource({ kind: 'file', fd, offset, size }));
      } finally {
        fs.closeSync(fd); // the source keeps its own dup
      }
    }
    integer('fd', file);
    return new PageSource(new native.NativeSource({ kind: 'file', fd: file, offset, size }));
  }

  get kind(): string | undefined {
    return this.native.info().kind;
  }
  get closed(): boolean {
    return this.native.info().closed;
  }

  /** Read what a fault at `offset` would receive (diagnostics, verification). */
  read(offset: number, length: number): Buffer {
    integer('offset', offset);
    integer('length', length, 0, 64 << 20);
    return this.native.read(offset, length);
  }

  /** Release this handle; engines serving from it keep it until they stop. */
  close(): void {
    this.native.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
