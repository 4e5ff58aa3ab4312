// The workload library's errors: one class, a stable code, and for a failed call its errno name,
// the call and the file or pid it was about.
import { SosError, errnoName } from '../errors.js';

/**
 * A workload operation failed. `code` is one of `ERR_BAD_APP_NAME`, `ERR_APP_NOT_FOUND` (no such
 * app and id), `ERR_APP_RUNNING` (remove of a running workload), `ERR_APP_EXITED` (kill of one that
 * exited), `ERR_APP_START` (the supervisor or the namespace init failed before the program ran: the
 * message quotes its stderr), `ERR_STATE_LOCKED` (a live process has the state folder open),
 * `ERR_BAD_RECORD` (a record file that does not parse), `ERR_CLOSED`; or the errno name of a failed
 * call (`ENOENT` from `execve` for a program not found, `ESRCH` from `kill`…) with `errno`,
 * `syscall` and `path`.
 */
export class AppError extends SosError {
  readonly errno?: number;
  readonly syscall?: string;
  readonly path?: string;
  constructor(
    message: string,
    options: { code: string; errno?: number; syscall?: string; path?: string; cause?: unknown },
  ) {
    super(message, options);
    if (options.errno !== undefined) this.errno = options.errno;
    if (options.syscall !== undefined) this.syscall = options.syscall;
    if (options.path !== undefined) this.path = options.path;
  }
}

/** A failed Node call as an AppError with its errno name as code. */
export function callError(e: unknown, syscall: string, path: string, what: string): AppError {
  const err = e as NodeJS.ErrnoException;
  const errno = typeof err?.errno === 'number' ? err.errno : undefined;
  const code = err?.code ?? (errno !== undefined ? errnoName(-errno) : undefined) ?? 'EIO';
  return new AppError(`${what}: ${code} (${syscall} ${path})`, { code, errno, syscall, path, cause: e });
}
