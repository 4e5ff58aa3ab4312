import { SosError } from '../errors.js';

/**
 * The orchestrator refused or could not act: `ERR_FENCED` (an action of a term that is not the current
 * leader's: a deposed leader), `ERR_BAD_ARGS` (a request that does not fit its schema), `ERR_BAD_RECORD`.
 */
export class OrchestratorError extends SosError {}
