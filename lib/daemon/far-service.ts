/**
 * sosd as the paging monitor of its workloads' far memory. A workload run with `farMemory` gets the
 * preload shim (lib/memory/run.ts's, native/memory/run_shim.c) and its settings in `far.json` in its
 * folder: its memory nodes, the application's secret there, the local bound. Each process of it that
 * allocates large memory connects to this node's monitor (an abstract unix socket: the monitor of
 * whichever network namespace, so node, the process is in), is checked to belong to that workload,
 * and is served by a far-memory region. A migration detaches every arena before the dump
 * (detach: the processes park, every page is written to the memory nodes) and the target adopts them
 * after the restore (adopt: the regions reopened by id), so the pages never pass through either node.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { SosError } from '../errors.js';
import { writeDurable } from '../durable.js';
import type { Workloads } from '../apps/workloads.js';
import { nsPids, treePids } from '../apps/proc.js';
import { native } from '../native/index.js';
import { adoptProcess, type AdoptedProcess } from '../memory/adopt.js';
import {
  controlPath,
  detachArena,
  openArena,
  serveArena,
  type ArenaOptions,
  type ServedArena,
} from '../memory/arena-link.js';
import type { FarHandover, MemoryNodeAddress } from '../memory/far-memory.js';
import type { FarStats } from '../memory/far-stats.js';
import { SHIM_PATH } from '../memory/run.js';
import type { MemoryTlsOptions } from '../memory/tls.js';
import type { DaemonLogger } from './server.js';

/** A workload's far memory, as apps.run takes it and far.json keeps it. */
export interface FarConfig {
  /** Resident bytes of each process's arena at most. */
  localBytes: number;
  /** The arena: the most far memory one process may hold. */
  farBytes: number;
  replicas?: number;
  /** Memory nodes, granted the application with `secret` (sosctl does that: memory.grant). */
  nodes: MemoryNodeAddress[];
  /** The application's secret on them, base64. */
  secret: string;
  /** The nodes serve mutual TLS (a cluster's): connect with this node's certificate. */
  tls: boolean;
}

/** One detached arena, for the migration's target: which process (by its pid in the workload's PID namespace), and its pages. */
export interface FarArena {
  nsPid: number;
  /** Its shim's control socket name (controlPath(), a leading NUL): the same after the restore. */
  control: string;
  handover: FarHandover;
}

const NODE = {
  type: 'object',
  additionalProperties: false,
  required: ['host', 'port'],
  properties: {
    host: { type: 'string', minLength: 1, maxLength: 253 },
    port: { type: 'integer', minimum: 1, maximum: 65535 },
    name: { type: 'string', pattern: '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$' },
  },
};
export const FAR_CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['localBytes', 'farBytes', 'nodes', 'secret', 'tls'],
  properties: {
    localBytes: { type: 'integer', minimum: 128 * 4096, multipleOf: 4096 },
    farBytes: { type: 'integer', minimum: 128 * 4096, maximum: 2 ** 46, multipleOf: 4096 },
    replicas: { type: 'integer', minimum: 1, maximum: 16 },
    nodes: { type: 'array', minItems: 1, maxItems: 64, items: NODE },
    secret: { type: 'string', minLength: 44, maxLength: 1368, pattern: '^[A-Za-z0-9+/]+={0,2}$' },
    tls: { type: 'boolean' },
  },
};
/** Arenas handed to a migration's target (checked again by FarMemory when adopted). */
export const FAR_ARENAS_SCHEMA = {
  type: 'array',
  maxItems: 1024,
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['nsPid', 'control', 'handover'],
    properties: {
      nsPid: { type: 'integer', minimum: 1, maximum: 2 ** 22 },
      control: { type: 'string', pattern: '^\\u0000sos-run-shim/[\\w.-]{0,80}/\\d{1,7}$' },
      handover: { type: 'object' },
    },
  },
};

const CONFIG = 'far.json';
/** The arenas a stopping sosd detached, for the next one to adopt. */
const HANDOVER = 'far-handover.json';
/** The monitor's abstract socket name (the shim's SOS_RUN_SOCK spelling: '@' for the leading NUL). */
export const MONITOR_NAME = 'sos-far-monitor';

/** The environment a far-memory workload's program gets on top of its own. */
export function farEnv(app: string, token: string, c: FarConfig): Record<string, string> {
  return {
    LD_PRELOAD: SHIM_PATH,
    SOS_RUN_SOCK: `@${MONITOR_NAME}`,
    SOS_RUN_ARENA: String(c.farBytes),
    SOS_RUN_NAME: `${app}.${token}`, // names its processes' hand-over sockets: unique in the network namespace
  };
}

export function writeFarConfig(dir: string, c: FarConfig): Promise<void> {
  return writeDurable(path.join(dir, CONFIG), `${JSON.stringify(c)}\n`, 0o600);
}

export function readFarConfig(dir: string): FarConfig | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, CONFIG), 'utf8')) as FarConfig;
  } catch {
    return null;
  }
}

/** One process's arena served here: attached to this monitor, or adopted after a hand-over. */
interface Held {
  pid: number;
  arenaBytes: number;
  stats(): FarStats;
  /** Its resident pages written back while it runs (ahead of detach, which then writes only what it touched since). */
  writeBack(): Promise<void>;
  detach(): Promise<FarHandover>;
}

const served = (a: ServedArena): Held => ({
  pid: a.pid,
  arenaBytes: a.arenaBytes,
  stats: () => a.last ?? a.far.stats(),
  writeBack: () => a.far.writeBackResident(),
  detach: () => detachArena(a, { writeBackFirst: false }),
});
const adopted = (p: AdoptedProcess): Held => ({
  pid: p.pid,
  arenaBytes: p.arenaBytes,
  stats: () => p.stats(),
  writeBack: () => p.writeBackResident(),
  detach: () => p.detach({ writeBackFirst: false }),
});

export class FarService {
  private readonly held = new Map<string, Held[]>();
  private readonly pending = new Set<Promise<unknown>>();

  private constructor(
    private readonly server: net.Server,
    private readonly o: { workloads: Workloads; log: DaemonLogger; tls?: () => MemoryTlsOptions },
  ) {}

  static async start(o: {
    workloads: Workloads;
    log: DaemonLogger;
    tls?: () => MemoryTlsOptions;
  }): Promise<FarService> {
    const server = net.createServer();
    const svc = new FarService(server, o);
    server.on('connection', (s) => svc.onConnection(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(`\0${MONITOR_NAME}`, () => resolve());
    });
    return svc;
  }

  private arenaOptions(c: FarConfig, application: string): ArenaOptions {
    return {
      localBytes: c.localBytes,
      nodes: c.nodes,
      application,
      secret: Buffer.from(c.secret, 'base64'),
      ...(c.replicas ? { replicas: c.replicas } : {}),
      ...(c.tls && this.o.tls ? { tls: this.o.tls() } : {}),
    };
  }

  /** The running workload `pid` is a process of, by its tree. */
  private ownerOf(pid: number): { app: string; id: number; dir: string } | null {
    for (const r of this.o.workloads.list()) {
      if (r.state !== 'running' || !treePids(r.pid).includes(pid)) continue;
      return { app: r.app, id: r.id, dir: this.o.workloads.where(r.app, r.id).dir };
    }
    return null;
  }

  private onConnection(sock: net.Socket): void {
    const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
    const peer = typeof fd === 'number' && fd >= 0 ? native.peerCred(fd).pid : 0;
    const owner = peer ? this.ownerOf(peer) : null;
    const config = owner ? readFarConfig(owner.dir) : null;
    if (!owner || !config) {
      this.o.log.warn({ pid: peer }, 'far memory refused: the process is no far-memory workload of this node');
      sock.end('err not a far-memory workload of this node\n');
      return;
    }
    const key = `${owner.app}/${owner.id}`;
    let held: Held | undefined;
    serveArena(sock, [], {
      hello: async (line) => {
        const a = await openArena(peer, line, config.farBytes, this.arenaOptions(config, owner.app));
        held = served(a);
        this.keep(key, held);
        this.o.log.info({ app: owner.app, id: owner.id, pid: peer, arenaBytes: a.arenaBytes }, 'far memory attached');
        return a;
      },
      refused: (e) =>
        this.o.log.warn({ app: owner.app, id: owner.id, pid: peer, err: e.message }, 'far memory refused'),
      error: (e) => this.o.log.warn({ app: owner.app, id: owner.id, err: e.message }, 'far memory'),
      track: (p) => this.track(p),
      closed: () => held && this.forget(key, held),
    });
  }

  private keep(key: string, h: Held): void {
    const l = this.held.get(key) ?? [];
    l.push(h);
    this.held.set(key, l);
  }

  private forget(key: string, gone: Held): void {
    const l = (this.held.get(key) ?? []).filter((h) => h !== gone);
    if (l.length) this.held.set(key, l);
    else this.held.delete(key);
  }

  private track(p: Promise<unknown>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p)).catch(() => undefined);
  }

  /** Counters of each process's arena of `app/id`. */
  stats(app: string, id: number): { pid: number; arenaBytes: number; stats: FarStats }[] {
    return (this.held.get(`${app}/${id}`) ?? []).map((h) => ({
      pid: h.pid,
      arenaBytes: h.arenaBytes,
      stats: h.stats(),
    }));
  }

  /**
   * Write back the resident pages of workload APP/ID's arenas while it runs on, ahead of detach(): the
   * park then lasts only as long as writing what it touched since. A failure is left to detach, which
   * writes every page anyway.
   */
  async writeBack(app: string, id: number): Promise<void> {
    await Promise.all((this.held.get(`${app}/${id}`) ?? []).map((h) => h.writeBack().catch(() => undefined)));
  }

  /**
   * Detach every arena of `app/id` (before its dump): its processes park, their pages all on the memory
   * nodes. Should one fail, those detached already are served again (tree `root`) before it rejects.
   */
  async detach(app: string, id: number, root: number, c: FarConfig): Promise<FarArena[]> {
    const key = `${app}/${id}`;
    const out: FarArena[] = [];
    try {
      for (const h of [...(this.held.get(key) ?? [])]) {
        const nsPid = nsPids(h.pid)?.at(-1);
        if (nsPid === undefined) continue; // exited meanwhile
        const control = controlPath(h.pid);
        const handover = await h.detach();
        this.forget(key, h);
        out.push({ nsPid, control, handover });
      }
    } catch (e) {
      await this.adopt(app, id, root, out, c).catch(() => undefined);
      throw e;
    }
    return out;
  }

  /**
   * Serve `arenas` again for the tree rooted at host pid `root` (restored here, or resumed here after a
   * failed migration): each process found by its pid in the workload's PID namespace.
   */
  async adopt(app: string, id: number, root: number, arenas: FarArena[], c: FarConfig): Promise<void> {
    const key = `${app}/${id}`;
    const byNs = new Map<number, number>();
    for (const p of treePids(root)) {
      const ns = nsPids(p)?.at(-1);
      if (ns !== undefined) byNs.set(ns, p);
    }
    const failures: string[] = [];
    for (const x of arenas) {
      const pid = byNs.get(x.nsPid);
      if (pid === undefined) {
        failures.push(`no process ${x.nsPid} in ${key}'s tree`);
        continue;
      }
      try {
        const p = await this.adoptOne(pid, x, this.arenaOptions(c, app));
        const h = adopted(p);
        this.keep(key, h);
        void p.ended.then(() => this.forget(key, h));
        this.o.log.info({ app, id, pid, arenaBytes: p.arenaBytes }, 'far memory adopted');
      } catch (e) {
        failures.push(`process ${x.nsPid}: ${(e as Error).message}`);
      }
    }
    if (failures.length)
      throw new SosError(`far memory of ${key} not adopted: ${failures.join('; ')}`, { code: 'ERR_ADOPT' });
  }

  // A few tries, backing off: a memory node or the restored process may be slow to answer, and
  // until someone adopts it the process stays parked and its regions' lease runs out (30 s).
  private async adoptOne(pid: number, x: FarArena, o: ArenaOptions): Promise<AdoptedProcess> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await adoptProcess(pid, x.handover, o, x.control);
      } catch (e) {
        const code = (e as { code?: string }).code;
        // A handover refused as such will not do better next time.
        if (attempt === 5 || code === 'ERR_PEER' || code === 'ERR_INVALID_ARG_VALUE') throw e;
        this.o.log.warn({ pid, attempt, err: (e as Error).message }, 'far memory adoption failed; trying again');
        await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
      }
    }
  }

  /**
   * Stop (sosd's SIGTERM): every arena is detached and its hand-over written, durably, to
   * `far-handover.json` in its workload's folder; the processes wait parked for the next sosd, which
   * adopts them at its start (resume()), within the regions' lease (30 s by default).
   */
  async close(): Promise<void> {
    this.server.close();
    for (const r of this.o.workloads.list()) {
      if (r.state !== 'running' || !this.held.has(`${r.app}/${r.id}`)) continue;
      const { dir } = this.o.workloads.where(r.app, r.id);
      const c = readFarConfig(dir);
      if (!c) continue;
      try {
        const arenas = await this.detach(r.app, r.id, r.pid, c);
        await writeDurable(path.join(dir, HANDOVER), `${JSON.stringify(arenas)}\n`, 0o600);
        this.o.log.info({ app: r.app, id: r.id, arenas: arenas.length }, 'far memory detached for the next sosd');
      } catch (e) {
        this.o.log.error({ app: r.app, id: r.id, err: (e as Error).message }, 'far memory not detached');
      }
    }
    while (this.pending.size) await Promise.allSettled([...this.pending]);
  }

  /**
   * Start: adopt what the last sosd detached when it stopped (close()). A workload whose far memory
   * cannot be adopted (its regions' lease lapsed meanwhile: the pages are gone) is killed, not left
   * parked for ever.
   */
  async resume(): Promise<void> {
    for (const r of this.o.workloads.list()) {
      if (r.state !== 'running') continue;
      const { dir } = this.o.workloads.where(r.app, r.id);
      const file = path.join(dir, HANDOVER);
      let arenas: FarArena[];
      try {
        arenas = JSON.parse(fs.readFileSync(file, 'utf8')) as FarArena[];
      } catch {
        continue;
      }
      const c = readFarConfig(dir);
      try {
        if (!c || !Array.isArray(arenas)) throw new SosError(`${file} or far.json unreadable`, { code: 'ERR_ADOPT' });
        await this.adopt(r.app, r.id, r.pid, arenas, c);
        this.o.log.info({ app: r.app, id: r.id, arenas: arenas.length }, 'far memory adopted from the last sosd');
      } catch (e) {
        this.o.log.error(
          { app: r.app, id: r.id, err: (e as Error).message },
          'far memory of the last sosd lost: the workload is killed',
        );
        this.o.workloads.kill(r.app, r.id, 'SIGKILL');
      }
      fs.rmSync(file, { force: true });
    }
  }
}
