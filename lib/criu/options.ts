// Typed options → criu_opts, with argument validation (exact messages,
// Node-style TypeError/RangeError) before CRIU is ever started.
import { mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { argType } from '../errors.js';
import { CriuError } from './errors.js';
import { bool, integer, object, oneOf } from '../validate.js';
import type { CriuOpts } from './rpc.js';
import type {
  CriuCommonOptions,
  CriuHooks,
  CriuTls,
  DumpOptions,
  ManageCgroups,
  NetworkLock,
  PageServerAddress,
  RestoreOptions,
} from './types.js';

const CG_MODE: Record<ManageCgroups, string> = {
  ignore: 'IGNORE',
  none: 'CG_NONE',
  props: 'PROPS',
  soft: 'SOFT',
  full: 'FULL',
  strict: 'STRICT',
};
const NET_LOCK: Record<NetworkLock, string> = { nftables: 'NFTABLES', iptables: 'IPTABLES', skip: 'SKIP' };
const HOOKS = [
  'preDump',
  'postDump',
  'networkLock',
  'networkUnlock',
  'preRestore',
  'postRestore',
  'setupNamespaces',
  'postSetupNamespaces',
  'preResume',
  'postResume',
  'any',
] as const;

export function str(name: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0) throw argType(`${name} must be a non-empty string`);
  if (v.includes('\0')) throw argType(`${name} must not contain NUL`);
  return v;
}

export function netnsName(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  const s = str('netns', v);
  if (!/^[A-Za-z0-9_.-]+$/.test(s) || s === '.' || s === '..')
    throw argType(`netns must be a name under /run/netns, got '${s}'`);
  return s;
}

export function pageServerAddress(name: string, v: unknown, allowPort0 = false): PageServerAddress {
  const o = object(name, v);
  if (v === undefined) throw argType(`${name} must be an object { address, port }`);
  const ps: PageServerAddress = {
    address: str(`${name}.address`, o.address),
    port: integer(`${name}.port`, o.port, allowPort0 ? 0 : 1, 65535),
  };
  if (o.tls !== undefined) ps.tls = tlsFiles(`${name}.tls`, o.tls);
  return ps;
}

/** CRIU reads the files after changing folder: make every path absolute. */
function tlsFiles(name: string, v: unknown): CriuTls {
  const o = object(name, v);
  const file = (k: string) => path.resolve(str(`${name}.${k}`, o[k]));
  return {
    cert: file('cert'),
    key: file('key'),
    caCert: file('caCert'),
    ...(o.caCrl !== undefined ? { caCrl: file('caCrl') } : {}),
    verifyName: bool(`${name}.verifyName`, o.verifyName, false),
  };
}

/** The criu_opts fields of CRIU's --tls options. */
export function tlsOpts(tls: CriuTls | undefined, opts: CriuOpts): void {
  if (!tls) return;
  opts.tls = true;
  opts.tlsCert = tls.cert;
  opts.tlsKey = tls.key;
  opts.tlsCacert = tls.caCert;
  if (tls.caCrl) opts.tlsCacrl = tls.caCrl;
  if (!tls.verifyName) opts.tlsNoCnVerify = true;
}

/** The same as command-line flags (for `criu lazy-pages`, which has no RPC request). */
export function tlsArgs(tls: CriuTls | undefined): string[] {
  if (!tls) return [];
  return [
    '--tls',
    '--tls-cert',
    tls.cert,
    '--tls-key',
    tls.key,
    '--tls-cacert',
    tls.caCert,
    ...(tls.caCrl ? ['--tls-cacrl', tls.caCrl] : []),
    ...(tls.verifyName ? [] : ['--tls-no-cn-verify']),
  ];
}

function hooks(v: unknown): CriuHooks | undefined {
  if (v === undefined) return undefined;
  const o = object('hooks', v);
  for (const k of Object.keys(o)) {
    if (!(HOOKS as readonly string[]).includes(k)) throw argType(`hooks.${k} is not a CRIU hook (${HOOKS.join(', ')})`);
    if (typeof o[k] !== 'function') throw argType(`hooks.${k} must be a function`);
  }
  return o;
}

/** The validated common options plus the descriptors CRIU reads through /proc/<us>/fd. */
export interface Prepared {
  op: string;
  imagesDir: string;
  workDir: string;
  logFile: string;
  netns: string | undefined;
  hooks: CriuHooks | undefined;
  signal: AbortSignal | undefined;
  criuPath: string | undefined;
  opts: CriuOpts;
  /** Closes the work dir descriptor. */
  release(): Promise<void>;
}

/**
 * Validate the common options, create/check the folders and build the shared
 * part of criu_opts. `create`: make imagesDir if missing (dump side).
 */
export async function prepare(
  op: string,
  o: CriuCommonOptions,
  create: boolean,
  /** Runs once the arguments are valid, before any folder is made (the dump's pid check). */
  before?: () => Promise<void>,
): Promise<Prepared> {
  object('options', o);
  if (o === undefined) throw argType('options must be an object');
  const imagesDir = path.resolve(str('imagesDir', o.imagesDir));
  let workDir = o.workDir === undefined ? undefined : path.resolve(str('workDir', o.workDir));
  let logName = `${op}.log`;
  if (o.logFile !== undefined) {
    const lf = str('logFile', o.logFile);
    if (path.isAbsolute(lf)) {
      if (workDir !== undefined && path.dirname(lf) !== workDir)
        throw argType('logFile must be inside workDir (CRIU writes its log there)');
      workDir = path.dirname(lf);
      logName = path.basename(lf);
    } else {
      if (lf.includes('/')) throw argType('logFile must be a file name (in workDir) or an absolute path');
      logName = lf;
    }
  }
  const logLevel = o.logLevel === undefined ? 4 : integer('logLevel', o.logLevel, 0, 4);
  const netns = netnsName(o.netns);
  const h = hooks(o.hooks);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw argType('signal must be an AbortSignal');
  const criuPath = o.criuPath === undefined ? undefined : str('criuPath', o.criuPath);
  const opts: CriuOpts = { imagesDirFd: -1, logLevel, logFile: logName };
  if (bool('tcpEstablished', o.tcpEstablished, false)) opts.tcpEstablished = true;
  if (bool('shellJob', o.shellJob, false)) opts.shellJob = true;
  if (bool('extUnixSk', o.extUnixSk, false)) opts.extUnixSk = true;
  if (bool('fileLocks', o.fileLocks, false)) opts.fileLocks = true;
  if (o.manageCgroups !== undefined) {
    opts.manageCgroups = true;
    opts.manageCgroupsMode = CG_MODE[oneOf('manageCgroups', o.manageCgroups, Object.keys(CG_MODE) as ManageCgroups[])];
  }
  if (o.root !== undefined) opts.root = path.resolve(str('root', o.root));
  if (h) opts.notifyScripts = true;
  await before?.();

  if (create) await mkdir(imagesDir, { recursive: true });
  await mustBeDir(op, 'imagesDir', imagesDir);
  workDir ??= imagesDir;
  if (create) await mkdir(workDir, { recursive: true });
  await mustBeDir(op, 'workDir', workDir);
  // CRIU takes both folders as descriptors of its RPC peer (this process),
  // read through /proc/<us>/fd (4.1.1 readlinks even a plain images_dir path).
  const fds: FileHandle[] = [await open(imagesDir, 'r')];
  opts.imagesDirFd = fds[0].fd;
  try {
    fds.push(await open(workDir, 'r'));
  } catch (e) {
    await fds[0].close();
    throw e;
  }
  opts.workDirFd = fds[1].fd;
  return {
    op,
    imagesDir,
    workDir,
    logFile: path.join(workDir, logName),
    netns,
    hooks: h,
    signal: o.signal,
    criuPath,
    opts,
    async release() {
      for (const f of fds.splice(0)) await f.close();
    },
  };
}

async function mustBeDir(op: string, name: string, dir: string): Promise<void> {
  let st;
  try {
    st = await stat(dir);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new CriuError(
      `${op}: ${name} ${dir} ${err.code === 'ENOENT' ? 'does not exist' : `cannot be used: ${err.message}`}`,
      { code: 'ERR_CRIU_IMAGES', op, cause: err },
    );
  }
  if (!st.isDirectory())
    throw new CriuError(`${op}: ${name} ${dir} is not a directory`, { code: 'ERR_CRIU_IMAGES', op });
}

/** Dump and pre-dump options on top of the common ones. */
export function dumpOpts(o: DumpOptions, opts: CriuOpts, lazy: boolean): void {
  if (o === null || typeof o !== 'object') throw argType('options must be an object');
  opts.pid = integer('pid', o.pid, 1, 2 ** 31 - 1);
  if (bool('leaveRunning', o.leaveRunning, false)) opts.leaveRunning = true;
  if (bool('leaveStopped', o.leaveStopped, false)) opts.leaveStopped = true;
  if (opts.leaveRunning && opts.leaveStopped) throw argType('leaveRunning and leaveStopped exclude each other');
  // No iptables on these hosts: nftables unless told otherwise (see networkLockNeeded).
  opts.networkLock =
    NET_LOCK[
      o.networkLock === undefined
        ? 'nftables'
        : oneOf('networkLock', o.networkLock, Object.keys(NET_LOCK) as NetworkLock[])
    ];
  if (bool('trackMem', o.trackMem, false)) opts.trackMem = true;
  if (o.parentDir !== undefined) opts.parentImg = str('parentDir', o.parentDir);
  if (bool('lazyPages', o.lazyPages, false) || lazy) opts.lazyPages = true;
  if (o.pageServer !== undefined) {
    const ps = pageServerAddress('pageServer', o.pageServer);
    opts.ps = { address: ps.address, port: ps.port };
    tlsOpts(ps.tls, opts);
  }
  if (o.timeout !== undefined) opts.timeout = integer('timeout', o.timeout, 1, 86400);
}

export function restoreOpts(o: RestoreOptions, opts: CriuOpts): void {
  if (o === null || typeof o !== 'object') throw argType('options must be an object');
  if (!bool('detached', o.detached, true)) opts.rstSibling = true;
  if (bool('lazyPages', o.lazyPages, false)) opts.lazyPages = true;
  if (bool('tcpClose', o.tcpClose, false)) opts.tcpClose = true;
  if (o.pidfile !== undefined) str('pidfile', o.pidfile);
  if (o.inheritFds !== undefined) {
    if (!Array.isArray(o.inheritFds)) throw argType('inheritFds must be an array of { key, fd }');
    opts.inheritFd = o.inheritFds.map((x: unknown, i) => {
      const e = object(`inheritFds[${i}]`, x);
      return { key: str(`inheritFds[${i}].key`, e.key), fd: integer(`inheritFds[${i}].fd`, e.fd, 0, 2 ** 31 - 1) };
    });
  }
}

/**
 * Whether a dump with no explicit networkLock needs one. CRIU locks the
 * network only for ESTABLISHED connections it dumps (tcpEstablished) or for a
 * tree that owns its network namespace; otherwise setting up the nftables
 * lock costs ~100 ms for nothing, so the option is left at CRIU's default,
 * which then does nothing. Unknown (cannot stat): assume it is needed.
 */
export async function networkLockNeeded(o: DumpOptions, netns: string | undefined): Promise<boolean> {
  if (o.networkLock !== undefined || o.tcpEstablished === true) return true;
  try {
    const tree = await stat(`/proc/${o.pid}/ns/net`);
    const criu = await stat(netns ? `/run/netns/${netns}` : '/proc/self/ns/net');
    return tree.ino !== criu.ino || tree.dev !== criu.dev;
  } catch {
    return true;
  }
}
