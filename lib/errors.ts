/**
 * The error family of ServerlessOS. Every error has a stable `code`; errors
 * from a failed system call also carry `errno` (negative, as in Node) and the
 * `syscall` that failed.
 */
export class SosError extends Error {
  readonly code: string;
  constructor(message: string, props: { code: string }) {
    super(message);
    this.name = new.target.name;
    this.code = props.code;
  }
}

/** A system call or ioctl failed: `code` is the errno name (EINVAL, EEXIST…). */
export class SystemError extends SosError {
  readonly errno: number;
  readonly syscall: string;
  /** For partial range operations: bytes done before the failure. */
  bytes?: number;
  constructor(message: string, props: { code: string; errno: number; syscall: string }) {
    super(message, props);
    this.errno = props.errno;
    this.syscall = props.syscall;
  }
}

/**
 * An operation that the object's state forbids: `ERR_CLOSED` (use after
 * close), `ERR_BUSY`, `ERR_DEADLOCK`, `ERR_NOT_REGION`, `ERR_UNMAPPED`,
 * `ERR_PROTECTED`, `ERR_NO_API`, `ERR_API_DONE`, `ERR_RUNNING`, `ERR_UNSUPPORTED`, `ERR_TOO_LARGE`.
 */
export class StateError extends SosError {}

/** Node-style argument errors: TypeError/RangeError with `code`. */
export function argType(message: string): TypeError {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_TYPE' });
}
export function argRange(message: string): RangeError {
  return Object.assign(new RangeError(message), { code: 'ERR_OUT_OF_RANGE' });
}
