/**
 * The cluster's key space in etcd, in one place. Everything lives under `/sos/<cluster>/`:
 *   nodes/<name>       the member's record (JSON), bound to its membership lease
 *   telemetry/<name>   its latest usage figures (JSON), bound to the same lease
 * A node's keys vanish with its lease: a dead node leaves nothing behind.
 */
export const nodeKey = (name: string): string => `nodes/${name}`;
export const telemetryKey = (name: string): string => `telemetry/${name}`;
export const NODES = 'nodes/';
export const TELEMETRY = 'telemetry/';

/** The prefix every key of `cluster` lives under. */
export const clusterPrefix = (cluster: string): string => `/sos/${cluster}/`;

/**
 * The orchestrator's keys (lib/orchestrator):
 *   orchestrator/leader       who leads, bound to the leader's membership lease; its create revision is the term
 *   desired/<app>/<id>        a process the cluster should run (durable: desired state outlives every node)
 *   actions/<app>/<id>        the step the leader took for it, recorded (fenced by its term) before taken
 *   decisions/<time>-<seq>    every decision with its reason, newest kept
 *   migrations-wanted/<id>    a migration asked for, and the leader's step on it (lib/orchestrator/migrations.ts)
 */
export const LEADER = 'orchestrator/leader';
export const DESIRED = 'desired/';
export const ACTIONS = 'actions/';
export const DECISIONS = 'decisions/';
export const desiredKey = (app: string, id: number): string => `${DESIRED}${app}/${id}`;
export const actionKey = (app: string, id: number): string => `${ACTIONS}${app}/${id}`;
