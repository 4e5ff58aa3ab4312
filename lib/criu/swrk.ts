// One RPC request to a fresh `criu swrk 3` process: send the request, answer
// its notifications through the hooks, return the final response. CRIU serves
// one request per swrk process reliably, so every call starts its own.
import { spawn, type ChildProcess } from 'node:child_process';
import { SeqPacket } from './seqpacket.js';
import { AbortError } from '../errors.js';
import { CriuError } from './errors.js';
import { rpcCodec, type CriuReq, type CriuResp } from './rpc.js';
import type { CriuHooks, CriuNotify } from './types.js';

export interface SwrkOptions {
  op: string;
  criuPath: string;
  env: NodeJS.ProcessEnv;
  netns?: string | undefined;
  hooks?: CriuHooks | undefined;
  signal?: AbortSignal | undefined;
  /** Called with every notification before the hooks (internal uses: status-ready). */
  onNotify?: (n: CriuNotify) => void;
  /** Called once CRIU runs, with its process (e.g. to read its pid). */
  onSpawn?: (child: ChildProcess) => void;
  /** Keep the session open after the first response and send these follow-up requests. */
  keepOpen?: boolean;
  /** Descriptors of this process that CRIU gets as its fds 4, 5, … (what inherit-fd entries name). */
  fds?: number[];
}

/** Which hook each CRIU notify script name goes to. */
const HOOK_OF: Record<string, keyof CriuHooks> = {
  'pre-dump': 'preDump',
  'post-dump': 'postDump',
  'network-lock': 'networkLock',
  'network-unlock': 'networkUnlock',
  'pre-restore': 'preRestore',
  'post-restore': 'postRestore',
  'setup-namespaces': 'setupNamespaces',
  'post-setup-namespaces': 'postSetupNamespaces',
  'pre-resume': 'preResume',
  'post-resume': 'postResume',
};

/** The argv that runs `criu swrk 3`, inside a network namespace when asked. */
export function swrkArgv(criuPath: string, netns?: string): [string, string[]] {
  if (netns) return ['nsenter', [`--net=/run/netns/${netns}`, criuPath, 'swrk', '3']];
  return [criuPath, ['swrk', '3']];
}

const STDERR_KEEP = 4096;
const GONE = Symbol('criu exited');

/** An open swrk session: `request()` may be called again only when keepOpen was set. */
export class SwrkSession {
  readonly child: ChildProcess;
  readonly #sp: SeqPacket;
  readonly #o: SwrkOptions;
  #stderr = '';
  #exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #exited = false;
  #spawnError: Error | null = null;
  #aborted = false;
  #onAbort = (): void => {
    this.#aborted = true;
    this.kill();
  };

  private constructor(sp: SeqPacket, child: ChildProcess, o: SwrkOptions) {
    this.#sp = sp;
    this.child = child;
    this.#o = o;
    child.stderr?.on('data', (d: Buffer) => {
      this.#stderr = (this.#stderr + d.toString()).slice(-STDERR_KEEP);
    });
    child.stdout?.resume();
    this.#exit = new Promise((resolve) => {
      child.once('error', (e) => {
        this.#spawnError = e;
      });
      child.once('close', (code, signal) => {
        this.#exited = true;
        // The socket normally reports end-of-stream once CRIU is gone; if a
        // child of CRIU still holds its end, stop waiting after a moment
        // (a response already queued is read well before that).
        setTimeout(() => this.#sp.close(), 300).unref();
        resolve({ code, signal });
      });
    });
    o.signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  static start(o: SwrkOptions): SwrkSession {
    if (o.signal?.aborted) throw new AbortError(o.signal);
    const sp = new SeqPacket();
    let child: ChildProcess;
    try {
      const [file, args] = swrkArgv(o.criuPath, o.netns);
      child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe', sp.peerFd, ...(o.fds ?? [])], env: o.env });
    } catch (e) {
      sp.close();
      throw e;
    } finally {
      sp.closePeer();
    }
    const s = new SwrkSession(sp, child, o);
    o.onSpawn?.(child);
    return s;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  kill(): void {
    if (!this.#exited) this.child.kill('SIGKILL');
  }

  /** Send one request; answer notifications until the response of that request arrives. */
  async request(req: CriuReq): Promise<CriuResp> {
    const codec = await rpcCodec(this.#o.op);
    let hookError: unknown = null;
    try {
      this.#sp.send(codec.encode(req));
    } catch (e) {
      throw await this.#died(e);
    }
    for (;;) {
      let bytes: Buffer | null;
      try {
        bytes = await this.#sp.recv();
      } catch (e) {
        throw await this.#died(e);
      }
      if (bytes === null) throw await this.#died(null);
      const resp = codec.decode(bytes);
      if (resp.type !== 'NOTIFY') {
        if (hookError !== null && !resp.success) {
          throw new CriuError(`${this.#o.op}: a hook failed: ${String((hookError as Error)?.message ?? hookError)}`, {
            code: 'ERR_CRIU_HOOK',
            op: this.#o.op,
            cause: hookError,
            ...criuFields(resp),
          });
        }
        return resp;
      }
      const n: CriuNotify = { script: resp.notify?.script ?? '' };
      if (resp.notify?.pid !== undefined && resp.notify.pid !== 0) n.pid = resp.notify.pid;
      let ok = true;
      // CRIU dying (or an abort killing it) while a hook runs ends the call at once.
      const gone = this.#exit.then(() => GONE);
      try {
        this.#o.onNotify?.(n);
        if ((await Promise.race([runHooks(this.#o.hooks, n).then(() => null), gone])) === GONE)
          throw await this.#died(null);
      } catch (e) {
        if (this.#exited) throw e instanceof CriuError || (e as Error).name === 'AbortError' ? e : await this.#died(e);
        ok = false;
        hookError ??= e;
      }
      try {
        this.#sp.send(codec.encode({ type: 'NOTIFY', notifySuccess: ok }));
      } catch (e) {
        throw await this.#died(e);
      }
    }
  }

  /** Wait for CRIU to exit (it does after its last response); kill it past `graceMs`. */
  async finish(graceMs = 5000): Promise<void> {
    const t = setTimeout(() => this.kill(), graceMs);
    try {
      await this.#exit;
    } finally {
      clearTimeout(t);
      this.#cleanup();
    }
  }

  /** Tear down at once (error paths). */
  async destroy(): Promise<void> {
    this.kill();
    await this.#exit;
    this.#cleanup();
  }

  get stderr(): string {
    return this.#stderr;
  }

  #cleanup(): void {
    this.#o.signal?.removeEventListener('abort', this.#onAbort);
    this.#sp.close();
  }

  // CRIU went away (or the socket failed) before answering: say how.
  async #died(cause: unknown): Promise<Error> {
    const { code, signal } = await this.#exit;
    this.#cleanup();
    if (this.#aborted) return new AbortError(this.#o.signal);
    if (this.#spawnError) {
      const e = this.#spawnError as NodeJS.ErrnoException;
      return new CriuError(`${this.#o.op}: cannot run ${this.#o.criuPath}: ${e.message}`, {
        code: e.code === 'ENOENT' ? 'ERR_CRIU_NOT_FOUND' : 'ERR_CRIU_EXITED',
        op: this.#o.op,
        cause: e,
      });
    }
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    const tail = this.#stderr.trim().split('\n').slice(-5).join('\n');
    return new CriuError(`${this.#o.op}: criu swrk ${how} without an answer${tail ? `: ${tail}` : ''}`, {
      code: 'ERR_CRIU_EXITED',
      op: this.#o.op,
      exitCode: code,
      ...(cause ? { cause } : {}),
    });
  }
}

/** CRIU's errno/message fields of a failed response. */
export function criuFields(resp: CriuResp): { criuErrno?: number; criuMessage?: string } {
  const f: { criuErrno?: number; criuMessage?: string } = {};
  if (resp.crErrno !== undefined && resp.crErrno !== 0) f.criuErrno = resp.crErrno;
  if (resp.crErrmsg) f.criuMessage = resp.crErrmsg;
  return f;
}

async function runHooks(hooks: CriuHooks | undefined, n: CriuNotify): Promise<void> {
  if (!hooks) return;
  const name = HOOK_OF[n.script];
  if (name && hooks[name]) await hooks[name](n);
  if (hooks.any) await hooks.any(n);
}

/** One request on a fresh swrk process, which is then waited for. */
export async function swrkRequest(o: SwrkOptions, req: CriuReq): Promise<CriuResp> {
  const s = SwrkSession.start(o);
  try {
    const resp = await s.request(req);
    await s.finish();
    return resp;
  } catch (e) {
    await s.destroy();
    throw e;
  }
}
