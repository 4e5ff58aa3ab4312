// What a user does: pack the package, `npm install` the tarball in an empty
// folder (its install step builds the addon from the shipped sources), then
// import 'serverlessos' there and open a userfaultfd.
import t from 'tap';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec } from '../../lib/exec.js';

// dist/test/package/ -> the repository root
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
// Guards against a hung npm, not measures: the install compiles the addon, which on a
// busy two-core machine takes minutes (JOBS lets node-gyp use every core).
const NPM_TIMEOUT = 25 * 60_000;
t.setTimeout(30 * 60_000);

interface PackEntry {
  filename: string;
  files: { path: string }[];
}

void t.test('the packed tarball installs, builds and opens a userfaultfd', async (t) => {
  const packDir = await mkdtemp(path.join(os.tmpdir(), 'sos-pack-'));
  const appDir = await mkdtemp(path.join(os.tmpdir(), 'sos-app-'));
  t.teardown(async () => {
    await rm(packDir, { recursive: true, force: true });
    await rm(appDir, { recursive: true, force: true });
  });

  const packed = JSON.parse(
    await exec('npm', ['pack', root, '--pack-destination', packDir, '--json', '--silent'], { timeout: NPM_TIMEOUT }),
  ) as PackEntry[];
  t.equal(packed.length, 1, 'one tarball');
  const files = packed[0].files.map((f) => f.path);
  for (const f of [
    'package.json',
    'binding.gyp',
    'native/core/addon.cc',
    'native/criu/hwbp_probe.c',
    'dist/lib/index.js',
  ])
    t.ok(files.includes(f), `ships ${f}`);
  for (const dir of ['test/', 'bench/', 'dist/test/', 'dist/bench/', 'scripts/vm/'])
    t.notOk(
      files.some((f) => f.startsWith(dir)),
      `does not ship ${dir}`,
    );
  const tarball = path.join(packDir, packed[0].filename);
  t.same(await readdir(packDir), [packed[0].filename]);

  await writeFile(
    path.join(appDir, 'package.json'),
    JSON.stringify({ name: 'sos-install-check', version: '1.0.0', private: true, type: 'module' }),
  );
  await exec('npm', ['install', '--prefix', appDir, '--no-audit', '--no-fund', '--loglevel=error', tarball], {
    timeout: NPM_TIMEOUT,
    env: { ...process.env, JOBS: String(os.availableParallelism()) },
  });
  const installed = path.join(appDir, 'node_modules', 'serverlessos');
  t.ok(existsSync(path.join(installed, 'build', 'Release', 'serverlessos.node')), 'the install step built the addon');
  t.ok(existsSync(path.join(installed, 'build', 'Release', 'criu_hwbp_probe')), 'and the CRIU breakpoint probe');
  t.ok(existsSync(path.join(installed, 'build', 'Release', 'sos_run_shim.so')), "and sosctl run's preload shim");
  const help = await exec(path.join(appDir, 'node_modules', '.bin', 'sosctl'), ['run', '--help']);
  t.match(help, /--local-memory <size>/, 'the installed sosctl runs (sosctl run --help)');

  const script = path.join(appDir, 'check.mjs');
  await writeFile(
    script,
    [
      "import { Userfaultfd } from 'serverlessos';",
      'const kernel = [...Userfaultfd.probe().features];',
      'const u = Userfaultfd.open();',
      'const features = [...u.features];',
      'u.close();',
      'console.log(JSON.stringify({ kernel, features }));',
      '',
    ].join('\n'),
  );
  const out = JSON.parse(await exec(process.execPath, [script])) as { kernel: string[]; features: string[] };
  t.ok(out.kernel.length > 0, `the kernel's features: ${out.kernel.join(' ')}`);
  t.ok(
    out.features.every((f) => out.kernel.includes(f)),
    `the handshake's features (${out.features.join(' ')}) are the kernel's`,
  );
  t.equal(out.features.includes('THREAD_ID'), out.kernel.includes('THREAD_ID'), 'THREAD_ID asked for when offered');
});
