/**
 * A monitor's side of one shim connection (native/memory/run_shim.c; lines parsed by run-protocol.ts):
 * the hello attaches the process's arena to a far-memory region, each discard after it forgets pages,
 * and the end of the connection frees the region, unless it was handed over (detachArena). Used by
 * ProgramRun (the shim connects to it) and by adoptProcess (it connects to a detached shim).
 */
import fs from 'node:fs';
import net from 'node:net';
import { nsPids } from '../apps/proc.js';
import { SosError } from '../errors.js';
import { native } from '../native/index.js';
import { featureSet } from '../uffd/constants.js';
import { Region } from '../uffd/region.js';
import { Userfaultfd } from '../uffd/userfaultfd.js';
import { FarMemory, type FarHandover, type FarMemoryOptions } from './far-memory.js';
import type { FarStats } from './far-stats.js';
import { LineSplitter, parseDiscard, parseHello } from './run-protocol.js';

/** Where and how a process's arena is paged (RunOptions adds what concerns spawning it). */
export type ArenaOptions = Pick<
  FarMemoryOptions,
  'localBytes' | 'nodes' | 'application' | 'secret' | 'replicas' | 'tls' | 'transport' | 'rdma'
>;

/** One process's arena, served by a far-memory region. */
export interface ServedArena {
  pid: number;
  arenaBytes: number;
  far: FarMemory;
  /** Its counters once the region is released or handed over. */
  last?: FarStats;
  released?: Promise<void>;
  /** The region went to another monitor: the end of the connection frees nothing. */
  handedOver?: boolean;
}

export interface ArenaLinkHooks {
  /** The hello line from `peer` (its pid, checked by the caller): the served arena. */
  hello(line: string): Promise<ServedArena>;
  refused(e: SosError): void;
  error(e: SosError): void;
  /** Work that must finish before the monitor is done (the region's release). */
  track(p: Promise<unknown>): void;
  /** The connection ended (its region released, unless handed over). */
  closed?(a: ServedArena | undefined): void;
}

/** Serve one connection: hello first (answered ok or err), then discards, each answered ok; `read`: lines read off it already. */
export function serveArena(sock: net.Socket, read: string[], hooks: ArenaLinkHooks): void {
  const lines = new LineSplitter();
  let chain: Promise<void> = Promise.resolve();
  let mine: ServedArena | undefined;
  const reply = (line: string) => {
    if (!sock.destroyed) sock.write(`${line}\n`);
  };
  const take = (got: string[]) => {
    for (const line of got) {
      chain = chain.then(async () => {
        if (sock.destroyed) return;
        if (!mine) {
          mine = await hooks.hello(line).catch((e: SosError) => {
            hooks.refused(e);
            reply(`err ${e.message.replace(/\n/g, ' ')}`);
            sock.end();
            return undefined;
          });
          if (mine) reply('ok');
          return;
        }
        let range: { offset: number; bytes: number };
        try {
          range = parseDiscard(line, mine.arenaBytes);
        } catch (e) {
          hooks.error(e as SosError);
          return void sock.destroy();
        }
        try {
          if (range.bytes) await mine.far.discard(range.offset, range.bytes);
        } catch (e) {
          hooks.error(e as SosError);
        }
        reply('ok');
      });
      hooks.track(chain);
    }
  };
  take(read);
  sock.setEncoding('latin1');
  sock.on('data', (d: string) => {
    try {
      take(lines.push(d));
    } catch (e) {
      hooks.error(e as SosError);
      sock.destroy();
    }
  });
  sock.on('error', () => undefined);
  sock.on('close', () => {
    const done = chain.then(async () => {
      if (mine) await releaseArena(mine);
      hooks.closed?.(mine);
    });
    hooks.track(done);
  });
}

/**
 * The arena a hello line names, served: the process's userfaultfd and memfd taken with pidfd_getfd, a
 * far-memory region over them (a fresh one, or the `handover`'s regions reopened).
 */
export async function openArena(
  peer: number,
  line: string,
  arenaBytes: number,
  o: ArenaOptions,
  handover?: FarHandover,
): Promise<ServedArena> {
  const { pid, uffd: ufd, memfd: mfd, address: addr, bytes: size, features } = parseHello(line, arenaBytes);
  // The shim says its pid in its own PID namespace; the socket's peer is in ours.
  const own = nsPids(peer)?.at(-1);
  if (pid !== own)
    throw new SosError(`hello names pid ${pid}, the socket's peer is ${peer} (${own} in its PID namespace)`, {
      code: 'ERR_PEER',
    });
  const uffd = Userfaultfd.fromProcess(peer, ufd, { features: [...featureSet(features)] });
  let region: Region;
  try {
    const fd = native.takeFd(peer, mfd);
    try {
      region = Region.fromFd(fd, size, { shared: true });
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    uffd.close();
    throw e;
  }
  let far: FarMemory;
  try {
    far = await FarMemory.create(size, {
      localBytes: Math.min(o.localBytes, size),
      nodes: o.nodes,
      application: o.application,
      secret: o.secret,
      replicas: o.replicas,
      tls: o.tls,
      transport: o.transport,
      rdma: o.rdma,
      handover,
      foreign: { uffd, region, faultAddress: addr },
    });
  } catch (e) {
    // FarRegion closes them itself once it exists; before that they are ours.
    if (!region.closed) region.close();
    if (!uffd.closed) uffd.close();
    throw e;
  }
  return { pid: peer, arenaBytes: size, far };
}

/** Keep the last counters, then free every remote page (once, whoever asks first); a handed-over region is not ours to free. */
export function releaseArena(a: ServedArena): Promise<void> {
  a.released ??= (async () => {
    if (a.handedOver) return;
    a.last = a.far.stats();
    await a.far.close();
  })();
  return a.released;
}

/** The run name its monitor gave process `pid` (SOS_RUN_NAME in its initial environment), '' if none. */
function runName(pid: number): string {
  try {
    const env = fs.readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
    return env.find((e) => e.startsWith('SOS_RUN_NAME='))?.slice('SOS_RUN_NAME='.length) ?? '';
  } catch {
    return '';
  }
}

/**
 * The abstract unix socket `pid`'s shim takes hand-over requests on, in its network namespace:
 * named by its run name and its pid in its own PID namespace (both survive a checkpoint and restore).
 */
export function controlPath(pid: number): string {
  return `\0sos-run-shim/${runName(pid)}/${nsPids(pid)?.at(-1) ?? pid}`;
}

/** Line-at-a-time talk on a shim's control socket. */
export class ControlLink {
  private readonly lines = new LineSplitter();
  private readonly queue: string[] = [];
  private waiter: ((l: string | null) => void) | null = null;
  private ended = false;

  constructor(
    readonly sock: net.Socket,
    readonly pid: number,
  ) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      let got: string[];
      try {
        got = this.lines.push(d);
      } catch {
        return void sock.destroy();
      }
      for (const l of got) this.deliver(l);
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      this.ended = true;
      this.deliver(null);
    });
  }

  private deliver(l: string | null): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w(l);
    } else if (l !== null) this.queue.push(l);
  }

  /** Send a request and wait for its one-line answer (null: the shim closed the connection). */
  ask(request: string): Promise<string | null> {
    this.sock.write(`${request}\n`);
    return this.next();
  }

  next(): Promise<string | null> {
    if (this.queue.length) return Promise.resolve(this.queue.shift()!);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => (this.waiter = resolve));
  }

  /** Stop reading lines here (the socket is handed to serveArena). */
  release(): net.Socket {
    this.sock.removeAllListeners('data');
    this.sock.removeAllListeners('close');
    return this.sock;
  }
}

/** Connect to `pid`'s shim control socket and check that the process at its other end is `pid`. */
export async function connectControl(pid: number, path = controlPath(pid)): Promise<ControlLink> {
  const sock = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ path });
    s.once('connect', () => resolve(s));
    s.once('error', (e: Error & { code?: string }) =>
      reject(
        new SosError(`process ${pid} takes no hand-over (its shim's control socket: ${e.message})`, {
          code: 'ERR_NOT_ATTACHED',
          cause: e,
        }),
      ),
    );
  });
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  const cred = typeof fd === 'number' && fd >= 0 ? native.peerCred(fd) : undefined;
  if (!cred || cred.pid !== pid) {
    sock.destroy();
    throw new SosError(`the hand-over socket of process ${pid} is held by pid ${cred?.pid ?? '?'}`, {
      code: 'ERR_PEER',
    });
  }
  return new ControlLink(sock, pid);
}

/**
 * Take a served arena away from this monitor, for another to adopt (adoptProcess): the shim parks every
 * other thread of the process, the region writes every page back and keeps its remote regions, then the
 * shim drops its userfaultfd. The process stays parked, and may now be checkpointed, until a monitor
 * adopts it. Rejects with ERR_DETACH (then the process runs on, served here as before).
 *
 * `writeBackFirst` (default true): the resident pages are written back before the park, while the
 * process runs on, so that the parked write-back has only the pages it touched since.
 */
export async function detachArena(a: ServedArena, o: { writeBackFirst?: boolean } = {}): Promise<FarHandover> {
  const c = await connectControl(a.pid);
  try {
    // A failure here is the parked flush's to report: it writes everything anyway.
    if (o.writeBackFirst ?? true) await a.far.writeBackResident().catch(() => undefined);
    const gated = await c.ask('detach');
    if (gated !== 'gated')
      throw new SosError(`process ${a.pid} cannot be detached: ${gated?.replace(/^err /, '') ?? 'its shim hung up'}`, {
        code: 'ERR_DETACH',
      });
    const last = a.far.stats();
    let handover: FarHandover;
    try {
      handover = await a.far.handover();
    } catch (e) {
      await c.ask('resume');
      throw new SosError(`process ${a.pid} cannot be detached: ${(e as Error).message}`, {
        code: 'ERR_DETACH',
        cause: e,
      });
    }
    a.last = last;
    a.handedOver = true;
    const released = await c.ask('release');
    if (released !== 'released')
      throw new SosError(`process ${a.pid}'s shim did not release its userfaultfd (${released ?? 'hung up'})`, {
        code: 'ERR_DETACH',
      });
    return handover;
  } finally {
    c.sock.end();
  }
}
