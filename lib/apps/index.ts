/**
 * The workloads of a node: each application process as pid 1 of its own PID namespace, in its own
 * cgroup, its stdout and stderr in files, its record durable, re-adopted by a restarted sosd.
 * docs/apps.md has the API, the state folder and what survives a restart.
 * @packageDocumentation
 */
export {
  Workloads,
  type WorkloadsOptions,
  type RunOptions,
  type LogsOptions,
  type Logs,
  type Logger,
  type WorkloadsEvents,
  type Arrival,
  type ArrivalOptions,
  type MoveMarker,
} from './workloads.js';
export type { WorkloadRecord } from './record.js';
export type { Stream } from './logs.js';
export { AppError } from './errors.js';
export { APP_NAME } from './names.js';
