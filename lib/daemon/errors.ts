// The errors of the node daemon's local API.
import { SosError } from '../errors.js';

/**
 * A request frame the daemon cannot serve: `ERR_FRAME_TOO_LARGE`, `ERR_BAD_JSON`, `ERR_BAD_FRAME`,
 * `ERR_VERSION`, `ERR_UNKNOWN_OP`, `ERR_BAD_ARGS` (its args do not fit the op's schema: the message names
 * the field, "args.pid must be integer"); `id` is the request's id when it could be read.
 */
export class FrameError extends SosError {
  constructor(
    code: string,
    message: string,
    readonly id: number | null = null,
  ) {
    super(message, { code });
  }
}

/**
 * A request to sosd failed: the daemon's own error code (e.g. `ERR_UNKNOWN_OP`, `ERR_BAD_ARGS`, the op's
 * own code, `ERR_INTERNAL` for a failure that is not a SosError), `ETIMEDOUT`
 * when it did not answer in time, the socket's errno name (`ENOENT`, `ECONNREFUSED`…) when it
 * cannot be reached, `ERR_BAD_FRAME` when its answer cannot be read.
 */
export class DaemonError extends SosError {}

/**
 * sosd cannot serve on its socket path: `ERR_SOCKET_NOT_SOCKET` (something else is there, left untouched),
 * `ERR_SOCKET_IN_USE` (a daemon answers there), `ERR_SOCKET_MODE` (the socket came out readable by others),
 * or the errno name of the failed call (`EACCES`, `EADDRINUSE`…). `path` is the socket path, or `HOST:PORT`
 * when it is the HTTP listener (`/metrics`, `/healthz`) that cannot listen.
 */
export class ListenError extends SosError {
  constructor(
    message: string,
    readonly path: string,
    options: { code: string; cause?: unknown },
  ) {
    super(message, options);
  }
}
