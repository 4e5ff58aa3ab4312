/**
 * The library's side of the benchmark: lib/migration's migrate() between agents
 * on the two nodes, and the CRIU settings the library applies (so that the
 * hand-driven baseline runs the same CRIU the same way).
 */
import type { TestNet, TestNode } from '../../test/helpers/netns.js';
import type { Sample } from './index.js';

export interface CriuSettings { criu: string; env: NodeJS.ProcessEnv; flags: string[]; logLevel: number }
export interface OursEnv { cli: CriuSettings; close(): Promise<void> }

export async function criuSettings(): Promise<CriuSettings> {
  return { criu: '/usr/local/sbin/criu', env: { ...process.env, CRIU_FAULT: '130' }, flags: [], logLevel: 2 };
}

export async function oursSetup(_net: TestNet, _dir: string): Promise<OursEnv> {
  throw new Error('lib/migration is not on main yet');
}

export async function oursMigrate(_env: OursEnv, _mode: 'precopy' | 'postcopy', _pid: number, _a: TestNode, _b: TestNode):
  Promise<Omit<Sample, 'gapMs'> & { pid: number }> {
  throw new Error('lib/migration is not on main yet');
}
