/**
 * The value parsers of agent-main.js's options. Each takes the option's text and returns its value or throws
 * commander's InvalidArgumentError with what a valid value looks like; commander turns that into
 * "option '--port <port>' argument '70000' is invalid. …" and agent-main exits 2.
 */
import net from 'node:net';
import { InvalidArgumentError } from 'commander';
import type { MoveAddress } from './address.js';

// Linux: IFNAMSIZ is 16 with the NUL; a name is neither '.' nor '..' and has no '/' or white space.
const IFNAME = /^[A-Za-z0-9_.:@-]{1,15}$/;
// RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
// ip-netns(8) names are files under /run/netns.
const NETNS = /^[A-Za-z0-9_.-]{1,255}$/;
// The kernel's PID_MAX_LIMIT on 64-bit.
const PID_MAX = 4_194_304;
// The longest delay a Node timer keeps (a larger one fires at once).
const TIMER_MAX = 2 ** 31 - 1;

/** A decimal integer in [min, max]: no sign, exponent, hex or fraction. */
export function intIn(min: number, max: number, what = 'an integer'): (s: string) => number {
  return (s) => {
    const n = /^\d{1,16}$/.test(s) ? Number(s) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`must be ${what} in ${min}..${max}`);
    return n;
  };
}

/** A TCP port to listen on: 0 (any free one) to 65535. */
export const listenPort = intIn(0, 65535, 'a port number');

/** A process id: a positive integer up to the kernel's limit. */
export const pid = intIn(1, PID_MAX, 'a process id (a positive integer)');

/** The agent's idle timeout: at least 100 ms, at most what a timer keeps. */
export const idleTimeoutMs = intIn(100, TIMER_MAX, 'a number of milliseconds');
/** --in-doubt-ms, --wait-ms. */
export const inDoubtMs = intIn(0, TIMER_MAX, 'a number of milliseconds');

/** --id: a migration id. */
export function migrationId(s: string): string {
  if (!/^[0-9a-f]{32}$/.test(s)) throw new InvalidArgumentError('must be a migration id (32 hex digits)');
  return s;
}

/** An IP address or a host name. */
export function host(s: string): string {
  if (net.isIP(s) || HOSTNAME.test(s)) return s;
  throw new InvalidArgumentError('must be an IP address or a host name');
}

/** HOST:PORT with an IPv4 address, a host name or a bracketed IPv6 address ([::1]:7070), port 1..65535. */
export function hostPort(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s);
  const h = m?.[1] ?? m?.[2];
  const valid = m && (m[1] !== undefined ? net.isIPv6(m[1]) : net.isIPv4(m[2]) || HOSTNAME.test(m[2]));
  const port = m ? Number(m[3]) : 0;
  if (!valid || !h || port < 1 || port > 65535)
    throw new InvalidArgumentError('must be HOST:PORT (10.0.0.2:7070, node-b:7070 or [fd00::2]:7070), port 1..65535');
  return { host: h, port };
}

/** ADDR/PREFIX@DEV[@TARGETDEV]: an IPv4 or IPv6 address, its prefix length, the source's and the target's interface. */
export function moveAddress(s: string): MoveAddress {
  const form = 'must be ADDR/PREFIX@DEV[@TARGETDEV] (10.0.0.100/24@eth0 or fd00::100/64@eth0@eth1)';
  const m = /^([^/@]+)\/(\d{1,3})@([^@]+)(?:@([^@]+))?$/.exec(s);
  if (!m) throw new InvalidArgumentError(form);
  const [, address, prefix, dev, targetDev] = m;
  const family = net.isIP(address);
  if (!family) throw new InvalidArgumentError(`${form}: '${address}' is not an IP address`);
  const max = family === 6 ? 128 : 32;
  if (Number(prefix) > max)
    throw new InvalidArgumentError(`${form}: the prefix of an IPv${family} address is 0..${max}`);
  for (const d of [dev, targetDev])
    if (d !== undefined && (!IFNAME.test(d) || d === '.' || d === '..'))
      throw new InvalidArgumentError(`${form}: '${d}' is not an interface name (1 to 15 of A-Z a-z 0-9 _ . : @ -)`);
  return { address, prefix: Number(prefix), dev, ...(targetDev ? { targetDev } : {}) };
}

/** NS[,NS…]: network namespace names (files under /run/netns). */
export function namespaces(s: string): string[] {
  const list = s.split(',');
  for (const ns of list)
    if (!NETNS.test(ns) || ns === '.' || ns === '..')
      throw new InvalidArgumentError(
        `must be NS[,NS…], each a network namespace name (A-Z a-z 0-9 _ . -), got '${ns}'`,
      );
  return list;
}

/** A non-empty text without control characters (it goes into a log line and a reply). */
export function text(s: string): string {
  if (s.length === 0 || /[\x00-\x1f\x7f]/.test(s))
    throw new InvalidArgumentError('must be a non-empty text on one line');
  return s;
}
