import { setTimeout as pause } from 'node:timers/promises';
import { SosError } from '../errors.js';

/** What says etcd, or this member's lease, is not there right now (etcd restarting, a lease renewed again). */
const TRANSIENT = new Set(['ERR_ETCD_UNAVAILABLE', 'ERR_FENCED', 'ERR_LEASE_LOST']);

/**
 * Run `fn` until etcd lets it finish. A daemon whose start-up reads or writes etcd (after it joined)
 * may meet etcd restarting under it: it waits for the cluster rather than exit. A transient error
 * (above) is reported to `onRetry` and `fn` runs again after a pause growing from 100 ms to 2 s;
 * any other error is thrown. `fn` must be safe to run again after it failed.
 */
export async function untilEtcdAnswers<T>(fn: () => Promise<T>, onRetry: (e: SosError) => void): Promise<T> {
  for (let wait = 100; ; wait = Math.min(wait * 2, 2000)) {
    try {
      return await fn();
    } catch (e) {
      if (!(e instanceof SosError) || !TRANSIENT.has(e.code)) throw e;
      onRetry(e);
      await pause(wait);
    }
  }
}
