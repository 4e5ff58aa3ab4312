// agent-main.js as a process: every bad flag or value is a usage error (exit 2, nothing on stdout, the
// valid values named), --help documents every flag (and docs/migration.md does too), `secret` makes a
// 32-byte 0600 file and never replaces one, and the stdout JSON contract holds for listen and migrate.
import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const main = path.resolve(here, '../../lib/migration/agent-main.js');
// dist/test/migration/ → the checkout.
const docs = fs.readFileSync(path.resolve(here, '../../../docs/migration.md'), 'utf8');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function run(args: string[], umask?: number): Promise<Run> {
  // A umask for the child: through a shell, the one program here that sets it before exec.
  const [file, argv] =
    umask === undefined
      ? [process.execPath, [main, ...args]]
      : ['/bin/sh', ['-c', `umask ${umask.toString(8)} && exec "$0" "$@"`, process.execPath, main, ...args]];
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const r: Run = { code: null, stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => (r.stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (r.stderr += d.toString()));
  r.code = await new Promise<number | null>((res) => child.once('close', (c) => res(c)));
  return r;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-agent-main-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const secret = path.join(dir, 'secret');
fs.writeFileSync(secret, crypto.randomBytes(32), { mode: 0o600 });
const migrate = ['migrate', '--secret-file', secret, '--agent', '127.0.0.1:1', '--pid', '1', '--to', '127.0.0.1:2'];
const listen = ['listen', '--secret-file', secret, '--work-dir', path.join(dir, 'work')];

void t.test('a wrong value or flag exits 2 and names what is valid', async (t) => {
  const cases: [string, string[], RegExp][] = [
    ['--mode typo', [...migrate, '--mode', 'post-copy'], /'--mode <mode>' argument 'post-copy'.*precopy, postcopy/],
    ['--strategy typo', [...migrate, '--strategy', 'fast'], /'fast'.*auto, commit, handover/],
    ['--pid 0', ['migrate', '--secret-file', secret, '--agent', 'a:1', '--pid', '0', '--to', 'b:2'], /positive/],
    [
      '--pid not a number',
      ['migrate', '--secret-file', secret, '--agent', 'a:1', '--pid', '12x', '--to', 'b:2'],
      /pid/,
    ],
    ['--pid in hex', ['migrate', '--secret-file', secret, '--agent', 'a:1', '--pid', '0x10', '--to', 'b:2'], /pid/],
    ['--agent without a port', [...migrate, '--agent', '10.0.0.1'], /HOST:PORT/],
    ['--to port 0', [...migrate, '--to', '10.0.0.1:0'], /port 1\.\.65535/],
    ['--to port too large', [...migrate, '--to', '10.0.0.1:65536'], /port 1\.\.65535/],
    ['--to unbracketed IPv6', [...migrate, '--to', 'fd00::2:7070'], /\[fd00::2\]:7070/],
    ['--to a bad host', [...migrate, '--to', 'no_such host:7070'], /HOST:PORT/],
    ['--move-address not an IP', [...migrate, '--move-address', '10.0.0.300/24@eth0'], /is not an IP address/],
    ['--move-address prefix', [...migrate, '--move-address', '10.0.0.3/33@eth0'], /IPv4 address is 0\.\.32/],
    ['--move-address v6 prefix', [...migrate, '--move-address', 'fd00::3/129@eth0'], /IPv6 address is 0\.\.128/],
    ['--move-address no dev', [...migrate, '--move-address', '10.0.0.3/24'], /ADDR\/PREFIX@DEV\[@TARGETDEV\]/],
    ['--move-address bad dev', [...migrate, '--move-address', '10.0.0.3/24@eth0@a-very-long-interface'], /interface/],
    ['--port too large', [...listen, '--port', '70000'], /0\.\.65535/],
    ['--port negative', [...listen, '--port', '-1'], /0\.\.65535/],
    ['--host', [...listen, '--host', 'not a host'], /IP address or a host name/],
    ['--idle-timeout-ms too small', [...listen, '--idle-timeout-ms', '99'], /100\.\./],
    ['--idle-timeout-ms a fraction', [...listen, '--idle-timeout-ms', '150.5'], /100\.\./],
    ['--max-outgoing 0', [...listen, '--max-outgoing', '0'], /1\.\.1024/],
    ['--flush-neigh', [...listen, '--flush-neigh', 'a,../b'], /network namespace name.*'\.\.\/b'/],
    ['--refuse empty', [...listen, '--refuse', ''], /non-empty/],
    ['an unknown flag', [...listen, '--prot', '1'], /unknown option '--prot'/],
    ['a flag of the other command', [...listen, '--pid', '1'], /unknown option '--pid'/],
    ['a stray argument', [...listen, 'extra'], /too many arguments/],
    ['an unknown command', ['lisen'], /unknown command 'lisen'[\s\S]*listen/],
    ['no command', [], /Usage: agent-main\.js/],
    ['--secret-file missing', ['listen', '--work-dir', dir], /required option '--secret-file <file>'/],
    ['--pid missing', ['migrate', '--secret-file', secret, '--agent', 'a:1', '--to', 'b:2'], /required option '--pid/],
    ['an unreadable secret', ['listen', '--secret-file', path.join(dir, 'none'), '--work-dir', dir], /ENOENT/],
  ];
  for (const [what, args, message] of cases) {
    const r = await run(args);
    t.equal(r.code, 2, `${what}: exit 2`);
    t.match(r.stderr, message, `${what}: says what is valid`);
    t.equal(r.stdout, '', `${what}: nothing on stdout`);
  }
});

/** The flags a help text lists. */
const flags = (help: string) => new Set([...help.matchAll(/^ {2}(?:-\w, )?(--[a-z-]+)/gm)].map((m) => m[1]));

void t.test('--help of each command lists its flags, the top one lists them all, the docs too', async (t) => {
  const expected: Record<string, string[]> = {
    listen: [
      '--secret-file',
      '--work-dir',
      '--host',
      '--port',
      '--flush-neigh',
      '--refuse',
      '--idle-timeout-ms',
      '--in-doubt-ms',
      '--max-incoming',
      '--max-outgoing',
    ],
    migrate: ['--secret-file', '--agent', '--pid', '--to', '--mode', '--strategy', '--move-address', '--no-tcp'],
    resolve: ['--secret-file', '--work-dir', '--id', '--wait-ms'],
    secret: [],
  };
  const top = await run(['--help']);
  t.equal(top.code, 0);
  const section = /^## agent-main\.js: commands and flags$([\s\S]*?)^## /m.exec(docs)?.[1] ?? '';
  t.ok(section, 'docs/migration.md has the section');
  for (const [cmd, want] of Object.entries(expected)) {
    const r = await run([cmd, '--help']);
    t.equal(r.code, 0, `${cmd} --help exits 0`);
    t.same([...flags(r.stdout)].sort(), [...want, '--help'].sort(), `${cmd} --help lists exactly its flags`);
    t.match(top.stdout, `Usage: agent-main.js ${cmd}`, `the top --help shows ${cmd}'s usage`);
    t.match(section, `\`agent-main.js ${cmd}`, `the docs describe ${cmd}`);
    for (const f of want) {
      t.match(top.stdout, f, `the top --help documents ${cmd} ${f}`);
      t.match(section, f, `the docs document ${cmd} ${f}`);
    }
  }
  t.match((await run([...migrate, '--help'])).stdout, /choices: "precopy", "postcopy"/, 'the valid modes');
});

void t.test('secret writes 32 random bytes, mode 0600, and never replaces a file', async (t) => {
  const f = path.join(dir, 'new-secret');
  // A permissive umask: the mode is still exactly 0600.
  const r = await run(['secret', f], 0);
  t.equal(r.code, 0, r.stderr);
  t.same(JSON.parse(r.stdout), { secret: { file: f, bytes: 32 } });
  const st = fs.statSync(f);
  t.equal(st.mode & 0o777, 0o600);
  t.equal(st.size, 32);
  const first = fs.readFileSync(f);
  const again = await run(['secret', f]);
  t.equal(again.code, 2);
  t.match(again.stderr, /exists: refusing to overwrite/);
  t.same(fs.readFileSync(f), first, 'the existing secret is kept');
  const other = path.join(dir, 'other-secret');
  t.equal((await run(['secret', other])).code, 0);
  t.notSame(fs.readFileSync(other), first, 'each secret is fresh');
  // A symlink is not followed either (it would let the secret land elsewhere).
  const link = path.join(dir, 'link');
  fs.symlinkSync(path.join(dir, 'target-of-link'), link);
  t.equal((await run(['secret', link])).code, 2);
  t.notOk(fs.existsSync(path.join(dir, 'target-of-link')), 'nothing written through the link');
  t.equal((await run(['secret', path.join(dir, 'no-dir', 's')])).code, 2, 'a missing folder is a usage error');
});

void t.test(
  'the stdout contract: listen prints where it listens, a failed migrate one error line and exits 1',
  async (t) => {
    const child = spawn(process.execPath, [...[main], ...listen, '--port', '0', '--idle-timeout-ms', '1000'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
    const first = await new Promise<string>((res) =>
      readline.createInterface({ input: child.stdout }).once('line', res),
    );
    const { listening } = JSON.parse(first) as { listening: { host: string; port: number } };
    t.equal(listening.host, '127.0.0.1');
    t.ok(listening.port > 0, 'a free port was chosen');
    child.kill('SIGTERM');
    t.equal(await exited, 0, 'SIGTERM closes it, exit 0');

    // Nobody listens on port 1: the request fails at its connect step, reported as one JSON line.
    const r = await run(migrate);
    t.equal(r.code, 1, r.stderr);
    const lines = r.stdout.trim().split('\n');
    t.equal(lines.length, 1);
    t.match(JSON.parse(lines[0]), { error: { code: 'ECONNREFUSED', step: 'connect', runningOn: 'source' } });
  },
);
