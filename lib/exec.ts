// One way to run a helper program (ip, nft, nsenter…): off the event loop, with a time
// limit, and failing with an ExecError that quotes the command and its stderr.
import { execFile } from 'node:child_process';
import { SosError } from './errors.js';

export interface ExecOptions {
  /** Kill the program after this many ms (default 10 000). */
  timeout?: number;
  /** Run it inside this network namespace (a name under /run/netns) through nsenter. */
  netns?: string;
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
}

/** A helper program failed: `ERR_EXEC`, with the command, its exit code and its stderr. */
export class ExecError extends SosError {
  readonly command: string;
  readonly exitCode: number | null;
  readonly stderr: string;
  constructor(command: string, exitCode: number | null, stderr: string, cause: unknown) {
    const why = stderr.trim() || (cause instanceof Error ? cause.message : String(cause));
    super(`${command}: ${why}`, { code: 'ERR_EXEC', cause });
    this.command = command;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/** Run `file args…` and resolve with its stdout. */
export function exec(file: string, args: readonly string[], options: ExecOptions = {}): Promise<string> {
  const argv = options.netns ? [`--net=/run/netns/${options.netns}`, file, ...args] : [...args];
  const bin = options.netns ? 'nsenter' : file;
  const command = [file, ...args].join(' ');
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      argv,
      { timeout: options.timeout ?? 10_000, env: options.env, signal: options.signal, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const code = (err as { code?: unknown }).code;
        reject(new ExecError(command, typeof code === 'number' ? code : null, String(stderr ?? ''), err));
      },
    );
  });
}
