// The error CRIU calls fail with.
import { SosError } from '../errors.js';

/** Codes: ERR_CRIU (CRIU reported a failure), ERR_CRIU_NOT_FOUND (no criu binary),
 *  ERR_CRIU_EXITED (CRIU died without an answer), ERR_CRIU_PROTOCOL (an answer we cannot
 *  read), ERR_CRIU_HOOK (a hook threw: see `cause`), ERR_CRIU_IMAGES (image files missing or corrupt),
 *  ERR_CRIU_UNSUPPORTED (kernel/CRIU lacks a feature the options need, or the pid is a kernel
 *  thread), ERR_CRIU_PID_BUSY (a restore needs a PID that is in use), ERR_NO_PROCESS (a dump of a pid
 *  that does not exist). */
export type CriuErrorCode =
  | 'ERR_CRIU'
  | 'ERR_CRIU_NOT_FOUND'
  | 'ERR_CRIU_EXITED'
  | 'ERR_CRIU_PROTOCOL'
  | 'ERR_CRIU_HOOK'
  | 'ERR_CRIU_IMAGES'
  | 'ERR_CRIU_UNSUPPORTED'
  | 'ERR_CRIU_PID_BUSY'
  | 'ERR_NO_PROCESS';

export interface CriuErrorProps {
  code: CriuErrorCode;
  op: string;
  criuErrno?: number;
  criuMessage?: string;
  logFile?: string;
  logTail?: string;
  exitCode?: number | null;
  cause?: unknown;
}

/** A CRIU operation failed. Carries CRIU's own message and errno when it sent them,
 *  the log file's path and its last lines. */
export class CriuError extends SosError {
  declare readonly code: CriuErrorCode;
  readonly op: string;
  declare readonly criuErrno?: number;
  declare readonly criuMessage?: string;
  declare readonly logFile?: string;
  declare readonly logTail?: string;
  declare readonly exitCode?: number | null;
  constructor(message: string, props: CriuErrorProps) {
    super(message, { code: props.code });
    this.op = props.op;
    if (props.criuErrno !== undefined) this.criuErrno = props.criuErrno;
    if (props.criuMessage !== undefined) this.criuMessage = props.criuMessage;
    if (props.logFile !== undefined) this.logFile = props.logFile;
    if (props.logTail !== undefined) this.logTail = props.logTail;
    if (props.exitCode !== undefined) this.exitCode = props.exitCode;
    if (props.cause !== undefined) (this as { cause?: unknown }).cause = props.cause;
  }
}
