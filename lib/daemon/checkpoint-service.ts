/**
 * sosd's checkpoint role: a workload checkpointed here (CRIU, left running) has its images held by
 * other nodes, so that the orchestrator can restore it on one of them when this node leaves the
 * cluster; and the ops by which a holder takes images and restores them.
 *
 * Exactly one copy: a checkpointed workload is fenced to this node's lease (apps/self-fence.ts): a
 * watchdog kills it once the lease may have lapsed, sosd alive or not, so that its copy here is dead
 * before the cluster can take the node for dead and a holder restores it. The orchestrator restores
 * only a process whose entry names a node that left; the holder records the restored process over
 * that entry (fenced by the term), so a second restore, or the old node back, finds it taken.
 *
 * Who may do what: an operator checkpoints (`apps.checkpoint`); only the node a process's entry
 * names may send its images (`checkpoint.put`, `checkpoint.commit`), bounded in size and number;
 * only the leading orchestrator asks a holder to restore (`apps.restore`, with its fence).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { WorkloadRecord } from '../apps/index.js';
import { ensureWatchdog, isFenced, writeFenceDeadline } from '../apps/self-fence.js';
import { listCheckpoints, readCheckpoint, recordCheckpoint, type CheckpointEntry } from '../cluster/checkpoints.js';
import type { ClusterNode } from '../cluster/join.js';
import { listNodes, type NodeRecord } from '../cluster/membership.js';
import { findProcess, parseProcessEntry, procKey } from '../cluster/processes.js';
import { readKey } from '../cluster/reads.js';
import * as criu from '../criu/index.js';
import { syncDir } from '../durable.js';
import { SosError } from '../errors.js';
import { killTree } from '../migration/proc.js';
import { syncTree } from '../migration/record.js';
import { FENCE_SCHEMA, checkFence, type Fence } from '../orchestrator/fence.js';
import type { AppsService } from './apps-service.js';
import { connectNode } from './remote.js';
import type { DaemonLogger, OpSpec, RequestContext } from './server.js';
import { APP, ID } from './schemas.js';
import { readFarConfig } from './far-service.js';
import { forbidden, nodePeer } from './refusals.js';

export interface CheckpointServiceOptions {
  /** sosd's state folder: images live in its `checkpoints/` subfolder. */
  stateDir: string;
  /** The cluster folder: this node's certificate, to reach the holders. */
  clusterDir: string;
  cluster: ClusterNode;
  apps: AppsService;
  /** How many other nodes hold each checkpoint (default 2, fewer when fewer are live). */
  copies?: number;
  /** The largest image set taken from a peer (default 8 GiB). */
  maxBytes?: number;
  log: DaemonLogger;
}

const SEQ = ID;
const FILE = { type: 'string', pattern: '^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$' };
/** Raw bytes per put: base64 of it, in JSON, stays well inside a 64 KiB frame. */
export const CHUNK = 40 * 1024;
/** Puts in flight per holder. */
const WINDOW = 16;
/** Uploads held at once, and how long an idle one is kept. */
const MAX_UPLOADS = 8;
const UPLOAD_IDLE_MS = 60_000;
const MAX_FILES = 4096;
/** How often held images the cluster no longer names are let go. */
const SWEEP_MS = 60_000;

interface Upload {
  from: string;
  dir: string;
  bytes: number;
  files: Set<string>;
  timer: NodeJS.Timeout;
  /** The sender checked and the folder made. */
  ready: Promise<void>;
  handles: Map<string, Promise<fs.promises.FileHandle>>;
}

/** What apps.checkpoint answers. */
export interface CheckpointResult {
  app: string;
  id: number;
  seq: number;
  holders: string[];
  /** The nodes asked to hold it that did not, and why. */
  missed: { node: string; message: string }[];
  bytes: number;
  files: number;
  dumpMs: number;
  sendMs: number;
  ms: number;
}

export class CheckpointService {
  private readonly uploads = new Map<string, Upload>();
  private readonly busy = new Set<string>();
  private readonly root: string;
  private sweeper: NodeJS.Timeout | null = null;

  private constructor(private readonly o: CheckpointServiceOptions) {
    this.root = path.join(o.stateDir, 'checkpoints');
  }

  static start(o: CheckpointServiceOptions): CheckpointService {
    const s = new CheckpointService(o);
    fs.mkdirSync(path.join(s.root, 'held'), { recursive: true, mode: 0o700 });
    // Uploads and dumps a sosd before this one left half done are of no use.
    for (const d of ['incoming', 'out']) fs.rmSync(path.join(s.root, d), { recursive: true, force: true });
    const member = o.cluster.member;
    const refresh = () => s.refreshFences();
    member.on('renewed', refresh);
    member.on('joined', refresh);
    // A workload that migrates in keeps the checkpoint it had: it is fenced here from now on.
    o.apps.onAdopted = async (r) => {
      if (await readCheckpoint(o.cluster.store, r.app, r.id).catch(() => null)) s.fence(r.app, r.id);
    };
    s.refreshFences();
    s.sweeper = setInterval(() => void s.sweep(), SWEEP_MS);
    s.sweeper.unref();
    void s.sweep();
    return s;
  }

  /** Let go of held images the cluster no longer names (a newer checkpoint, a process removed). */
  private async sweep(): Promise<void> {
    try {
      const named = await listCheckpoints(this.o.cluster.store);
      const held = path.join(this.root, 'held');
      for (const app of await fs.promises.readdir(held)) {
        for (const id of await fs.promises.readdir(path.join(held, app))) {
          const ck = named.get(`${app}/${id}`);
          const dir = path.join(held, app, id);
          for (const seq of await fs.promises.readdir(dir)) {
            // One newer than the record (or with none yet) may be being recorded right now: kept a while.
            const d = path.join(dir, seq);
            const fresh = Date.now() - (await fs.promises.stat(d)).mtimeMs < 5 * SWEEP_MS;
            if ((ck && Number(seq) < ck.seq) || (!fresh && (!ck || Number(seq) > ck.seq)))
              await fs.promises.rm(d, { recursive: true, force: true });
          }
          if ((await fs.promises.readdir(dir)).length === 0) await fs.promises.rmdir(dir).catch(() => undefined);
        }
      }
    } catch (e) {
      this.o.log.warn({}, `checkpoint sweep: ${(e as Error).message}`);
    }
  }

  /** Move every fenced workload's deadline to what the lease now guarantees (and see its watchdog runs). */
  private refreshFences(): void {
    const until = this.o.cluster.member.validUntil;
    for (const r of this.o.apps.workloads.list()) {
      if (r.state !== 'running') continue;
      try {
        const { dir, group } = this.o.apps.workloads.where(r.app, r.id);
        if (!isFenced(dir) || !group) continue;
        writeFenceDeadline(dir, until);
        ensureWatchdog(dir, group);
      } catch (e) {
        this.o.log.warn({ app: r.app, id: r.id }, `cannot move the fence deadline: ${(e as Error).message}`);
      }
    }
  }

  /** Fence `app/id` to this node's lease (before any checkpoint of it can be restored elsewhere). */
  private fence(app: string, id: number): void {
    const { dir, group } = this.o.apps.workloads.where(app, id);
    if (!group) throw new SosError(`${app}/${id} has no cgroup here`, { code: 'ERR_APP_EXITED' });
    writeFenceDeadline(dir, this.o.cluster.member.validUntil);
    ensureWatchdog(dir, group);
  }

  private heldDir(app: string, id: number, seq?: number): string {
    const d = path.join(this.root, 'held', app, String(id));
    return seq === undefined ? d : path.join(d, String(seq));
  }

  /** apps.checkpoint: dump `app/id` (it keeps running), give the images to holders, record it. */
  private async checkpoint(app: string, id: number): Promise<CheckpointResult> {
    const key = `${app}/${id}`;
    if (this.busy.has(key)) throw new SosError(`${key} is being checkpointed already`, { code: 'ERR_APP_BUSY' });
    this.busy.add(key);
    const t0 = performance.now();
    const out = path.join(this.root, 'out', `${app}-${id}-${crypto.randomBytes(4).toString('hex')}`);
    try {
      const { store, member } = this.o.cluster;
      const w = this.o.apps.workloads;
      const rec = w.get(app, id);
      if (rec.state !== 'running')
        throw new SosError(`${key} is not running here (${rec.state})`, { code: 'ERR_APP_EXITED' });
      if (w.moving().some((m) => m.app === app && m.id === id))
        throw new SosError(`${key} is migrating`, { code: 'ERR_APP_BUSY' });
      // Its far memory lives on the memory nodes and goes on changing: a checkpoint would need a
      // snapshot of it there, which they do not take. Migrations hand it over instead.
      if (readFarConfig(w.where(app, id).dir))
        throw new SosError(`${key} has far memory: it migrates, but cannot be checkpointed`, {
          code: 'ERR_UNSUPPORTED',
        });
      const proc = await readKey(store, procKey(app, id), `reading ${key}`);
      if (!proc || parseProcessEntry(proc.key, proc.value)?.node !== member.name)
        throw new SosError(`the cluster does not record ${key} on ${member.name}`, { code: 'ERR_FENCED' });
      const seq = ((await readCheckpoint(store, app, id))?.seq ?? 0) + 1;
      const me = member.name;
      const nodes = [...(await listNodes(store)).values()].filter((n) => n.name !== me && typeof n.api === 'number');
      if (nodes.length === 0)
        throw new SosError(`no other live node can hold a checkpoint of ${key}`, { code: 'ERR_NOT_FOUND' });
      const holders = nodes.sort((a, b) => a.name.localeCompare(b.name)).slice(0, this.o.copies ?? 2);
      // Fenced before the images exist: no copy of them may run elsewhere while this one could still run.
      this.fence(app, id);
      const d0 = performance.now();
      // Its TCP connections too (the network locked meanwhile): a restore elsewhere closes them (tcpClose).
      await criu.dump({ pid: rec.pid, imagesDir: out, leaveRunning: true, tcpEstablished: true });
      const dumpMs = performance.now() - d0;
      const files = await describeFiles(out);
      const bytes = files.reduce((n, f) => n + f.size, 0);
      const s0 = performance.now();
      const sent = await Promise.allSettled(holders.map((h) => this.send(h, { app, id, seq }, out, files)));
      const took = holders.filter((_, i) => sent[i].status === 'fulfilled').map((h) => h.name);
      const missed: { node: string; message: string }[] = [];
      for (const [i, r] of sent.entries())
        if (r.status === 'rejected') {
          const message = (r.reason as Error).message;
          missed.push({ node: holders[i].name, message });
          this.o.log.warn(
            { app, id, seq, holder: holders[i].name },
            `checkpoint not held by ${holders[i].name}: ${message}`,
          );
        }
      if (took.length === 0) throw (sent[0] as PromiseRejectedResult).reason as Error;
      const sendMs = performance.now() - s0;
      const entry: CheckpointEntry = {
        app,
        id,
        seq,
        node: me,
        holders: took,
        at: new Date().toISOString(),
        bytes,
        argv: rec.argv,
        cwd: rec.cwd,
        startedAt: rec.startedAt,
        ...(rec.limits && Object.keys(rec.limits).length ? { limits: rec.limits as Record<string, unknown> } : {}),
        logs: rec.logs,
      };
      await recordCheckpoint(store, member, entry, proc.mod);
      const ms = performance.now() - t0;
      this.o.log.info(
        { app, id, seq, holders: took, bytes, dumpMs, sendMs },
        `checkpoint ${seq} of ${key} held by ${took.join(', ')}`,
      );
      return { app, id, seq, holders: took, missed, bytes, files: files.length, dumpMs, sendMs, ms };
    } finally {
      this.busy.delete(key);
      await fs.promises.rm(out, { recursive: true, force: true });
    }
  }

  /** Send the images in `dir` to `holder`: puts (a window in flight), then the commit with each file's digest. */
  private async send(
    holder: NodeRecord,
    which: { app: string; id: number; seq: number },
    dir: string,
    files: FileFact[],
  ): Promise<void> {
    const c = await connectNode(this.o.clusterDir, holder, { role: 'node', name: this.o.cluster.member.name });
    try {
      const jobs: { file: string; offset: number; length: number }[] = [];
      for (const f of files) {
        if (f.size === 0) jobs.push({ file: f.name, offset: 0, length: 0 });
        for (let off = 0; off < f.size; off += CHUNK)
          jobs.push({ file: f.name, offset: off, length: Math.min(CHUNK, f.size - off) });
      }
      let next = 0;
      const handles = new Map<string, fs.promises.FileHandle>();
      const worker = async () => {
        for (;;) {
          const j = jobs[next++];
          if (!j) return;
          let fh = handles.get(j.file);
          if (!fh) handles.set(j.file, (fh = await fs.promises.open(path.join(dir, j.file), 'r')));
          const buf = Buffer.alloc(j.length);
          await fh.read(buf, 0, j.length, j.offset);
          await c.request('checkpoint.put', { ...which, file: j.file, offset: j.offset, data: buf.toString('base64') });
        }
      };
      try {
        await Promise.all(Array.from({ length: WINDOW }, worker));
      } finally {
        await Promise.allSettled([...handles.values()].map((h) => h.close()));
      }
      await c.request('checkpoint.commit', { ...which, files }, { timeoutMs: 120_000 });
    } finally {
      c.close();
    }
  }

  /** checkpoint.put: a chunk of one image file, from the node the process's entry names. */
  private async put(a: Record<string, unknown>, ctx: RequestContext): Promise<unknown> {
    const peer = nodePeer(ctx);
    const app = a.app as string;
    const id = a.id as number;
    const seq = a.seq as number;
    const data = Buffer.from(a.data as string, 'base64');
    // Node's decoder skips what is not base64: only canonical base64 is data (cheaper than a pattern on 54 KB).
    if (data.toString('base64') !== a.data) throw badArgs('data must be base64');
    const offset = a.offset as number;
    const max = this.o.maxBytes ?? 8 * 2 ** 30;
    if (data.length > CHUNK) throw badArgs(`a chunk is at most ${CHUNK} bytes`);
    if (offset + data.length > max) throw badArgs(`a checkpoint is at most ${max} bytes here`);
    const key = `${app}/${id}/${seq}`;
    let up = this.uploads.get(key);
    if (!up) {
      if (this.uploads.size >= MAX_UPLOADS)
        throw new SosError(`${MAX_UPLOADS} checkpoints are being received already`, { code: 'ERR_APP_BUSY' });
      // Entered at once: the sender's other puts in flight wait for this one's check and folder.
      const dir = path.join(this.root, 'incoming', `${app}-${id}-${seq}`);
      const ready = (async () => {
        const e = await findProcess(this.o.cluster.store, app, id);
        if (e?.node !== peer) throw forbidden(`${app}/${id} does not run on ${peer}: it may not send its checkpoint`);
        await fs.promises.rm(dir, { recursive: true, force: true });
        await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
      })();
      up = {
        from: peer,
        dir,
        bytes: 0,
        files: new Set(),
        timer: setTimeout(() => undefined, 0),
        ready,
        handles: new Map(),
      };
      this.uploads.set(key, up);
      ready.catch(() => this.uploads.get(key) === up && this.uploads.delete(key));
    }
    await up.ready;
    if (up.from !== peer) throw forbidden(`checkpoint ${key} is coming from ${up.from}, not ${peer}`);
    const upload = up;
    clearTimeout(upload.timer);
    upload.timer = setTimeout(() => void this.drop(key), UPLOAD_IDLE_MS);
    upload.timer.unref();
    if (upload.bytes + data.length > max) throw badArgs(`a checkpoint is at most ${max} bytes here`);
    const file = a.file as string;
    if (!upload.files.has(file) && upload.files.size >= MAX_FILES)
      throw badArgs(`a checkpoint is at most ${MAX_FILES} files`);
    upload.files.add(file);
    upload.bytes += data.length;
    // One descriptor per file for the upload's life (closed at commit or drop).
    let fh = upload.handles.get(file);
    if (!fh) {
      const opening = fs.promises.open(
        path.join(upload.dir, file),
        fs.constants.O_WRONLY | fs.constants.O_CREAT,
        0o600,
      );
      upload.handles.set(file, opening);
      fh = opening;
    }
    await (await fh).write(data, 0, data.length, offset);
    return { bytes: data.length };
  }

  private async drop(key: string): Promise<void> {
    const up = this.uploads.get(key);
    if (!up) return;
    this.uploads.delete(key);
    clearTimeout(up.timer);
    await closeAll(up);
    await fs.promises.rm(up.dir, { recursive: true, force: true });
  }

  /** checkpoint.commit: every file as the sender describes it, on disk; then it is the newest held. */
  private async commit(a: Record<string, unknown>, ctx: RequestContext): Promise<unknown> {
    const peer = nodePeer(ctx);
    const app = a.app as string;
    const id = a.id as number;
    const seq = a.seq as number;
    const key = `${app}/${id}/${seq}`;
    const up = this.uploads.get(key);
    if (!up || up.from !== peer)
      throw new SosError(`no checkpoint ${key} is being received from ${peer}`, { code: 'ERR_NOT_FOUND' });
    try {
      const want = a.files as FileFact[];
      const names = new Set(want.map((f) => f.name));
      if (names.size !== want.length || [...up.files].some((f) => !names.has(f)))
        throw badArgs('the files committed are not the files sent');
      await closeAll(up);
      const got = await describeFiles(up.dir);
      const byName = new Map(got.map((f) => [f.name, f]));
      for (const f of want) {
        const g = byName.get(f.name);
        if (!g || g.size !== f.size || g.sha256 !== f.sha256)
          throw badArgs(`${f.name} did not arrive whole (${g ? `${g.size} bytes` : 'missing'}, ${f.size} sent)`);
      }
      await syncTree(up.dir);
      const held = this.heldDir(app, id);
      await fs.promises.mkdir(held, { recursive: true, mode: 0o700 });
      const dest = path.join(held, String(seq));
      await fs.promises.rm(dest, { recursive: true, force: true });
      await fs.promises.rename(up.dir, dest);
      await syncDir(held);
      // The newest is kept: the cluster's record names no older one once this one is recorded.
      for (const d of await fs.promises.readdir(held))
        if (/^\d+$/.test(d) && Number(d) < seq)
          await fs.promises.rm(path.join(held, d), { recursive: true, force: true });
      return { app, id, seq, held: true, bytes: got.reduce((n, f) => n + f.size, 0) };
    } finally {
      await this.drop(key);
    }
  }

  /**
   * apps.restore: run `app/id` here from the checkpoint the cluster records, its node having left.
   * Idempotent by APP/ID: asked again, it answers with the process already restored.
   */
  private async restore(a: Record<string, unknown>, ctx: RequestContext): Promise<unknown> {
    const fence = a.fence as Fence;
    if (ctx.peer.kind === 'tls' && fence.leader !== ctx.peer.name)
      throw forbidden(`node ${ctx.peer.name} may ask for a restore only as the leading orchestrator, with its fence`);
    const app = a.app as string;
    const id = a.id as number;
    const key = `${app}/${id}`;
    const { store, member } = this.o.cluster;
    await checkFence(store, fence);
    const w = this.o.apps.workloads;
    const here = w.list().find((r) => r.app === app && r.id === id && r.state === 'running');
    if (here) return this.o.apps.entry(here);
    if (this.busy.has(key)) throw new SosError(`${key} is being restored already`, { code: 'ERR_APP_BUSY' });
    this.busy.add(key);
    try {
      const ck = await readCheckpoint(store, app, id);
      if (!ck || ck.seq !== a.seq)
        throw new SosError(`the cluster records no checkpoint ${String(a.seq)} of ${key}`, { code: 'ERR_NOT_FOUND' });
      const images = this.heldDir(app, id, ck.seq);
      if (!fs.existsSync(images))
        throw new SosError(`checkpoint ${ck.seq} of ${key} is not held here`, { code: 'ERR_NOT_FOUND' });
      const entry = await findProcess(store, app, id);
      if (!entry || entry.state !== 'running')
        throw new SosError(`${key} is not a running process of the cluster`, { code: 'ERR_FORBIDDEN' });
      const from = entry.node;
      if (from === member.name || (await listNodes(store)).has(from))
        throw new SosError(`${key} runs on ${from}, a live node: it is not restored elsewhere`, {
          code: 'ERR_FORBIDDEN',
        });
      return await this.restoreFrom(ck, images, from, fence);
    } finally {
      this.busy.delete(key);
    }
  }

  private async restoreFrom(ck: CheckpointEntry, images: string, from: string, fence: Fence): Promise<unknown> {
    const { app, id } = ck;
    const w = this.o.apps.workloads;
    const member = this.o.cluster.member;
    const arrival = await w.receive({
      migration: `checkpoint-${ck.seq}-${crypto.randomBytes(8).toString('hex')}`,
      app,
      id,
      argv: ck.argv,
      cwd: ck.cwd,
      limits: ck.limits,
      startedAt: ck.startedAt,
      from,
    });
    const workDir = path.join(this.root, 'out', `restore-${app}-${id}-${crypto.randomBytes(4).toString('hex')}`);
    let pid = 0;
    try {
      await fs.promises.mkdir(workDir, { recursive: true, mode: 0o700 });
      const t0 = performance.now();
      const r = await criu.restore({
        imagesDir: images,
        workDir,
        detached: true,
        // Its peers lost these connections with the node: they come back closed, its listeners open.
        tcpClose: true,
        // CRIU names a regular file by its path without the leading '/'.
        inheritFds: [
          { key: ck.logs.stdout.slice(1), fd: arrival.stdoutFd },
          { key: ck.logs.stderr.slice(1), fd: arrival.stderrFd },
        ],
        hooks: {
          // Still held by CRIU: into its cgroup, and fenced to this node's lease, before it runs.
          postRestore: (e) => {
            if (!e.pid) throw new SosError('CRIU named no restored pid', { code: 'ERR_CRIU' });
            arrival.place(e.pid);
            writeFenceDeadline(arrival.dir, member.validUntil);
            ensureWatchdog(arrival.dir, arrival.group);
          },
        },
      });
      pid = r.pid;
      const rec: WorkloadRecord = await arrival.adopt(pid);
      const entry = await this.o.apps.restored(rec, from, fence);
      this.o.log.info(
        { app, id, pid, seq: ck.seq, from },
        `${app}/${id} restored from checkpoint ${ck.seq} (it ran on ${from})`,
      );
      return { ...entry, seq: ck.seq, restoreMs: performance.now() - t0 };
    } catch (e) {
      // Not recorded (a deposed leader, another restore first): this copy must not run.
      if (pid) {
        await killTree(pid).catch(() => undefined);
        await w.remove(app, id).catch(() => undefined);
      }
      await arrival.abort();
      throw e;
    } finally {
      await fs.promises.rm(workDir, { recursive: true, force: true });
    }
  }

  ops(): OpSpec[] {
    const one = { app: APP, id: ID };
    return [
      {
        op: 'apps.checkpoint',
        schema: { type: 'object', additionalProperties: false, required: ['app', 'id'], properties: one },
        roles: ['operator', 'orchestrator'],
        handler: (a) => this.checkpoint(a.app as string, a.id as number),
      },
      {
        op: 'apps.checkpoints',
        schema: { type: 'object', additionalProperties: false, properties: { app: APP } },
        roles: ['operator', 'orchestrator'],
        handler: async (a) =>
          [...(await listCheckpoints(this.o.cluster.store)).values()]
            .filter((c) => a.app === undefined || c.app === a.app)
            .sort((x, y) => x.app.localeCompare(y.app) || x.id - y.id),
      },
      {
        op: 'checkpoint.put',
        schema: {
          type: 'object',
          additionalProperties: false,
          required: ['app', 'id', 'seq', 'file', 'offset', 'data'],
          properties: {
            ...one,
            seq: SEQ,
            file: FILE,
            offset: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
            data: { type: 'string', maxLength: Math.ceil(CHUNK / 3) * 4 },
          },
        },
        roles: ['node'],
        handler: (a, ctx) => this.put(a, ctx),
      },
      {
        op: 'checkpoint.commit',
        schema: {
          type: 'object',
          additionalProperties: false,
          required: ['app', 'id', 'seq', 'files'],
          properties: {
            ...one,
            seq: SEQ,
            files: {
              type: 'array',
              maxItems: MAX_FILES,
              items: {
                type: 'object',
                additionalProperties: false,
                required: ['name', 'size', 'sha256'],
                properties: {
                  name: FILE,
                  size: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
                  sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
                },
              },
            },
          },
        },
        roles: ['node'],
        handler: (a, ctx) => this.commit(a, ctx),
      },
      {
        op: 'apps.restore',
        schema: {
          type: 'object',
          additionalProperties: false,
          required: ['app', 'id', 'seq', 'fence'],
          properties: { ...one, seq: SEQ, fence: FENCE_SCHEMA },
        },
        roles: ['node'],
        handler: (a, ctx) => this.restore(a, ctx),
      },
    ];
  }

  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    for (const k of [...this.uploads.keys()]) void this.drop(k);
  }
}

/** Close an upload's descriptors (a put still in flight on one fails). */
async function closeAll(up: Upload): Promise<void> {
  const all = [...up.handles.values()];
  up.handles.clear();
  await Promise.allSettled(all.map(async (h) => (await h).close()));
}

interface FileFact {
  name: string;
  size: number;
  sha256: string;
}

/** The regular files of `dir`, each with its size and SHA-256. */
async function describeFiles(dir: string): Promise<FileFact[]> {
  const out: FileFact[] = [];
  for (const d of await fs.promises.readdir(dir, { withFileTypes: true })) {
    if (!d.isFile()) continue;
    const file = path.join(dir, d.name);
    const h = crypto.createHash('sha256');
    let size = 0;
    for await (const chunk of fs.createReadStream(file)) {
      h.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    out.push({ name: d.name, size, sha256: h.digest('hex') });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

function badArgs(message: string): SosError {
  return new SosError(message, { code: 'ERR_BAD_ARGS' });
}
