// Asking a source node's agent to migrate one of its processes (what a test,
// sosctl or an orchestrator does), over the same authenticated channel.
import { AuthChannel, type ChannelAuth } from '../net/channel.js';
import { MigrationError, describe, type MigrationStep, type RunningOn } from './errors.js';
import { parseToClient, send } from './messages.js';
import { ProtocolError } from './protocol.js';
import type { MigrateOptions, MigrationResult } from './types.js';

export type RemoteMigrateOptions = Omit<
  MigrateOptions,
  'workDir' | 'secret' | 'signal' | 'inDoubtMs' | 'keepImages' | 'idleTimeoutMs'
>;

const STEPS: readonly string[] = [
  'validate',
  'connect',
  'accept',
  'dump',
  'address',
  'transfer',
  'restore',
  'commit',
  'pages',
  'cleanup',
];
const WHERE: readonly string[] = ['source', 'target', 'stopped-source', 'none'];

/**
 * Have the agent at `agent` migrate its local `pid` as `opts` say; resolves with its result.
 * Every failure is a MigrationError: one that never reached the agent (unreachable, or the
 * secrets do not match: `ERR_AUTH`) has `step` 'connect', `runningOn` 'source' and the
 * channel's error as `cause`. Once asked, a connection that breaks (ChannelError) or an answer
 * that breaks the protocol (ProtocolError) leaves the outcome unknown here: ask the agents.
 */
export async function requestMigration(
  agent: { host: string; port: number },
  secret: ChannelAuth,
  pid: number,
  opts: RemoteMigrateOptions,
): Promise<MigrationResult> {
  let ch: AuthChannel;
  try {
    ch = await AuthChannel.connect({ host: agent.host, port: agent.port, secret });
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    const why = code === 'ERR_AUTH' ? 'the secrets do not match (the agent holds another one)' : describe(e);
    throw new MigrationError(
      `cannot ask the agent at ${agent.host}:${agent.port} to migrate pid ${pid}: ${why}; nothing was moved`,
      { code: typeof code === 'string' ? code : 'ERR_MIGRATION', step: 'connect', runningOn: 'source', cause: e },
    );
  }
  try {
    const { onProgress, ...rest } = opts;
    const answer = ch.waitFor((x) => x.op === 'result' || x.op === 'error', 0, 'the migration result');
    let broken: (e: unknown) => void = () => {};
    const badProgress = new Promise<never>((_, reject) => (broken = reject));
    ch.on('message', (m) => {
      if (m.op !== 'progress' || !onProgress) return;
      let p;
      try {
        p = parseToClient(m);
      } catch (e) {
        return broken(e);
      }
      if (p.op === 'progress') onProgress({ phase: p.phase, bytes: p.bytes, pages: p.pages });
    });
    send(ch, { op: 'migrate', pid, mode: 'precopy', ...rest });
    const m = parseToClient(await Promise.race([answer, badProgress]));
    if (m.op === 'result') return m.result;
    if (m.op !== 'error') throw new ProtocolError(`unexpected ${m.op} as the answer`);
    const e = m.error;
    throw new MigrationError(e.message, {
      code: e.code,
      step: (e.step !== undefined && STEPS.includes(e.step) ? e.step : 'validate') as MigrationStep,
      runningOn: (e.runningOn !== undefined && WHERE.includes(e.runningOn) ? e.runningOn : 'source') as RunningOn,
      ...(e.pid !== undefined ? { pid: e.pid } : {}),
    });
  } finally {
    ch.close();
  }
}
