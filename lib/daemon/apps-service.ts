/**
 * sosd's workloads role: the node's application processes (lib/apps: each the init of its own PID
 * namespace, in its own cgroup, its output kept in files), served as ops, and — in a cluster — each
 * one numbered cluster-wide and entered in etcd (lib/cluster/processes.ts) so that any sosd finds
 * it by APP/ID. A restarted sosd re-adopts the processes that still run (Workloads.open) and brings
 * their entries up to date.
 */
import crypto from 'node:crypto';
import path from 'node:path';
import { Workloads, type WorkloadRecord } from '../apps/index.js';
import type { ClusterNode } from '../cluster/join.js';
import { removeCheckpoint } from '../cluster/checkpoints.js';
import { ProcessRegistry, listProcesses, type ProcessEntry } from '../cluster/processes.js';
import { RUN_PROPERTIES, removeDesired } from '../orchestrator/desired.js';
import { FENCE_SCHEMA, checkFence, fenceCompare, type Fence } from '../orchestrator/fence.js';
import type { DaemonLogger, OpSpec, RequestContext } from './server.js';
import { APP, ID } from './schemas.js';
import { forbidden } from './refusals.js';
import { SosError } from '../errors.js';
import { FAR_CONFIG_SCHEMA, farEnv, writeFarConfig, type FarConfig, type FarService } from './far-service.js';

export interface AppsServiceOptions {
  /** sosd's state folder: workloads live in its `apps/` subfolder. */
  stateDir: string;
  /** This node's name (in entries and in `ps` without a cluster). */
  node: string;
  /** The cgroup folder every workload's group goes under, in each hierarchy (default 'serverlessos'). */
  cgroupPrefix?: string;
  /** The cluster this node joined, if any. */
  cluster?: ClusterNode | null;
  log: DaemonLogger;
}

const OPERATORS = ['operator', 'orchestrator'] as const;
const TELEMETRY_MEM_STEP = 16 * 2 ** 20;
const READERS = ['operator', 'orchestrator', 'node'] as const;

const RUN_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['app', 'argv'],
  // `id` and `fence`: the orchestrator placing a desired process (both or neither).
  // `farMemory`: its large memory on memory nodes (sosctl run --far-memory), paged by this sosd.
  properties: { ...RUN_PROPERTIES, id: ID, fence: FENCE_SCHEMA, farMemory: FAR_CONFIG_SCHEMA },
};
const ONE = { type: 'object', additionalProperties: false, required: ['app', 'id'], properties: { app: APP, id: ID } };
const LIST = { type: 'object', additionalProperties: false, properties: { app: APP } };

export class AppsService {
  /** The far-memory monitor (sosd sets it): workloads with `farMemory` need one. */
  far: FarService | null = null;

  private constructor(
    readonly workloads: Workloads,
    private readonly o: AppsServiceOptions,
    private readonly registry: ProcessRegistry | null,
  ) {}

  static async start(o: AppsServiceOptions): Promise<AppsService> {
    const workloads = await Workloads.open({
      stateDir: path.join(o.stateDir, 'apps'),
      cgroups: { prefix: o.cgroupPrefix ?? 'serverlessos' },
      log: o.log,
    });
    const registry = o.cluster ? new ProcessRegistry(o.cluster.store, o.cluster.member) : null;
    const s = new AppsService(workloads, o, registry);
    const adopted = workloads.list();
    if (adopted.length)
      o.log.info(
        {
          running: adopted.filter((r) => r.state === 'running').length,
          exited: adopted.filter((r) => r.state === 'exited').length,
        },
        'workloads re-adopted',
      );
    // Entries may be behind the records (an exit while sosd was down): bring them up to date.
    // (Not those that left by migration: the cluster's entry is their new node's.)
    for (const r of adopted) if (r.state !== 'migrated') await s.publish(r).catch(() => undefined);
    workloads.on('exit', (r) => {
      o.log.info({ app: r.app, id: r.id, exitCode: r.exitCode, signal: r.signal }, 'workload exited');
      void s.publish(r).catch(() => undefined);
    });
    return s;
  }

  /** The cluster's entry for workload `r` of this node. */
  entry(r: WorkloadRecord): ProcessEntry {
    return {
      app: r.app,
      id: r.id,
      node: this.o.node,
      pid: r.pid,
      state: r.state,
      startedAt: r.startedAt,
      exitCode: r.exitCode,
      signal: r.signal,
      exitedAt: r.exitedAt,
      argv0: r.argv[0],
    };
  }

  /**
   * Per-application usage for the node's telemetry: `apps: { <app>: { procs, memoryBytes, cpu } }`,
   * memory in steps of 16 MiB and CPU (cores, since the last sample) in steps of 0.05, so that a
   * steady workload does not make every sample a write.
   */
  telemetrySource(): () => Record<string, unknown> {
    let last = { at: performance.now(), cpu: new Map<string, number>() };
    return () => {
      const now = performance.now();
      const cpu = new Map<string, number>();
      const apps: Record<string, { procs: number; memoryBytes: number; cpu: number }> = {};
      for (const r of this.workloads.list()) {
        if (r.state !== 'running') continue;
        const u = safeUsage(this.workloads, r);
        const a = (apps[r.app] ??= { procs: 0, memoryBytes: 0, cpu: 0 });
        a.procs++;
        a.memoryBytes += u.memoryBytes ?? 0;
        cpu.set(r.app, (cpu.get(r.app) ?? 0) + (u.cpuSeconds ?? 0));
      }
      const secs = Math.max(1e-3, (now - last.at) / 1000);
      for (const [app, a] of Object.entries(apps)) {
        const before = last.cpu.get(app);
        const cores = before === undefined ? 0 : Math.max(0, (cpu.get(app)! - before) / secs);
        a.cpu = Math.round(cores * 20) / 20;
        a.memoryBytes = Math.round(a.memoryBytes / TELEMETRY_MEM_STEP) * TELEMETRY_MEM_STEP;
      }
      last = { at: now, cpu };
      return { apps };
    };
  }

  /** A workload that came in by migration: the cluster's entry names this node now. */
  async adopted(r: WorkloadRecord): Promise<void> {
    await this.publish(r, true);
    await this.onAdopted?.(r);
  }

  /** Called once a workload that came in by migration is recorded (the checkpoint role fences it). */
  onAdopted: ((r: WorkloadRecord) => Promise<void>) | null = null;

  /** A workload restored here from a checkpoint of it on `from` (a node that left): the entry must still name `from`. */
  async restored(r: WorkloadRecord, from: string, fence: Fence): Promise<ProcessEntry> {
    await this.publish(r, false, fence, from);
    return this.entry(r);
  }

  /** Enter `r` in etcd (a no-op without a cluster); logged and rethrown when etcd refuses. */
  private async publish(r: WorkloadRecord, takeOver = false, fence?: Fence, from?: string): Promise<void> {
    if (!this.registry) return;
    try {
      await this.registry.put(this.entry(r), {
        takeOver,
        ...(from ? { from } : {}),
        ...(fence ? { also: fenceCompare(fence) } : {}),
      });
    } catch (e) {
      this.o.log.warn(
        { app: r.app, id: r.id, code: (e as { code?: string }).code },
        `cannot record ${r.app}/${r.id} in etcd: ${(e as Error).message}`,
      );
      throw e;
    }
  }

  /**
   * apps.run. An operator's request is numbered here. The orchestrator's (`id` and `fence`, from the
   * leading node) runs the desired APP/ID only while that term is the current one, and is idempotent:
   * asked again (a retry, a new leader finishing a step) it answers with the process already there.
   */
  private async run(a: Record<string, unknown>, ctx: RequestContext): Promise<unknown> {
    const w = this.workloads;
    const app = a.app as string;
    const fence = a.fence as Fence | undefined;
    if ((a.id === undefined) !== (fence === undefined))
      throw forbidden('id and fence come together (the orchestrator)');
    if (ctx.peer.kind === 'tls' && ctx.peer.role === 'node' && fence?.leader !== ctx.peer.name)
      throw forbidden(`node ${ctx.peer.name} may run a process here only as the leading orchestrator, with its fence`);
    if (fence) {
      if (!this.registry || !this.o.cluster)
        throw forbidden('this sosd is not in a cluster: no orchestrator may place here');
      await checkFence(this.o.cluster.store, fence);
      const id = a.id as number;
      const here = w.list().find((r) => r.app === app && r.id === id);
      if (here) return { ...this.entry(here), vpid: here.vpid, logs: here.logs };
    }
    // In a cluster the number comes from etcd (unique cluster-wide), and the entry is durable
    // before the reply: whoever is told APP/ID can find it.
    const id = (a.id as number | undefined) ?? (this.registry ? await this.registry.allocate(app) : undefined);
    const far = a.farMemory as FarConfig | undefined;
    if (far && !this.far) throw new SosError('this sosd has no far-memory monitor', { code: 'ERR_UNSUPPORTED' });
    const env = a.env as Record<string, string> | undefined;
    const r = await w.run({
      app,
      ...(id === undefined ? {} : { id }),
      argv: a.argv as string[],
      env: far ? { ...env, ...farEnv(app, crypto.randomBytes(8).toString('hex'), far) } : env,
      cwd: a.cwd as string | undefined,
      limits: a.limits as never,
      ...(far ? { prepare: (dir: string) => writeFarConfig(dir, far) } : {}),
    });
    try {
      await this.publish(r, false, fence);
    } catch (e) {
      // Not findable by the cluster (or its leader deposed meanwhile), so not started at all.
      w.kill(r.app, r.id, 'SIGKILL');
      await w.wait(r.app, r.id);
      await w.remove(r.app, r.id);
      throw e;
    }
    return { ...this.entry(r), vpid: r.vpid, logs: r.logs };
  }

  ops(): OpSpec[] {
    const w = this.workloads;
    return [
      {
        op: 'apps.run',
        schema: RUN_SCHEMA,
        roles: [...OPERATORS, 'node'],
        handler: (a, ctx) => this.run(a, ctx),
      },
      {
        op: 'apps.list',
        schema: LIST,
        roles: [...READERS],
        handler: (a) =>
          w
            .list()
            .filter((r) => a.app === undefined || r.app === a.app)
            .map((r) => this.entry(r)),
      },
      {
        op: 'apps.ps',
        schema: LIST,
        roles: [...READERS],
        handler: async (a) => {
          const app = a.app as string | undefined;
          if (this.o.cluster) return await listProcesses(this.o.cluster.store, app);
          return w
            .list()
            .filter((r) => app === undefined || r.app === app)
            .map((r) => this.entry(r));
        },
      },
      {
        op: 'apps.get',
        schema: ONE,
        roles: [...READERS],
        handler: (a) => {
          const r = w.get(a.app as string, a.id as number);
          return { ...this.entry(r), vpid: r.vpid, argv: r.argv, cwd: r.cwd, limits: r.limits, logs: r.logs };
        },
      },
      {
        op: 'apps.logs',
        schema: {
          ...ONE,
          properties: {
            ...ONE.properties,
            stream: { enum: ['stdout', 'stderr', 'both'] },
            tailBytes: { type: 'integer', minimum: 0, maximum: 16 * 2 ** 20 },
            from: {
              type: 'object',
              additionalProperties: false,
              properties: {
                stdout: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
                stderr: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
              },
            },
          },
        },
        roles: [...OPERATORS],
        handler: (a) =>
          w.logs(a.app as string, a.id as number, {
            stream: a.stream as 'stdout' | 'stderr' | 'both' | undefined,
            tailBytes: a.tailBytes as number | undefined,
            from: a.from as { stdout?: number; stderr?: number } | undefined,
          }),
      },
      {
        op: 'apps.kill',
        schema: {
          ...ONE,
          properties: { ...ONE.properties, signal: { type: 'string', pattern: '^SIG[A-Z0-9]{2,8}$' } },
        },
        roles: [...OPERATORS],
        handler: (a) => {
          w.kill(a.app as string, a.id as number, (a.signal as string | undefined) ?? 'SIGTERM');
          return { app: a.app, id: a.id, signal: a.signal ?? 'SIGTERM' };
        },
      },
      {
        op: 'apps.wait',
        schema: ONE,
        roles: [...OPERATORS],
        handler: async (a) => this.entry(await w.wait(a.app as string, a.id as number)),
      },
      {
        op: 'apps.usage',
        schema: LIST,
        roles: [...READERS],
        handler: (a) =>
          w
            .list()
            .filter((r) => r.state === 'running' && (a.app === undefined || r.app === a.app))
            .map((r) => {
              // A far-memory workload: each process's arena, its resident pages and paging counters.
              const far = this.far?.stats(r.app, r.id) ?? [];
              return { app: r.app, id: r.id, node: this.o.node, ...safeUsage(w, r), ...(far.length ? { far } : {}) };
            }),
      },
      {
        op: 'apps.remove',
        schema: ONE,
        roles: [...OPERATORS],
        handler: async (a) => {
          await w.remove(a.app as string, a.id as number);
          await this.registry?.remove(a.app as string, a.id as number);
          // Placed by the orchestrator: no longer desired either (its step and decisions stay, as history).
          if (this.o.cluster) {
            await removeDesired(this.o.cluster.store, a.app as string, a.id as number);
            // Nor restorable: its holders let the images go (CheckpointService's sweep).
            await removeCheckpoint(this.o.cluster.store, a.app as string, a.id as number);
          }
          return { app: a.app, id: a.id, removed: true };
        },
      },
    ];
  }

  /** Stop serving; the workloads go on running for the next sosd. */
  close(): void {
    this.workloads.close();
  }
}

function safeUsage(w: Workloads, r: WorkloadRecord) {
  try {
    return w.usage(r.app, r.id);
  } catch {
    return { memoryBytes: null, cpuSeconds: null, pids: null };
  }
}
