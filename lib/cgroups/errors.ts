// The cgroup layer's errors: SosErrors with the errno name as code, the call and the file.
import { SosError, errnoName } from '../errors.js';

/**
 * A cgroup operation failed. `code` is the errno name of the failed call (`ENOENT`, `EBUSY`,
 * `EACCES`, `EINVAL`, `EEXIST`…) with `errno` (negative, as in Node), `syscall` (`mkdir`, `write`,
 * `rmdir`…) and `path` (the cgroup file or folder); or `ERR_CGROUP_UNSUPPORTED` (the controller a
 * limit or reading needs is not available to this group), `ERR_NO_CGROUPS` (no cgroup file system
 * is mounted), `ETIMEDOUT` (a group did not empty in time).
 */
export class CgroupError extends SosError {
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

/** A failed fs call on `path` as a CgroupError (its errno name as code). */
export function cgroupError(e: unknown, syscall: string, path: string, what: string): CgroupError {
  const err = e as NodeJS.ErrnoException;
  const errno = typeof err?.errno === 'number' ? err.errno : undefined;
  const code = err?.code ?? (errno !== undefined ? errnoName(-errno) : undefined) ?? 'EIO';
  return new CgroupError(`${what}: ${code} (${syscall} ${path})`, { code, errno, syscall, path, cause: e });
}
