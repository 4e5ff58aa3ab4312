// Runs fuzz targets (test/fuzz/targets/*.ts, each exporting Jazzer.js's `fuzz(data)`) with the
// coverage-guided engine, one after the other. Exit 0: no findings; 1: a finding (its input is saved).
//   node dist/test/fuzz/run.js [target...] [-runs=N] [-seconds=S] [-seed=N] [-corpus=DIR] [-seeds=DIR] [-max_len=N]
//   node dist/test/fuzz/run.js [target...] -distill=FROM -into=TO
// Without targets, all of them; with -corpus, each target keeps its corpus in DIR/<target>; -seeds
// adds DIR/<target> read only (test/fuzz/corpus, kept in git). -distill replays FROM/<target>
// smallest first and writes to TO/<target> only the inputs that reach new blocks.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Coverage, distill, fuzz, type Target } from './engine.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const targetsDir = path.join(here, 'targets');

const flags = new Map<string, string>();
const names: string[] = [];
for (const a of process.argv.slice(2)) {
  const m = /^-{1,2}([a-z_]+)=(.*)$/.exec(a);
  if (m) flags.set(m[1], m[2]);
  else names.push(a);
}
const num = (k: string, dflt: number) => {
  const v = flags.has(k) ? Number(flags.get(k)) : dflt;
  if (Number.isNaN(v) || v < 0) throw new Error(`-${k} must be a number ≥ 0`);
  return v;
};
const all = fs
  .readdirSync(targetsDir)
  .filter((f) => f.endsWith('.js'))
  .map((f) => f.slice(0, -3))
  .sort();
for (const n of names) if (!all.includes(n)) throw new Error(`no fuzz target ${n} (known: ${all.join(', ')})`);

// The library and the targets' own decoding of the input count; the engine and node's internals do not.
const coverage = new Coverage(
  (url) => url.startsWith('file://') && url.includes('/dist/') && !/\/dist\/test\/fuzz\/(engine|run)\.js$/.test(url),
);
let failed = false;
for (const name of names.length ? names : all) {
  const target = (await import(pathToFileURL(path.join(targetsDir, `${name}.js`)).href)) as Target;
  const from = flags.get('distill');
  if (from) {
    const into = flags.get('into');
    if (!into) throw new Error('-distill needs -into=DIR');
    const d = await distill(target, path.join(from, name), path.join(into, name), coverage);
    console.log(`distill ${name}: ${d.read} inputs read, ${d.kept} kept in ${path.join(into, name)}`);
    continue;
  }
  const corpus = flags.get('corpus');
  const seeds = flags.get('seeds');
  const r = await fuzz(target, {
    runs: num('runs', Infinity),
    seconds: num('seconds', flags.has('runs') ? Infinity : 60),
    seed: num('seed', 20261203),
    maxLen: num('max_len', 4096),
    corpus: corpus ? path.join(corpus, name) : undefined,
    seeds: seeds ? path.join(seeds, name) : undefined,
    artifacts: flags.get('artifacts') ?? path.join(os.tmpdir(), 'sos-fuzz-findings'),
    coverage,
  });
  const rate = Math.round(r.execs / Math.max(r.ms / 1000, 0.001));
  console.log(
    `fuzz ${name}: ${r.execs} inputs in ${(r.ms / 1000).toFixed(1)} s (${rate}/s), corpus ${r.corpus}, ` +
      `features ${r.features}, ${r.finding ? 1 : 0} findings`,
  );
  if (r.finding) {
    failed = true;
    console.log(`finding in ${name}, input saved to ${r.finding.file} (hex ${r.finding.input.toString('hex')}):`);
    console.log(r.finding.error);
    break;
  }
}
process.exitCode = failed ? 1 : 0;
