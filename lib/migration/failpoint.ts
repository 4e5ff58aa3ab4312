// Crash points for the failure tests (like etcd's gofail): SOS_FAILPOINTS=name[,name…] in an
// agent's environment makes it SIGKILL itself when it reaches one of them, at exactly the
// step a crash is hard to time from outside. Unset (always, in production), they cost one lookup.
const armed = new Set((process.env.SOS_FAILPOINTS ?? '').split(',').filter(Boolean));

/** The crash points: where each sits is in the comment beside its call. */
export type Failpoint = 'target-committed' | 'source-in-post-dump' | 'source-committing' | 'source-commit-sent';

/** Die here (SIGKILL, no cleanup) if the environment asks for it. */
export function failpoint(name: Failpoint): void {
  if (armed.has(name)) process.kill(process.pid, 'SIGKILL');
}
