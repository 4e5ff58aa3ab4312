// Arbitrary calls into the native layer never crash or hang the process.
import t from 'tap';
import { execOutput, type ExecError } from '../../lib/exec.js';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const fuzz = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../helpers/native-fuzz.js');

for (const seed of [1, 7, 42, 1234, 99991, 271828]) {
  void t.test(`native fuzz, seed ${seed}`, async (t) => {
    const r = await execOutput(process.execPath, ['--expose-gc', fuzz, String(seed), '3000'], { timeout: 60_000 }).then(
      (o) => ({ code: 0, signal: null as string | null, out: o.stdout + o.stderr }),
      (e: ExecError) => ({ code: e.exitCode, signal: e.signal, out: e.stdout + e.stderr }),
    );
    t.equal(r.signal, null, `no signal (${r.out.slice(-300)})`);
    t.equal(r.code, 0, 'exits cleanly');
    t.match(r.out, /done/);
  });
}
