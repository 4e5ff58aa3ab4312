// sosd's /metrics and /healthz, served by a real daemon: the exposition passes `promtool check metrics`
// (Prometheus' own linter: naming, units, _total counters), counts what the socket served, and carries
// no unbounded label; /healthz says 200 while the socket serves. Args are checked against each op's schema.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { request } from '../../lib/daemon/client.js';

const sosd = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../lib/daemon/sosd.js');
const PROMTOOL = process.env.PROMTOOL ?? '/usr/local/lib/serverlessos/promtool';

async function startSosd(t: Test): Promise<{ socket: string; base: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sosd-metrics-'));
  const socket = path.join(dir, 'sosd.sock');
  const child = spawn(
    process.execPath,
    [sosd, '--socket', socket, '--http', '127.0.0.1:0', '--log-level', 'warn', '--state-dir', path.join(dir, 'state')],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  t.teardown(() => {
    child.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      out += d;
      if (out.includes('\n')) resolve(out);
    });
    child.once('exit', (c) => reject(new Error(`sosd exited ${c}`)));
  });
  const m = /metrics on (http:\/\/\S+)\/metrics/.exec(line);
  if (!m) throw new Error(`no metrics URL in ${JSON.stringify(line)}`);
  return { socket, base: m[1] };
}

void t.test('/metrics passes promtool, counts requests by op and outcome; /healthz is 200', async (t) => {
  const { socket, base } = await startSosd(t);
  await request('status', {}, socket);
  await request('status', {}, socket);
  await t.rejects(request('status', { x: 1 }, socket), {
    code: 'ERR_BAD_ARGS',
    message: 'args has an unknown field "x"',
  });
  await t.rejects(request('nope', {}, socket), { code: 'ERR_UNKNOWN_OP' });

  const health = await fetch(`${base}/healthz`);
  t.equal(health.status, 200);
  t.match(await health.json(), { status: 'ok' });
  t.equal((await fetch(`${base}/other`)).status, 404);
  t.equal((await fetch(`${base}/metrics`, { method: 'POST' })).status, 405);

  const res = await fetch(`${base}/metrics`);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  t.match(text, /^sos_daemon_requests_total\{op="status",outcome="ok"\} 2$/m);
  t.match(text, /^sos_daemon_requests_total\{op="status",outcome="bad_args"\} 1$/m);
  t.match(text, /^sos_daemon_frames_rejected_total\{reason="ERR_UNKNOWN_OP"\} 1$/m);
  t.match(text, /^sos_daemon_up 1$/m);
  t.match(text, /^sos_node_memory_total_bytes \d+$/m);
  const samples = text.split('\n').filter((l) => l && !l.startsWith('#'));
  t.same(
    samples.filter((l) => !l.startsWith('sos_')),
    [],
    'every metric has the sos_ prefix',
  );
  t.notMatch(text, /pid="|page="|path="/, 'no per-PID, per-page or per-path label');

  const lint = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  t.equal(lint.error, undefined, `${PROMTOOL} runs (scripts/setup-host.sh installs it)`);
  t.equal(lint.status, 0, `promtool check metrics: ${lint.stdout}${lint.stderr}`);
});
