// Checks of what callers name: applications (cluster-wide names), signals, argv, env.
import os from 'node:os';
import { argType, argValue } from '../errors.js';
import { AppError } from './errors.js';

/** An application name: a DNS label (lowercase letters, digits and '-', 1-63, no '-' at either end). */
export const APP_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export function checkApp(app: unknown): string {
  if (typeof app !== 'string') throw argType(`app must be a string, got ${typeof app}`);
  if (!APP_NAME.test(app))
    throw new AppError(
      `bad application name ${JSON.stringify(app)}: 1-63 lowercase letters, digits or '-', not starting or ending with '-'`,
      { code: 'ERR_BAD_APP_NAME' },
    );
  return app;
}

export function checkId(id: unknown): number {
  if (typeof id !== 'number') throw argType(`id must be a number, got ${typeof id}`);
  if (!Number.isSafeInteger(id) || id < 1) throw argValue(`id must be a positive integer, got ${id}`);
  return id;
}

/** A signal name Node knows ('SIGTERM', 'SIGKILL'…). */
export function checkSignal(signal: unknown): NodeJS.Signals {
  if (typeof signal !== 'string') throw argType(`signal must be a signal name, got ${typeof signal}`);
  if (!Object.hasOwn(os.constants.signals, signal)) throw argValue(`unknown signal ${JSON.stringify(signal)}`);
  return signal as NodeJS.Signals;
}

/** The name of the signal whose number is `n`, or null. */
export function signalName(n: number): string | null {
  for (const [k, v] of Object.entries(os.constants.signals)) if (v === n) return k;
  return null;
}

export function checkArgv(argv: unknown): string[] {
  if (!Array.isArray(argv) || argv.length === 0) throw argType('argv must be a non-empty array of strings');
  for (const [i, a] of argv.entries()) {
    if (typeof a !== 'string') throw argType(`argv[${i}] must be a string, got ${typeof a}`);
    if (a.includes('\0')) throw argValue(`argv[${i}] holds a NUL byte`);
  }
  if (argv[0] === '') throw argValue('argv[0] must name a program');
  return [...(argv as string[])];
}

export function checkEnv(env: unknown): Record<string, string> {
  if (env === undefined) return {};
  if (!env || typeof env !== 'object' || Array.isArray(env)) throw argType('env must be an object of strings');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (k === '' || k.includes('=') || k.includes('\0')) throw argValue(`bad env name ${JSON.stringify(k)}`);
    if (typeof v !== 'string') throw argType(`env.${k} must be a string, got ${typeof v}`);
    if (v.includes('\0')) throw argValue(`env.${k} holds a NUL byte`);
    out[k] = v;
  }
  return out;
}
