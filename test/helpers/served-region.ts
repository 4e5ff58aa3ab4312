// A fresh anonymous region whose missing faults a FaultEngine serves from `source`, closed (engine,
// userfaultfd, region) at the test's end: what the page-source tests fault through.
import type { Test } from 'tap';
import { FaultEngine, Region, Userfaultfd, type PageSource } from '../../lib/index.js';

export function servedRegion(
  t: Test,
  size: number,
  source: PageSource,
  engineOptions: { batchPages?: number; threads?: number } = { batchPages: 16 },
): { dst: Region; engine: FaultEngine } {
  const dst = Region.anonymous(size);
  const uffd = Userfaultfd.open();
  t.teardown(() => {
    engine.close();
    uffd.close();
    dst.close();
  });
  uffd.register(dst, { missing: true });
  const engine = new FaultEngine(uffd, engineOptions);
  engine.serve(dst, source).start();
  return { dst, engine };
}
