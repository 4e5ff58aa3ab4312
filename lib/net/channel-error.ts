import { SosError } from '../errors.js';

/**
 * A channel failure: `ERR_AUTH`, `ERR_WEAK_SECRET`, `ERR_BAD_FRAME`, `ERR_FRAME_TOO_LARGE`, `ERR_VERSION`,
 * `ERR_TOO_MANY`, `ERR_CLOSED`, `ETIMEDOUT`, `ECONNRESET`, `ABORT_ERR`.
 */
export class ChannelError extends SosError {}
