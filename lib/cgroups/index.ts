/**
 * cgroups v1 and v2 behind one interface: a group per application process, processes placed in
 * it, limits (memory, cpu quota, pids), usage, and kill-and-remove. docs/cgroups.md maps each
 * operation to its v1 and v2 files.
 * @packageDocumentation
 */
export {
  Cgroups,
  Cgroup,
  type CgroupsOptions,
  type CgroupLimits,
  type CgroupUsage,
  type CgroupDescription,
} from './cgroups.js';
export { CgroupError } from './errors.js';
export {
  detectLayout,
  layoutOf,
  parseMountinfo,
  parseProcCgroup,
  V1_CONTROLLERS,
  type CgroupLayout,
  type Hierarchy,
} from './mounts.js';
