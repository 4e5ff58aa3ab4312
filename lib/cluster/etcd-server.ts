/**
 * A single-member etcd of our own: what `sosctl cluster up` and the tests use (in production the
 * store is the user's etcd cluster). Everything lives in one folder: `data/`, `etcd.log`, `tls/` and
 * `etcd.json` (pid and endpoint), so another process can find it and stop it by its pid. With `tls`,
 * clients must present a certificate of the cluster CA (etcd's --client-cert-auth).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { argValue } from '../errors.js';
import { ClusterError } from './errors.js';

export interface EtcdTls {
  caPem: string;
  certPem: string;
  keyPem: string;
  /** The cluster's revocation list: etcd refuses the client certificates it names. */
  crlPem?: string;
}

export interface EtcdStartOptions {
  /** The folder etcd owns (made 0700 when missing). */
  dir: string;
  /** The address to listen on (default 127.0.0.1). */
  host?: string;
  /** Client and peer ports (default: free ports on loopback; 2379/2380 inside a netns). */
  clientPort?: number;
  peerPort?: number;
  /** Serve clients over TLS and require a certificate from this CA. */
  tls?: EtcdTls;
  /** Run inside this network namespace (a name under /run/netns). */
  netns?: string;
  /** How long etcd may take to serve (default 30 s). */
  timeoutMs?: number;
  /** The etcd binary (default $SOS_ETCD or `etcd` on PATH). */
  binary?: string;
}

/** What `etcd.json` holds. */
export interface EtcdInfo {
  pid: number;
  endpoint: string;
  /** The peer URL (a restart on the same folder must use the same one). */
  peerEndpoint: string;
  tls: boolean;
  dir: string;
}

export interface EtcdServer extends EtcdInfo {
  /** SIGTERM, then SIGKILL when it has not exited within `graceMs` (default 10 s); resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

const INFO = 'etcd.json';

/** Start etcd and resolve once it serves clients; ERR_ETCD_START quoting its log when it does not. */
export async function startEtcd(opts: EtcdStartOptions): Promise<EtcdServer> {
  if (typeof opts.dir !== 'string' || !opts.dir) throw argValue('dir must be a folder path');
  const pick = opts.clientPort === undefined && opts.peerPort === undefined && !opts.netns;
  // Free ports are chosen by binding port 0 and closing it: another process may take one meanwhile,
  // which etcd reports as "address already in use"; then the next pair is tried.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts, pick ? [await freePort(), await freePort()] : undefined);
    } catch (e) {
      if (!pick || attempt >= 5 || !/address already in use/.test((e as Error).message)) throw e;
    }
  }
}

async function startOnce(opts: EtcdStartOptions, ports?: [number, number]): Promise<EtcdServer> {
  const host = opts.host ?? '127.0.0.1';
  const [cport, pport] = ports ?? [opts.clientPort ?? 2379, opts.peerPort ?? 2380];
  const dir = path.resolve(opts.dir);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const scheme = opts.tls ? 'https' : 'http';
  const hostPart = net.isIPv6(host) ? `[${host}]` : host;
  const endpoint = `${scheme}://${hostPart}:${cport}`;
  const peer = `http://${hostPart}:${pport}`;
  const args = [
    '--name=sos',
    `--data-dir=${path.join(dir, 'data')}`,
    `--listen-client-urls=${endpoint}`,
    `--advertise-client-urls=${endpoint}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=sos=${peer}`,
    '--initial-cluster-state=new',
    '--logger=zap',
    '--log-outputs=stderr',
  ];
  if (opts.tls) {
    const tdir = path.join(dir, 'tls');
    fs.mkdirSync(tdir, { recursive: true, mode: 0o700 });
    for (const [f, pem] of [
      ['ca.pem', opts.tls.caPem],
      ['etcd.pem', opts.tls.certPem],
      ['etcd-key.pem', opts.tls.keyPem],
    ])
      fs.writeFileSync(path.join(tdir, f), pem, { mode: 0o600 });
    args.push(
      `--cert-file=${path.join(tdir, 'etcd.pem')}`,
      `--key-file=${path.join(tdir, 'etcd-key.pem')}`,
      `--trusted-ca-file=${path.join(tdir, 'ca.pem')}`,
      '--client-cert-auth',
    );
    if (opts.tls.crlPem) {
      writeAtomic(path.join(tdir, 'crl.pem'), opts.tls.crlPem);
      args.push(`--client-crl-file=${path.join(tdir, 'crl.pem')}`);
    }
  }
  const log = path.join(dir, 'etcd.log');
  const logFd = fs.openSync(log, 'a', 0o600);
  const from = fs.fstatSync(logFd).size;
  const bin = opts.binary ?? process.env.SOS_ETCD ?? 'etcd';
  const [file, argv] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, bin, ...args]] : [bin, args];
  // Detached with its log in a file: etcd outlives whoever started it (sosctl cluster up) until stopped.
  const child = spawn(file, argv, { detached: true, stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  let exited: string | null = null;
  const gone = new Promise<void>((resolve) => {
    child.once('exit', (code, sig) => {
      exited = sig ? `killed by ${sig}` : `exited with code ${code}`;
      resolve();
    });
    child.once('error', (e) => {
      exited = `could not start ${file}: ${e.message}`;
      resolve();
    });
  });
  child.unref();
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  // Ready when its log says it serves clients (works inside a namespace too, unlike probing it from here).
  for (;;) {
    const text = readFrom(log, from);
    if (/"msg":"serving client traffic/.test(text)) break;
    if (exited !== null || Date.now() > deadline) {
      if (exited === null) child.kill('SIGKILL');
      await gone;
      const last =
        text
          .trim()
          .split('\n')
          .reverse()
          .find((l) => /"level":"(fatal|error|warn)"/.test(l)) ?? text.trim().split('\n').pop();
      throw new ClusterError(
        `etcd did not start (${exited ?? 'not serving in time'}): ${summarize(last ?? 'no log output')} (log: ${log})`,
        { code: 'ERR_ETCD_START' },
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const info: EtcdInfo = { pid: child.pid!, endpoint, peerEndpoint: peer, tls: !!opts.tls, dir };
  fs.writeFileSync(path.join(dir, INFO), JSON.stringify(info) + '\n', { mode: 0o600 });
  return { ...info, stop: (graceMs?: number) => stopPid(child.pid!, graceMs, gone) };
}

/**
 * Give the etcd in `dir` a new revocation list (after `revoke`): etcd reads the file on each new
 * connection, so a revoked member cannot connect again. Only for an etcd started with a CRL.
 */
export function setEtcdCrl(dir: string, crlPem: string): void {
  const f = path.join(dir, 'tls', 'crl.pem');
  if (!fs.existsSync(f))
    throw new ClusterError(`the etcd in ${dir} was not started with a revocation list`, { code: 'ERR_NOT_FOUND' });
  writeAtomic(f, crlPem);
}

function writeAtomic(file: string, data: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, data, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/** The etcd started in `dir`, when its pid still runs an etcd; null otherwise. */
export function etcdAt(dir: string): EtcdInfo | null {
  let info: EtcdInfo;
  try {
    info = JSON.parse(fs.readFileSync(path.join(dir, INFO), 'utf8')) as EtcdInfo;
  } catch {
    return null;
  }
  return isEtcd(info.pid) ? info : null;
}

/** Stop the etcd started in `dir` (by its pid); false when none runs. */
export async function stopEtcdAt(dir: string, graceMs?: number): Promise<boolean> {
  const info = etcdAt(dir);
  if (!info) return false;
  await stopPid(info.pid, graceMs);
  fs.rmSync(path.join(dir, INFO), { force: true });
  return true;
}

async function stopPid(pid: number, graceMs = 10_000, gone?: Promise<void>): Promise<void> {
  if (!isEtcd(pid)) return;
  process.kill(pid, 'SIGTERM');
  const end = Date.now() + graceMs;
  // Our own child is reaped by Node ('exit'); another process's etcd is gone when its pid is.
  const done = gone ?? untilGone(pid, Infinity);
  // A referenced timer: the child itself is unref'd, and stop() must keep the process alive until it is gone.
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), Math.max(0, end - Date.now()))));
  const how = await Promise.race([done.then(() => 'done' as const), late]);
  clearTimeout(timer);
  if (how === 'late') {
    if (isEtcd(pid)) process.kill(pid, 'SIGKILL');
    await done;
  }
}

async function untilGone(pid: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (isEtcd(pid) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}

/** Whether `pid` runs etcd (not another program that got the pid since); a zombie counts as gone. */
function isEtcd(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^\d+ \(etcd\) [^Z]/.test(stat);
  } catch {
    return false;
  }
}

function readFrom(file: string, from: number): string {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const buf = Buffer.alloc(Math.max(0, size - from));
      fs.readSync(fd, buf, 0, buf.length, from);
      return buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}

function summarize(line: string): string {
  try {
    const j = JSON.parse(line) as { msg?: string; error?: string };
    return [j.msg, j.error].filter(Boolean).join(': ');
  } catch {
    return line.slice(0, 300);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}
