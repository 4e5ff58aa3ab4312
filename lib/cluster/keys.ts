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
