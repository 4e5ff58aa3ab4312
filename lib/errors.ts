/**
 * The error family of ServerlessOS. Every error the library throws is a `SosError`
 * (`err instanceof SosError`) with a stable `code`; errors from a failed system call
 * also carry `errno` (negative, as in Node) and the `syscall` that failed.
 *
 * Argument errors keep Node's convention: they are `TypeError`s and `RangeError`s
 * (`ERR_INVALID_ARG_TYPE`, `ERR_INVALID_ARG_VALUE`, `ERR_OUT_OF_RANGE`), and they are
 * SosErrors too, through a brand that `SosError`'s `instanceof` recognises.
 */

import os from 'node:os';

const brand: unique symbol = Symbol.for('serverlessos.SosError');

/** What every error of the family is constructed with. */
export interface SosErrorOptions {
  /** The stable code, e.g. `ERR_CLOSED`, `EINVAL`, `ERR_MIGRATION`. */
  code: string;
  /** The error that led to this one. */
  cause?: unknown;
}

function mark(e: Error, name: string, options: SosErrorOptions): void {
  e.name = name;
  (e as Error & { code: string }).code = options.code;
}

/** Brand a class of the family whose prototype chain does not pass through SosError. */
function brandClass(cls: { prototype: object }): void {
  Object.defineProperty(cls.prototype, brand, { value: true });
}

export class SosError extends Error {
  readonly code: string;
  constructor(message: string, options: SosErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = options.code;
    mark(this, new.target.name, options);
  }

  /** `x instanceof SosError` holds for every error of the family, argument errors included. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this !== SosError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && brand in value;
  }
}
brandClass(SosError);

/** A system call or ioctl failed: `code` is the errno name (EINVAL, EEXIST…). */
export class SystemError extends SosError {
  readonly errno: number;
  readonly syscall: string;
  /** For partial range operations: bytes done before the failure. */
  bytes?: number;
  constructor(message: string, options: SosErrorOptions & { errno: number; syscall: string }) {
    super(message, options);
    this.errno = options.errno;
    this.syscall = options.syscall;
  }
}

/**
 * An operation that the object's state forbids: `ERR_CLOSED` (use after
 * close), `ERR_BUSY`, `ERR_DEADLOCK`, `ERR_NOT_REGION`, `ERR_UNMAPPED`,
 * `ERR_PROTECTED`, `ERR_NO_API`, `ERR_API_DONE`, `ERR_RUNNING`, `ERR_UNSUPPORTED`, `ERR_TOO_LARGE`.
 */
export class StateError extends SosError {}

/** An argument of the wrong type: `ERR_INVALID_ARG_TYPE`. */
export class ArgTypeError extends TypeError {
  readonly code = 'ERR_INVALID_ARG_TYPE';
  constructor(message: string) {
    super(message);
    mark(this, 'TypeError', { code: this.code });
  }
}
brandClass(ArgTypeError);

/** An argument of the right type with a value that is not allowed: `ERR_INVALID_ARG_VALUE`. */
export class ArgValueError extends TypeError {
  readonly code = 'ERR_INVALID_ARG_VALUE';
  constructor(message: string) {
    super(message);
    mark(this, 'TypeError', { code: this.code });
  }
}
brandClass(ArgValueError);

/** A number outside its allowed range: `ERR_OUT_OF_RANGE`. */
export class ArgRangeError extends RangeError {
  readonly code = 'ERR_OUT_OF_RANGE';
  constructor(message: string) {
    super(message);
    mark(this, 'RangeError', { code: this.code });
  }
}
brandClass(ArgRangeError);

/** The operation was aborted through its AbortSignal: `ABORT_ERR`, `name` 'AbortError' as in Node. */
export class AbortError extends SosError {
  constructor(signal?: AbortSignal, message = 'The operation was aborted') {
    super(message, { code: 'ABORT_ERR', cause: signal?.reason });
    this.name = 'AbortError';
  }
}

export function argType(message: string): ArgTypeError {
  return new ArgTypeError(message);
}
export function argValue(message: string): ArgValueError {
  return new ArgValueError(message);
}
export function argRange(message: string): ArgRangeError {
  return new ArgRangeError(message);
}

const errnoNames = new Map<number, string>(Object.entries(os.constants.errno).map(([k, v]) => [v, k]));

/** The name of a (positive) errno value, e.g. 104 -> 'ECONNRESET'; undefined when Node does not know it. */
export function errnoName(errno: number): string | undefined {
  return errnoNames.get(errno);
}
