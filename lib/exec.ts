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
  /** Most bytes of stdout or stderr kept (default 64 MiB). */
  maxBuffer?: number;
}

/** What a program printed. */
export interface ExecOutput {
  stdout: string;
  stderr: string;
}

/** A helper program failed: `ERR_EXEC`, with the command, how it ended and what it printed. */
export class ExecError extends SosError {
  readonly command: string;
  /** Its exit code; null when it was killed (see `signal`) or could not start. */
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  constructor(
    command: string,
    how: { exitCode: number | null; signal: string | null },
    out: ExecOutput,
    cause: unknown,
  ) {
    const why = out.stderr.trim() || (cause instanceof Error ? cause.message : String(cause));
    super(`${command}: ${why}`, { code: 'ERR_EXEC', cause });
    this.command = command;
    this.exitCode = how.exitCode;
    this.signal = how.signal;
    this.stdout = out.stdout;
    this.stderr = out.stderr;
  }
}

/** Run `file args…` and resolve with its stdout. */
export async function exec(file: string, args: readonly string[], options: ExecOptions = {}): Promise<string> {
  return (await execOutput(file, args, options)).stdout;
}

/** Run `file args…` and resolve with its stdout and stderr. */
export function execOutput(file: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecOutput> {
  const argv = options.netns ? [`--net=/run/netns/${options.netns}`, file, ...args] : [...args];
  const bin = options.netns ? 'nsenter' : file;
  const command = [file, ...args].join(' ');
  const { timeout = 10_000, env, signal, maxBuffer = 64 << 20 } = options;
  return new Promise((resolve, reject) => {
    execFile(bin, argv, { timeout, env, signal, maxBuffer }, (err, stdout, stderr) => {
      const out = { stdout: String(stdout ?? ''), stderr: String(stderr ?? '') };
      if (!err) return resolve(out);
      const { code, signal: killed } = err as { code?: unknown; signal?: unknown };
      const how = {
        exitCode: typeof code === 'number' ? code : null,
        signal: typeof killed === 'string' ? killed : null,
      };
      reject(new ExecError(command, how, out, err));
    });
  });
}
