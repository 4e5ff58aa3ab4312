// Asking a source node's agent to migrate one of its processes (what a test,
// sosctl or an orchestrator does), over the same authenticated channel.
import { AuthChannel } from '../net/channel.js';
import { MigrationError, type MigrationStep, type RunningOn } from './errors.js';
import type { MigrateOptions, MigrationResult, Progress } from './source.js';

export type RemoteMigrateOptions = Omit<
  MigrateOptions,
  'workDir' | 'secret' | 'signal' | 'inDoubtMs' | 'keepImages' | 'idleTimeoutMs'
>;

/** Have the agent at `agent` migrate its local `pid` as `opts` say; resolves with its result. */
export async function requestMigration(
  agent: { host: string; port: number },
  secret: Buffer | string,
  pid: number,
  opts: RemoteMigrateOptions,
): Promise<MigrationResult> {
  const ch = await AuthChannel.connect({ host: agent.host, port: agent.port, secret });
  try {
    const { onProgress, ...rest } = opts;
    ch.on('message', (m) => {
      if (m.op === 'progress' && onProgress) onProgress(m as unknown as Progress);
    });
    ch.send({ op: 'migrate', pid, ...(rest as Record<string, unknown>) });
    const m = await ch.waitFor((x) => x.op === 'result' || x.op === 'error', 0, 'the migration result');
    if (m.op === 'result') return m.result as MigrationResult;
    const e = (m.error ?? {}) as { code?: string; message?: string; step?: string; runningOn?: string; pid?: number };
    throw new MigrationError(e.message ?? 'migration failed', {
      code: e.code ?? 'ERR_MIGRATION',
      step: (e.step ?? 'validate') as MigrationStep,
      runningOn: (e.runningOn ?? 'source') as RunningOn,
      ...(e.pid !== undefined ? { pid: e.pid } : {}),
    });
  } finally {
    ch.close();
  }
}
