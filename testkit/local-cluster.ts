// A local cluster for one test (`sosctl cluster up` in a folder of its own), taken down in the
// test's teardown, and on exit if the test process dies first; `sosctl` runs against it.
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { downLocal, localCluster, type LocalCluster } from '../lib/cluster/local.js';
import { onExit } from './cleanup.js';
import { waitFor } from './wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const sosctl = path.join(here, '../lib/cli/sosctl.js');
const remoteCall = path.join(here, 'remote-call.js');

export interface Out {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ClusterHarness {
  dir: string;
  /** What `cluster up` printed. */
  up: Out;
  /** The environment sosctl runs in (SOS_LOCAL_DIR names the cluster). */
  env: NodeJS.ProcessEnv;
  c: LocalCluster;
  /** Run sosctl; resolves with its exit code and output (never rejects). */
  sosctl: (args: string[], timeoutMs?: number) => Promise<Out>;
  /** Run sosctl with `--json` (after `args`: keep `--` out of them); its parsed output, or a rejection with its stderr. */
  json: <T>(args: string[]) => Promise<T>;
  /** The orchestrator's leader, once there is one. */
  leader: () => Promise<string>;
  /**
   * One request to node `node`'s mutual-TLS API with the certificate of `as` (remote-call.ts, run in
   * the bridge's namespace: the host has no route to the nodes).
   */
  remote: (as: { role: string; name: string }, node: number, op: string, args?: object) => Promise<Reply>;
}

export interface Reply {
  ok: boolean;
  result?: unknown;
  code?: string;
  message?: string;
}

interface Teardown {
  teardown(f: () => unknown): void;
}

/**
 * Live copies of a workload: the processes whose command line holds `marker` and that are pid 1 of
 * their PID namespace (not zombies), on any node of this machine.
 */
export function namespaceInits(marker: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (!cmd.includes(marker)) continue;
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const status = fs.readFileSync(`/proc/${d}/status`, 'utf8');
      if (!/\) [ZX] /.test(st) && /^NSpid:\s+\d+\s+1$/m.test(status)) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** `sosctl cluster up --nodes N` with `upArgs`; throws with sosctl's stderr when it fails. */
export async function localClusterFor(t: Teardown, nodes: number, upArgs: string[] = []): Promise<ClusterHarness> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-cluster-'));
  const env = { ...process.env, SOS_LOCAL_DIR: dir };
  const run = (args: string[], timeoutMs = 180_000): Promise<Out> =>
    new Promise((resolve) =>
      execFile(process.execPath, [sosctl, ...args], { timeout: timeoutMs, env }, (e, stdout, stderr) =>
        resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      ),
    );
  const cancel = onExit(() => execFileSync(process.execPath, [sosctl, 'cluster', 'down', '--dir', dir], { env }));
  t.teardown(async () => {
    await run(['cluster', 'down', '--dir', dir]);
    await downLocal(dir);
    cancel();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const up = await run(['cluster', 'up', '--nodes', String(nodes), ...upArgs, '--dir', dir]);
  if (up.code !== 0) throw new Error(`cluster up failed (${up.code}): ${up.stderr}`);
  const c = localCluster(dir)!;
  const remote = (as: { role: string; name: string }, node: number, op: string, args: object = {}) =>
    new Promise<Reply>((resolve, reject) =>
      execFile(
        'ip',
        // prettier-ignore
        ['netns', 'exec', c.net.bridge, process.execPath, remoteCall, path.join(dir, 'cluster'),
          as.role, as.name, c.nodes[node].addr, '7443', op, JSON.stringify(args)],
        { encoding: 'utf8', timeout: 60_000 },
        (e, stdout) => (e ? reject(new Error(e.message)) : resolve(JSON.parse(stdout) as Reply)),
      ),
    );
  const json = async <T>(args: string[]): Promise<T> => {
    const r = await run([...args, '--json']);
    if (r.code !== 0) throw new Error(`sosctl ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  const leader = async (): Promise<string> => {
    let name: string | null = null;
    await waitFor(
      async () => (name = (await json<{ leader: string | null }>(['orchestrator'])).leader) !== null,
      'a leader',
    );
    return name!;
  };
  return { dir, up, env, c, sosctl: run, remote, json, leader };
}
