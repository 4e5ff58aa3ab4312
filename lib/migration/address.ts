// Moving an IP address with the process: delete it on the source node's
// interface, add it on the target's, then tell the neighbours (an announce
// hook, because production networks differ: gratuitous ARP, a cloud API, a
// routing daemon…). Commands run in the caller's network namespace.
import fs from 'node:fs';
import net from 'node:net';
import { argType } from '../errors.js';
import { exec } from '../exec.js';
import { deleteTable, dropTo, listTables } from '../net/nft.js';
import { integer } from '../validate.js';

/** An address that moves with the process. */
export interface MoveAddress {
  /** IPv4 or IPv6 address, without prefix. */
  address: string;
  /** Prefix length on the interface (e.g. 24). */
  prefix: number;
  /** Interface on the source node. */
  dev: string;
  /** Interface on the target node (default: `dev`). */
  targetDev?: string;
}

/** Called on the target after the address was added there. */
export type Announce = (a: { address: string; prefix: number; dev: string }) => Promise<void>;

const IFNAME = /^[A-Za-z0-9_.:@-]{1,15}$/;

/** Validate a MoveAddress from user or wire input. */
export function checkMoveAddress(v: unknown, name = 'moveAddress'): MoveAddress {
  if (v === null || typeof v !== 'object') throw argType(`${name} must be an object`);
  const o = v as Record<string, unknown>;
  if (typeof o.address !== 'string' || net.isIP(o.address) === 0)
    throw argType(`${name}.address must be an IP address`);
  const max = o.address.includes(':') ? 128 : 32;
  const prefix = integer(`${name}.prefix`, o.prefix, 0, max);
  if (typeof o.dev !== 'string' || !IFNAME.test(o.dev)) throw argType(`${name}.dev must be an interface name`);
  if (o.targetDev !== undefined && (typeof o.targetDev !== 'string' || !IFNAME.test(o.targetDev)))
    throw argType(`${name}.targetDev must be an interface name`);
  return { address: o.address, prefix, dev: o.dev, ...(o.targetDev !== undefined ? { targetDev: o.targetDev } : {}) };
}

async function ip(args: string[]): Promise<void> {
  await exec('ip', args);
}

/** Add `address/prefix` on `dev` (nodad for IPv6 so it is usable at once). */
export async function addAddress(a: { address: string; prefix: number; dev: string }): Promise<void> {
  await ip(['addr', 'add', `${a.address}/${a.prefix}`, 'dev', a.dev, ...(a.address.includes(':') ? ['nodad'] : [])]);
}

/** Delete `address/prefix` from `dev`; resolves false if it was not there. */
export async function deleteAddress(a: { address: string; prefix: number; dev: string }): Promise<boolean> {
  try {
    await ip(['addr', 'del', `${a.address}/${a.prefix}`, 'dev', a.dev]);
    return true;
  } catch (e) {
    if (/Cannot assign requested address|ENOENT|not found/i.test((e as Error).message)) return false;
    throw e;
  }
}

function which(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    try {
      fs.accessSync(`${dir}/${cmd}`, fs.constants.X_OK);
      return `${dir}/${cmd}`;
    } catch {
      // next
    }
  }
  return null;
}

/**
 * The default announce: unsolicited ARP with arping when installed (IPv4), else nothing. Not
 * awaited: arping sends at once but lingers a second for replies, and this runs inside the downtime.
 */
export const defaultAnnounce: Announce = (a) => {
  const arping = which('arping');
  if (arping && !a.address.includes(':'))
    void exec(arping, ['-U', '-c', '1', '-I', a.dev, a.address], { timeout: 5000 }).catch(() => undefined);
  return Promise.resolve();
};

/** An announce that flushes the neighbour caches of the given namespaces (test networks on one machine). */
export function flushNeighbours(namespaces: string[]): Announce {
  return async () => {
    for (const ns of namespaces) await ip(['-n', ns, 'neigh', 'flush', 'all']);
  };
}

let holds = 0;

/**
 * Drop every packet to `address` arriving in this namespace until the returned
 * function runs. The target holds the address this way while it restores: a
 * peer's segment arriving before the restored socket exists would otherwise
 * be answered with a RST and end the connection.
 */
export async function holdAddress(address: string): Promise<() => Promise<void>> {
  return dropTo(address, `sos_hold_${process.pid}_${holds++}`);
}

/** Delete the address holds (nftables tables) of processes that are gone: an agent killed mid-restore leaves its hold. */
export async function releaseStaleHolds(): Promise<string[]> {
  const gone: string[] = [];
  for (const t of await listTables()) {
    const m = /^sos_hold_(\d+)_\d+$/.exec(t.name);
    if (t.family !== 'inet' || !m || Number(m[1]) === process.pid || fs.existsSync(`/proc/${m[1]}`)) continue;
    await deleteTable(t);
    gone.push(t.name);
  }
  return gone;
}
