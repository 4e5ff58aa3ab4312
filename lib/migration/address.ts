// Moving an IP address with the process: delete it on the source node's
// interface, add it on the target's, then tell the neighbours (an announce
// hook, because production networks differ: gratuitous ARP, a cloud API, a
// routing daemon…). Commands run in the caller's network namespace.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { argType } from '../errors.js';
import { integer } from '../validate.js';

const run = promisify(execFile);

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
const IP = /^[0-9A-Fa-f.:]{2,45}$/;

/** Validate a MoveAddress from user or wire input. */
export function checkMoveAddress(v: unknown, name = 'moveAddress'): MoveAddress {
  if (v === null || typeof v !== 'object') throw argType(`${name} must be an object`);
  const o = v as Record<string, unknown>;
  if (typeof o.address !== 'string' || !IP.test(o.address)) throw argType(`${name}.address must be an IP address`);
  const max = o.address.includes(':') ? 128 : 32;
  const prefix = integer(`${name}.prefix`, o.prefix, 0, max);
  if (typeof o.dev !== 'string' || !IFNAME.test(o.dev)) throw argType(`${name}.dev must be an interface name`);
  if (o.targetDev !== undefined && (typeof o.targetDev !== 'string' || !IFNAME.test(o.targetDev)))
    throw argType(`${name}.targetDev must be an interface name`);
  return { address: o.address, prefix, dev: o.dev, ...(o.targetDev !== undefined ? { targetDev: o.targetDev } : {}) };
}

async function ip(args: string[]): Promise<void> {
  try {
    await run('ip', args, { timeout: 10_000 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`);
  }
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

/** The default announce: unsolicited ARP with arping when installed (IPv4), else nothing. */
export const defaultAnnounce: Announce = async (a) => {
  const arping = which('arping');
  if (!arping || a.address.includes(':')) return;
  await run(arping, ['-U', '-c', '1', '-I', a.dev, a.address], { timeout: 5000 }).catch(() => undefined);
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
  const v6 = address.includes(':');
  const table = `sos_hold_${process.pid}_${holds++}`;
  const nft = async (...args: string[]) => {
    try {
      await run('nft', args, { timeout: 10_000 });
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      throw new Error(`nft ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`);
    }
  };
  await nft('add', 'table', 'inet', table);
  try {
    await nft('add', 'chain', 'inet', table, 'in', '{ type filter hook input priority -300; policy accept; }');
    await nft('add', 'rule', 'inet', table, 'in', v6 ? 'ip6' : 'ip', 'daddr', address, 'drop');
  } catch (e) {
    await nft('delete', 'table', 'inet', table).catch(() => undefined);
    throw e;
  }
  let released: Promise<void> | undefined;
  return () => (released ??= nft('delete', 'table', 'inet', table).catch(() => undefined));
}

/** Delete the address holds (nftables tables) of processes that are gone: an agent killed mid-restore leaves its hold. */
export async function releaseStaleHolds(): Promise<string[]> {
  let out: string;
  try {
    out = (await run('nft', ['list', 'tables'], { timeout: 10_000 })).stdout;
  } catch {
    return [];
  }
  const gone: string[] = [];
  for (const m of out.matchAll(/^table inet (sos_hold_(\d+)_\d+)$/gm)) {
    if (Number(m[2]) === process.pid || fs.existsSync(`/proc/${m[2]}`)) continue;
    await run('nft', ['delete', 'table', 'inet', m[1]], { timeout: 10_000 }).then(
      () => gone.push(m[1]),
      () => undefined,
    );
  }
  return gone;
}
