#!/usr/bin/env node
/**
 * The migration agent as a process, for nodes that are network namespaces
 * (start it with `nsenter --net=/run/netns/NODE node agent-main.js …` so its
 * sockets live there) until sosd hosts it.
 *
 *   agent-main.js listen --secret-file F --work-dir D [--host H] [--port P]
 *                        [--flush-neigh NS[,NS…]] [--refuse REASON] [--idle-timeout-ms MS]
 *       prints {"listening":{"host","port"}} once ready; logs go to stderr.
 *   agent-main.js migrate --secret-file F --agent H:P --pid N --to H:P
 *                        [--mode precopy|postcopy] [--move-address ADDR/PREFIX@DEV[@TARGETDEV]] [--no-tcp]
 *                        [--strategy auto|commit|handover]
 *       asks the agent at --agent to migrate its process N; prints one JSON line per
 *       progress event, then {"result":…} (exit 0) or {"error":…} (exit 1).
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { MigrationAgent } from './agent.js';
import { flushNeighbours, type MoveAddress } from './address.js';
import { requestMigration } from './client.js';
import { MigrationError } from './errors.js';

function hostPort(s: string | undefined, what: string): { host: string; port: number } {
  const m = /^(.+):(\d+)$/.exec(s ?? '');
  if (!m) throw new Error(`${what} must be HOST:PORT`);
  return { host: m[1], port: Number(m[2]) };
}

function out(o: unknown) {
  process.stdout.write(JSON.stringify(o) + '\n');
}

async function main() {
  const [cmd, ...rest] = process.argv.slice(2);
  const { values: v } = parseArgs({
    args: rest,
    options: {
      'secret-file': { type: 'string' },
      'work-dir': { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'flush-neigh': { type: 'string' },
      refuse: { type: 'string' },
      agent: { type: 'string' },
      pid: { type: 'string' },
      to: { type: 'string' },
      mode: { type: 'string' },
      'move-address': { type: 'string' },
      'no-tcp': { type: 'boolean' },
      strategy: { type: 'string' },
      'idle-timeout-ms': { type: 'string' },
      'in-doubt-ms': { type: 'string' },
    },
  });
  if (!v['secret-file']) throw new Error('--secret-file is required');
  const secret = fs.readFileSync(v['secret-file']);
  if (cmd === 'listen') {
    if (!v['work-dir']) throw new Error('--work-dir is required');
    const agent = await MigrationAgent.listen({
      secret,
      workDir: v['work-dir'],
      host: v.host ?? '127.0.0.1',
      port: Number(v.port ?? 0),
      ...(v['flush-neigh'] ? { announce: flushNeighbours(v['flush-neigh'].split(',')) } : {}),
      ...(v.refuse ? { admit: () => v.refuse } : {}),
      ...(v['idle-timeout-ms'] ? { idleTimeoutMs: Number(v['idle-timeout-ms']) } : {}),
      ...(v['in-doubt-ms'] ? { inDoubtMs: Number(v['in-doubt-ms']) } : {}),
      log: (l) => process.stderr.write(`[agent] ${new Date().toISOString()} ${l}\n`),
    });
    out({ listening: { host: agent.host, port: agent.port } });
    const stop = () => void agent.close().then(() => process.exit(0));
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  } else if (cmd === 'migrate') {
    let moveAddress: MoveAddress | undefined;
    if (v['move-address']) {
      const m = /^([^/]+)\/(\d+)@([^@]+)(?:@(.+))?$/.exec(v['move-address']);
      if (!m) throw new Error('--move-address must be ADDR/PREFIX@DEV[@TARGETDEV]');
      moveAddress = { address: m[1], prefix: Number(m[2]), dev: m[3], ...(m[4] ? { targetDev: m[4] } : {}) };
    }
    try {
      const result = await requestMigration(hostPort(v.agent, '--agent'), secret, Number(v.pid), {
        to: hostPort(v.to, '--to'),
        mode: v.mode === 'postcopy' ? 'postcopy' : 'precopy',
        ...(moveAddress ? { moveAddress } : {}),
        tcpEstablished: !v['no-tcp'],
        ...(v.strategy ? { strategy: v.strategy as 'auto' | 'commit' | 'handover' } : {}),
        onProgress: (p) => out({ progress: p }),
      });
      out({ result });
    } catch (e) {
      const err = e as MigrationError;
      out({ error: { code: err.code, message: err.message, step: err.step, runningOn: err.runningOn, pid: err.pid } });
      process.exitCode = 1;
    }
  } else throw new Error('usage: agent-main.js listen|migrate … (see the file header)');
}

main().catch((e: Error) => {
  process.stderr.write(`agent-main: ${e.message}\n`);
  process.exit(2);
});
