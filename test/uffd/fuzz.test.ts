// Arbitrary calls into the native layer never crash or hang the process.
import t from 'tap';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const fuzz = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../helpers/native-fuzz.js');

for (const seed of [1, 7, 42, 1234, 99991, 271828]) {
  void t.test(`native fuzz, seed ${seed}`, async (t) => {
    const r = await new Promise<{ code: number | null; signal: string | null; out: string }>((resolve) => {
      execFile(
        process.execPath,
        ['--expose-gc', fuzz, String(seed), '3000'],
        { timeout: 60_000 },
        (err, stdout, stderr) => {
          const e = err as (Error & { code?: number; signal?: string }) | null;
          resolve({ code: e ? (e.code ?? null) : 0, signal: e?.signal ?? null, out: stdout + stderr });
        },
      );
    });
    t.equal(r.signal, null, `no signal (${r.out.slice(-300)})`);
    t.equal(r.code, 0, 'exits cleanly');
    t.match(r.out, /done/);
  });
}
