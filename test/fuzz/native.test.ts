// The libFuzzer targets over C++ parsers (test/fuzz/native/*.cc), each a short deterministic run through
// scripts/fuzz-native.sh: fixed seed, bounded runs, the kept corpus test/fuzz/corpus/native-<target>
// replayed first. ASan, UBSan or a target's own invariant check make the run exit non-zero, with the
// input saved in $TMPDIR/sos-fuzz-findings/. For a longer run: scripts/fuzz-native.sh NAME -max_total_time=600.
import t from 'tap';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const script = path.join(root, 'scripts/fuzz-native.sh');
const targets = fs
  .readdirSync(path.join(root, 'test/fuzz/native'))
  .filter((f) => f.endsWith('.cc'))
  .map((f) => f.slice(0, -3));
/** About 5 s each here (a target runs some 200 000 inputs a second), plus the first build. */
const RUNS: Record<string, number> = {};
const DEFAULT_RUNS = 1_000_000;

const hasClang = spawnSync('sh', ['-c', 'command -v clang++-14'], { stdio: 'ignore' }).status === 0;

t.ok(targets.length > 0, 'there are native fuzz targets');

for (const name of targets) {
  void t.test(name, async (t) => {
    // Not a skip: the suite's host (scripts/setup-host.sh) installs the compiler, so its absence is a fault.
    if (!hasClang) {
      t.fail('clang++-14 is missing: run scripts/setup-host.sh (it installs clang-14 and libclang-rt-14-dev)');
      return;
    }
    const runs = RUNS[name] ?? DEFAULT_RUNS;
    const { code, out } = await new Promise<{ code: number; out: string }>((resolve) =>
      execFile(
        'bash',
        [script, name, '-seed=20261204', `-runs=${runs}`],
        { maxBuffer: 1 << 26, env: { ...process.env, SOS_FUZZ_FRESH: '1' } },
        (e, stdout, stderr) => resolve({ code: e ? ((e.code as number) ?? 1) : 0, out: stdout + stderr }),
      ),
    );
    t.equal(code, 0, code === 0 ? 'no finding' : out.slice(-20_000));
    t.match(out, new RegExp(`stat::number_of_executed_units: ${runs}\\b`), 'every run was made');
    const done = /#\d+\s+DONE\s+(.*)/.exec(out);
    t.comment(`${name}: ${runs} runs, ${done ? done[1] : 'no DONE line'}`);
  });
}
