// Where criu is, and the environment every CRIU process gets: probed once,
// applied by the library (CRIU_FAULT=130 where debug breakpoints never fire).
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CriuError } from './errors.js';
import { exec, type ExecError } from '../exec.js';

const DEFAULT_CRIU = '/usr/local/sbin/criu';
/** CRIU's fault-injection code that replaces debug-register breakpoints by int3 traps. */
export const FAULT_NO_BREAKPOINTS = 130;

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The criu binary: the given path, else /usr/local/sbin/criu, else `criu` on PATH; null if none. */
export function findCriu(given?: string): string | null {
  if (given !== undefined) return executable(given) ? given : null;
  if (executable(DEFAULT_CRIU)) return DEFAULT_CRIU;
  for (const d of (process.env.PATH ?? '').split(':')) {
    if (d && executable(path.join(d, 'criu'))) return path.join(d, 'criu');
  }
  return null;
}

export function requireCriu(op: string, given?: string): string {
  const p = findCriu(given);
  if (!p) {
    throw new CriuError(
      `${op}: criu not found (${given ?? `${DEFAULT_CRIU} or PATH`}); scripts/setup-host.sh installs it`,
      { code: 'ERR_CRIU_NOT_FOUND', op },
    );
  }
  return p;
}

// dist/lib/criu → the package root, where node-gyp put the probe.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const PROBE = ['build/Release/criu_hwbp_probe', 'build/Debug/criu_hwbp_probe'].map((p) => path.join(root, p));

export interface HwProbe {
  hwBreakpoints: boolean;
  detail: string;
}
let hw: Promise<HwProbe> | undefined;

/** Run the debug-breakpoint probe (once; `refresh` runs it again). */
export function probeHwBreakpoints(refresh = false): Promise<HwProbe> {
  if (hw && !refresh) return hw;
  hw = new Promise((resolve) => {
    const exe = PROBE.find(executable);
    if (!exe) {
      resolve({ hwBreakpoints: false, detail: 'the criu_hwbp_probe executable is not built (npm run build)' });
      return;
    }
    // The probe reports on stdout even when it exits non-zero.
    const report = (line: string, err?: ExecError) => {
      const m = /^hwbp=(yes|no|error)\s*(.*)$/.exec(line);
      if (m?.[1] === 'yes') resolve({ hwBreakpoints: true, detail: 'a debug-register breakpoint trapped' });
      else resolve({ hwBreakpoints: false, detail: m ? m[2] || m[1] : `probe failed: ${err?.message ?? line}` });
    };
    exec(exe, []).then(
      (out) => report(out.trim()),
      (e: ExecError) => report(e.stdout.trim(), e),
    );
  });
  return hw;
}

/** The environment for a CRIU process given what the probe found: `base`, plus CRIU_FAULT=130
 *  when breakpoints do not fire (a CRIU_FAULT already in `base` is kept as it is). */
export function faultEnv(
  hwBreakpoints: boolean,
  base: NodeJS.ProcessEnv,
): { env: NodeJS.ProcessEnv; faultInjection: number | null } {
  const env = { ...base };
  if (env.CRIU_FAULT !== undefined) return { env, faultInjection: Number(env.CRIU_FAULT) || null };
  if (hwBreakpoints) return { env, faultInjection: null };
  env.CRIU_FAULT = String(FAULT_NO_BREAKPOINTS);
  return { env, faultInjection: FAULT_NO_BREAKPOINTS };
}

/** The environment every CRIU process of this library gets (probe once, then apply). */
export async function criuEnv(): Promise<{ env: NodeJS.ProcessEnv; faultInjection: number | null }> {
  const { hwBreakpoints } = await probeHwBreakpoints();
  return faultEnv(hwBreakpoints, process.env);
}
