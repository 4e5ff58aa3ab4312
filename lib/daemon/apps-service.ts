/**
 * sosd's workloads role: the node's application processes (lib/apps: each the init of its own PID
 * namespace, in its own cgroup, its output kept in files), served as ops, and — in a cluster — each
 * one numbered cluster-wide and entered in etcd (lib/cluster/processes.ts) so that any sosd finds
 * it by APP/ID. A restarted sosd re-adopts the processes that still run (Workloads.open) and brings
 * their entries up to date.
 */
import path from 'node:path';
import { Workloads, type WorkloadRecord } from '../apps/index.js';
import type { ClusterNode } from '../cluster/join.js';
import { ProcessRegistry, listProcesses, type ProcessEntry } from '../cluster/processes.js';
import type { DaemonLogger, OpSpec } from './server.js';

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

const APP = { type: 'string', pattern: '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$' };
const ID = { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER };
const OPERATORS = ['operator', 'orchestrator'] as const;
const READERS = ['operator', 'orchestrator', 'node'] as const;

const RUN_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['app', 'argv'],
  properties: {
    app: APP,
    argv: { type: 'array', minItems: 1, maxItems: 4096, items: { type: 'string', maxLength: 65536 } },
    env: { type: 'object', maxProperties: 4096, additionalProperties: { type: 'string', maxLength: 65536 } },
    cwd: { type: 'string', maxLength: 4096 },
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        memoryBytes: { type: ['integer', 'null'], minimum: 1 },
        cpu: {
          type: ['object', 'null'],
          additionalProperties: false,
          required: ['quotaUs'],
          properties: { quotaUs: { type: 'integer', minimum: 1000 }, periodUs: { type: 'integer', minimum: 1000 } },
        },
        pids: { type: ['integer', 'null'], minimum: 1 },
      },
    },
  },
};
const ONE = { type: 'object', additionalProperties: false, required: ['app', 'id'], properties: { app: APP, id: ID } };
const LIST = { type: 'object', additionalProperties: false, properties: { app: APP } };

export class AppsService {
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
    for (const r of adopted) await s.publish(r).catch(() => undefined);
    workloads.on('exit', (r) => {
      o.log.info({ app: r.app, id: r.id, exitCode: r.exitCode, signal: r.signal }, 'workload exited');
      void s.publish(r).catch(() => undefined);
    });
    return s;
  }

  private entry(r: WorkloadRecord): ProcessEntry {
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

  /** Enter `r` in etcd (a no-op without a cluster); logged and rethrown when etcd refuses. */
  private async publish(r: WorkloadRecord): Promise<void> {
    if (!this.registry) return;
    try {
      await this.registry.put(this.entry(r));
    } catch (e) {
      this.o.log.warn(
        { app: r.app, id: r.id, code: (e as { code?: string }).code },
        `cannot record ${r.app}/${r.id} in etcd: ${(e as Error).message}`,
      );
      throw e;
    }
  }

  ops(): OpSpec[] {
    const w = this.workloads;
    return [
      {
        op: 'apps.run',
        schema: RUN_SCHEMA,
        roles: [...OPERATORS],
        handler: async (a) => {
          const app = a.app as string;
          // In a cluster the number comes from etcd (unique cluster-wide), and the entry is durable
          // before the reply: whoever is told APP/ID can find it.
          const id = this.registry ? await this.registry.allocate(app) : undefined;
          const r = await w.run({
            app,
            ...(id === undefined ? {} : { id }),
            argv: a.argv as string[],
            env: a.env as Record<string, string> | undefined,
            cwd: a.cwd as string | undefined,
            limits: a.limits as never,
          });
          try {
            await this.publish(r);
          } catch (e) {
            // Not findable by the cluster, so not started at all.
            w.kill(r.app, r.id, 'SIGKILL');
            await w.wait(r.app, r.id);
            await w.remove(r.app, r.id);
            throw e;
          }
          return { ...this.entry(r), vpid: r.vpid, logs: r.logs };
        },
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
          },
        },
        roles: [...OPERATORS],
        handler: (a) =>
          w.logs(a.app as string, a.id as number, {
            stream: a.stream as 'stdout' | 'stderr' | 'both' | undefined,
            tailBytes: a.tailBytes as number | undefined,
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
            .map((r) => ({ app: r.app, id: r.id, node: this.o.node, ...safeUsage(w, r) })),
      },
      {
        op: 'apps.remove',
        schema: ONE,
        roles: [...OPERATORS],
        handler: async (a) => {
          await w.remove(a.app as string, a.id as number);
          await this.registry?.remove(a.app as string, a.id as number);
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
