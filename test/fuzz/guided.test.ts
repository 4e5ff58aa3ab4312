// The coverage-guided fuzz targets (test/fuzz/targets/), each a short deterministic run: fixed seed,
// bounded inputs, starting from its seeds and the corpus kept in test/fuzz/corpus/<target>. A finding makes the run exit 1 with the input saved;
// `npm run fuzz` runs each much longer (FUZZ_SECONDS) on a corpus kept in .cache/fuzz.
import t from 'tap';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const runner = path.join(here, 'run.js');
/** The corpus kept in git (distilled from longer runs: `run.js -distill`), replayed first. */
const kept = path.resolve(here, '../../../test/fuzz/corpus');
const targets = fs
  .readdirSync(path.join(here, 'targets'))
  .filter((f) => f.endsWith('.js'))
  .map((f) => f.slice(0, -3));
/** The receiver writes a folder per input, sosd answers each for three peers through its whole server: fewer of those. */
const RUNS: Record<string, number> = { images: 1500, sosd: 2500 };

for (const name of targets) {
  void t.test(name, async (t) => {
    const artifacts = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-fuzz-'));
    t.teardown(() => fs.rmSync(artifacts, { recursive: true, force: true }));
    const args = [
      runner,
      name,
      '-seed=20261203',
      `-runs=${RUNS[name] ?? 8000}`,
      `-seeds=${kept}`,
      `-artifacts=${artifacts}`,
    ];
    const { code, out } = await new Promise<{ code: number; out: string }>((resolve) =>
      execFile(process.execPath, args, { maxBuffer: 1 << 24 }, (e, stdout, stderr) =>
        resolve({ code: e ? ((e.code as number) ?? 1) : 0, out: stdout + stderr }),
      ),
    );
    t.equal(code, 0, out);
    t.match(out, new RegExp(`fuzz ${name}: \\d+ inputs .* 0 findings`));
    t.comment(out.trim());
  });
}
