// packaging/sosd.service: systemd accepts it (systemd-analyze verify), every flag its ExecStart
// passes is one sosd knows, and it keeps the workloads alive across a restart (KillMode=process).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const unit = path.join(root, 'packaging/sosd.service');
const sosd = path.join(root, 'dist/lib/daemon/sosd.js');

void t.test('the systemd unit is valid and passes sosd only flags it knows', async (t) => {
  const text = fs.readFileSync(unit, 'utf8');
  const exec = /^ExecStart=((?:.*\\\n)*.*)$/m.exec(text)?.[1].replace(/\\\n/g, ' ') ?? '';
  const flags = [...exec.matchAll(/(--[a-z-]+)/g)].map((m) => m[1]);
  t.ok(flags.length >= 3, `ExecStart passes flags: ${exec}`);
  const help = spawnSync(process.execPath, [sosd, '--help'], { encoding: 'utf8' }).stdout;
  t.same(
    flags.filter((f) => !help.includes(`${f} `)),
    [],
    'sosd --help lists every flag of ExecStart',
  );
  t.match(text, /^KillMode=process$/m, 'a restart kills sosd only, not its workloads');
  t.match(text, /^KillSignal=SIGTERM$/m);
  const v = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
  if (v.error) t.comment(`systemd-analyze is not installed (${v.error.message}): not verified`);
  else t.equal(v.status, 0, `systemd-analyze verify: ${v.stdout}${v.stderr}`);
});
