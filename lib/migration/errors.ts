// The error a migration fails with: which step failed and where the process runs now.
import { SosError } from '../errors.js';

/** Steps of a migration, in order. */
export type MigrationStep =
  'validate' | 'connect' | 'accept' | 'dump' | 'address' | 'transfer' | 'restore' | 'commit' | 'pages' | 'cleanup';

/** Where the migrated process runs after a failure: 'source' (resumed there, never left),
 *  'target' (resumed there; the failure came after), 'stopped-source' (in doubt: the source
 *  copy is kept stopped, nothing runs), 'none' (lost: post-copy after resume). */
export type RunningOn = 'source' | 'target' | 'stopped-source' | 'none';

/**
 * Codes: ERR_MIGRATION (a step failed; see `step`, `runningOn`, `cause`),
 * ERR_MIGRATION_REFUSED (the target refused), ERR_NO_PROCESS (unknown pid),
 * ERR_MIGRATION_IN_DOUBT (the outcome could not be learnt: the source is kept stopped),
 * ERR_MIGRATION_PAGES (post-copy's page transfer broke after the target resumed: the target's
 * copy is killed, the source's stale copy kept stopped). requestMigration() that cannot reach the
 * source agent: step 'connect' with the channel's code (ERR_AUTH when the secrets do not match,
 * ECONNREFUSED…) and the ChannelError as `cause`.
 */
export class MigrationError extends SosError {
  readonly step: MigrationStep;
  readonly runningOn: RunningOn;
  /** The process's pid where it runs now (source pid, or the restored pid on the target). */
  readonly pid?: number;
  constructor(
    message: string,
    props: { code?: string; step: MigrationStep; runningOn: RunningOn; pid?: number; cause?: unknown },
  ) {
    super(message, { code: props.code ?? 'ERR_MIGRATION', cause: props.cause });
    this.step = props.step;
    this.runningOn = props.runningOn;
    if (props.pid !== undefined) this.pid = props.pid;
  }
}

/** The target reported that a step failed there: `code` and `step` are the target's. */
export class TargetFailedError extends SosError {
  readonly step: string;
  constructor(step: string, message: string, code = 'ERR_MIGRATION') {
    super(`target ${step} failed: ${message}`, { code });
    this.step = step;
  }
}

/** The connection dropped after the commit and the target could not be asked: `ERR_MIGRATION_IN_DOUBT`. */
export class InDoubtError extends SosError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 'ERR_MIGRATION_IN_DOUBT', cause });
  }
}

/** A short description of any thrown value. */
export function describe(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    const cause = (e as { cause?: unknown }).cause;
    const own = typeof code === 'string' ? `${code}: ${e.message}` : e.message;
    return cause instanceof Error && !e.message.includes(cause.message) ? `${own} (${describe(cause)})` : own;
  }
  return String(e);
}
