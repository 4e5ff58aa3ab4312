/**
 * The library's side of the benchmark: lib/migration's migrate() called in
 * node A's namespace (driver.ts) towards the migration agent of node B
 * (lib/migration/agent-main.js listen, in B's namespace); and the CRIU
 * settings the library applies, which the hand-driven baseline copies so that
 * both run the same CRIU the same way.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MigrationResult } from '../../lib/migration/index.js';
import { LineProcess } from '../../testkit/line-process.js';
import type { TestNet, TestNode } from '../../testkit/netns.js';
import type { Sample } from './index.js';

export interface OursEnv {
  close(): Promise<void>;
  readonly driver: LineProcess;
  readonly to: { host: string; port: number };
  readonly secretFile: string;
  readonly workDir: string;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const AGENT = path.join(here, '..', '..', 'lib', 'migration', 'agent-main.js');
const DRIVER = path.join(here, 'driver.js');

/** Start B's agent and A's driver (each inside its node's namespace). */
export async function oursSetup(net: TestNet, dir: string): Promise<OursEnv> {
  const [a, b] = net.nodes;
  const secretFile = path.join(dir, 'secret');
  fs.writeFileSync(secretFile, crypto.randomBytes(32), { mode: 0o600 });
  const workDir = path.join(dir, 'ours-src');
  const procs: LineProcess[] = [];
  const close = async () => {
    for (const p of procs) p.kill();
    await Promise.allSettled(procs.map((p) => p.exited));
  };
  try {
    const agent = new LineProcess(
      'nsenter',
      [
        `--net=/run/netns/${b.netns}`,
        process.execPath,
        AGENT,
        'listen',
        '--secret-file',
        secretFile,
        '--work-dir',
        path.join(dir, 'ours-dst'),
        '--host',
        b.addr,
        '--port',
        '0',
      ],
      { name: 'target agent', waitMs: 30_000 },
    );
    procs.push(agent);
    const l = JSON.parse(await agent.line()) as { listening?: { host: string; port: number } };
    if (!l.listening) throw new Error(`target agent: unexpected first line ${JSON.stringify(l)}`);
    const driver = new LineProcess('nsenter', [`--net=/run/netns/${a.netns}`, process.execPath, DRIVER], {
      name: 'source driver',
      waitMs: 30_000,
    });
    procs.push(driver);
    await driver.line();
    return { close, driver, to: l.listening, secretFile, workDir };
  } catch (e) {
    await close();
    throw e;
  }
}

/** migrate() of `pid` from A to B; the Sample plus the restored pid. */
export async function oursMigrate(
  env: OursEnv,
  mode: 'precopy' | 'postcopy',
  pid: number,
  _a: TestNode,
  _b: TestNode,
  deadlineMs: number,
): Promise<Omit<Sample, 'gapMs'> & { pid: number }> {
  const ans = JSON.parse(
    await env.driver.ask(
      JSON.stringify({ pid, mode, to: env.to, secretFile: env.secretFile, workDir: env.workDir }),
      deadlineMs,
    ),
  ) as { ok: true; wallMs: number; result: MigrationResult } | { ok: false; error: string };
  if (!ans.ok) throw new Error(`migrate(): ${ans.error}`);
  const r = ans.result;
  // The library's phase marks (ms since the call) -> how long each lasted.
  const phases: Record<string, number> = {};
  for (let i = 0; i < r.phases.length; i++) {
    const p = r.phases[i],
      next = r.phases[i + 1];
    if (p.phase === 'done') break;
    phases[p.phase] = (next ? next.ms : r.totalMs) - p.ms;
  }
  return {
    pid: r.targetPid,
    totalMs: ans.wallMs,
    downtimeMs: r.downtimeMs,
    phases,
    frozenMs: mode === 'precopy' && r.criu.dump ? r.criu.dump.frozenTimeUs / 1000 : null,
    restoreMs: r.criu.restore ? r.criu.restore.restoreTimeUs / 1000 : null,
  };
}
