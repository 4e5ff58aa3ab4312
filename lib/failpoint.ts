// Crash points for the failure tests (like etcd's gofail): SOS_FAILPOINTS=name[=stop][,…] in an
// agent's environment makes it SIGKILL itself (or, with =stop, SIGSTOP: a hung peer) when it
// reaches one of them, at exactly the step a crash is hard to time from outside. Unset (always,
// in production), they cost one lookup.
const armed = new Map(
  (process.env.SOS_FAILPOINTS ?? '')
    .split(',')
    .filter(Boolean)
    .map((f) => [f.split('=')[0], f.endsWith('=stop') ? ('SIGSTOP' as const) : ('SIGKILL' as const)]),
);

/** The crash points: where each sits is in the comment beside its call. */
export type Failpoint =
  | 'target-committed'
  | 'source-started'
  | 'source-in-pre-dump'
  | 'source-in-post-dump'
  | 'source-committing'
  | 'source-commit-sent'
  | 'orchestrator-restore-recorded'
  | 'orchestrator-migrate-recorded';

/** Die (or hang) here if the environment asks for it. */
export function failpoint(name: Failpoint): void {
  const signal = armed.get(name);
  if (signal) process.kill(process.pid, signal);
}
