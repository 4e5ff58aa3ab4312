/**
 * Where a desired process goes: the orchestrator's decision point, pluggable (`PlacementPolicy`) and
 * observable (every choice comes with a reason, recorded with the action). The default,
 * `fewestProcesses`, takes the live node (the spec's `node` when it names one) running the fewest
 * processes, counting those placed but not yet started, then the one with the most memory available.
 * A far-memory process goes to a node that is none of its memory nodes while one is live: its pages
 * would otherwise take that node's memory twice, as the process's and as the memory node's.
 * Policies that act on their own (consolidation, memory pressure) plug in here later.
 */
import type { NodeRecord } from '../cluster/membership.js';
import type { Telemetry } from '../cluster/telemetry.js';
import type { ProcessSpec } from './desired.js';

/** A live node as the policy sees it. */
export interface Candidate {
  name: string;
  record: NodeRecord;
  /** Its latest telemetry (null: none published yet). */
  telemetry: Telemetry | null;
  /** Processes running there or placed there and not started yet. */
  processes: number;
}

export interface PlacementChoice {
  /** The node, or null when none will do (then `reason` says why; the spec waits). */
  node: string | null;
  reason: string;
}

export interface PlacementPolicy {
  readonly name: string;
  place(spec: ProcessSpec, nodes: readonly Candidate[]): PlacementChoice;
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;

export const fewestProcesses: PlacementPolicy = {
  name: 'fewest-processes',
  place(spec, nodes) {
    if (spec.node !== undefined) {
      const n = nodes.find((c) => c.name === spec.node);
      return n
        ? { node: n.name, reason: `asked for ${n.name}` }
        : { node: null, reason: `${spec.node} is not a live node` };
    }
    if (nodes.length === 0) return { node: null, reason: 'no live node' };
    const holders = new Set(spec.farMemory?.memoryNodes ?? []);
    const apart = nodes.filter((c) => !holders.has(c.name));
    const among = apart.length > 0 ? apart : nodes;
    const ranked = [...among].sort(
      (a, b) =>
        a.processes - b.processes ||
        (b.telemetry?.memAvail ?? 0) - (a.telemetry?.memAvail ?? 0) ||
        a.name.localeCompare(b.name),
    );
    const best = ranked[0];
    const others = ranked
      .slice(1)
      .map((c) => `${c.name} ${c.processes}`)
      .join(', ');
    const mem = best.telemetry ? `, ${gib(best.telemetry.memAvail)} available` : '';
    const where =
      holders.size === 0
        ? ''
        : apart.length > 0
          ? ' among the nodes that hold none of its memory'
          : ', every live node holds some of its memory';
    return {
      node: best.name,
      reason: `fewest processes${where}: ${best.name} runs ${best.processes}${others ? ` (${others})` : ''}${mem}`,
    };
  },
};
