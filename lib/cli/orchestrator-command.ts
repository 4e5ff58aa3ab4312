/**
 * `sosctl orchestrator`: who leads the cluster's orchestrator and under which term; `sosctl
 * decisions`: what it decided and why (newest last); `sosctl desired`: the processes the cluster
 * should run and the step taken for each. Through the local sosd (any node answers: it reads etcd).
 */
import { Command, InvalidArgumentError } from 'commander';
import type { Decision } from '../orchestrator/actions.js';
import type { Action } from '../orchestrator/actions.js';
import type { ProcessSpec } from '../orchestrator/desired.js';
import { clusterOptions, type Opts } from './apps-command.js';
import { printDoc } from './output.js';
import { sosdOf } from './target.js';

async function ask(op: string, args: Record<string, unknown>, o: Opts): Promise<unknown> {
  const t = await sosdOf(undefined, o);
  try {
    return await t.call(op, args);
  } finally {
    t.close();
  }
}

export function orchestratorCommand(): Command {
  return clusterOptions(
    new Command('orchestrator')
      .description("who leads the cluster's orchestrator, its term")
      .exitOverride()
      .showHelpAfterError(),
  ).action(async (o: Opts) => {
    const s = (await ask('orchestrator.status', {}, o)) as {
      leader: string | null;
      term: string | null;
      since: string | null;
      policy: string;
    };
    printDoc(
      o.json,
      s,
      s.leader
        ? `leader: ${s.leader}\nterm: ${s.term}\nsince: ${s.since}\npolicy: ${s.policy}`
        : 'leader: none (an election is under way)',
    );
  });
}

export function decisionsCommand(): Command {
  return clusterOptions(
    new Command('decisions')
      .description("the orchestrator's decisions with their reasons, newest last")
      .exitOverride()
      .showHelpAfterError()
      .option('--limit <n>', 'how many (default 50, at most 1000)', (v) => {
        if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 1000)
          throw new InvalidArgumentError('--limit must be an integer in [1, 1000]');
        return Number(v);
      }),
  ).action(async (o: Opts & { limit?: number }) => {
    const rows = (await ask('orchestrator.decisions', o.limit ? { limit: o.limit } : {}, o)) as Decision[];
    printDoc(
      o.json,
      rows,
      rows
        .map(
          (d) =>
            `${d.at}  ${d.leader}#${d.term}  ${d.kind.padEnd(11)} ${(d.app === '' ? '-' : `${d.app}/${d.id}`).padEnd(20)} ${(d.node ?? '-').padEnd(10)} ${d.reason}`,
        )
        .join('\n') || '(no decisions yet)',
    );
  });
}

export function desiredCommand(): Command {
  return clusterOptions(
    new Command('desired')
      .description('the processes the cluster should run, and the step taken for each')
      .exitOverride()
      .showHelpAfterError(),
  ).action(async (o: Opts) => {
    const rows = (await ask('orchestrator.desired', {}, o)) as (ProcessSpec & { step: Action | null })[];
    printDoc(
      o.json,
      rows,
      [
        `${'PROCESS'.padEnd(24)} ${'NODE'.padEnd(12)} ${'STEP'.padEnd(9)} REASON`,
        ...rows.map(
          (r) =>
            `${`${r.app}/${r.id}`.padEnd(24)} ${(r.step?.node ?? '-').padEnd(12)} ${(r.step?.state ?? 'pending').padEnd(9)} ${r.step?.reason ?? ''}`,
        ),
      ].join('\n'),
    );
  });
}
