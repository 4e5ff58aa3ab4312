export {
  Orchestrator,
  type OrchestratorOptions,
  type OrchestratorEvents,
  type OrchestratorLogger,
  type MigrationResult,
} from './orchestrator.js';
export {
  requestMigration,
  recordWanted,
  listWanted,
  readWanted,
  parseWanted,
  sourceOutcome,
  type MigrationRequest,
  type MigrationState,
  type WantedMigration,
  type WantedEntry,
} from './migrations.js';
export { Election, type ElectionOptions, type ElectionEvents } from './election.js';
export { checkFence, currentLeader, fenceCompare, FENCE_SCHEMA, type Fence, type LeaderRecord } from './fence.js';
export {
  submit,
  listDesired,
  readDesired,
  removeDesired,
  parseSpec,
  REQUEST_SCHEMA,
  type ProcessRequest,
  type FarRequest,
  type ProcessSpec,
  type Limits,
} from './desired.js';
export {
  recordAction,
  recordDecision,
  readAction,
  listActions,
  listDecisions,
  pruneDecisions,
  parseAction,
  parseDecision,
  type Action,
  type ActionEntry,
  type ActionState,
  type Decision,
  type DecisionKind,
} from './actions.js';
export { fewestProcesses, type Candidate, type PlacementChoice, type PlacementPolicy } from './placement.js';
export { OrchestratorError } from './errors.js';
