// What a promise settled to, for tests that compare outcomes: 'resolved', or the SosError's code
// (anything else is rethrown: a plain Error is a bug, not an outcome).
import { SosError } from '../lib/errors.js';

export async function outcomeCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    if (!(e instanceof SosError)) throw e;
    return e.code;
  }
}
