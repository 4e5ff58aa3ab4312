// The addresses a node lets move with a process (sosd's --move-ranges): a list of CIDR blocks,
// IPv4 and IPv6. An address outside them never moves, whoever asks: a source does not delete it,
// a target does not take it. Checked with node's net.BlockList (prefix matching done by node).
import net from 'node:net';
import { argValue } from '../errors.js';

// BlockList matches an IPv4-mapped IPv6 address (::ffff:a.b.c.d) against IPv4 blocks: such an
// address is another address on an interface, so it never counts as inside an IPv4 range.
const mapped = new net.BlockList();
mapped.addSubnet('::ffff:0:0', 96, 'ipv6');

export class AddressRanges {
  private readonly list = new net.BlockList();

  private constructor(readonly ranges: readonly string[]) {
    for (const r of ranges) {
      const [address, prefix] = r.split('/');
      const type = net.isIP(address) === 6 ? 'ipv6' : 'ipv4';
      this.list.addSubnet(address, Number(prefix), type);
    }
  }

  /** No address moves. */
  static readonly none = new AddressRanges([]);

  /** `CIDR[,CIDR…]` (10.1.2.128/25,fd00:1::/64); '' is none. Throws ERR_INVALID_ARG_VALUE naming the bad entry. */
  static parse(text: string): AddressRanges {
    const entries = text
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (entries.length > 256) throw argValue('at most 256 address ranges');
    for (const r of entries) {
      const m = /^([^/]+)\/(\d{1,3})$/.exec(r);
      const family = m ? net.isIP(m[1]) : 0;
      if (!m || !family || Number(m[2]) > (family === 6 ? 128 : 32))
        throw argValue(`'${r}' is not an address range (CIDR: 10.1.2.128/25 or fd00:1::/64)`);
    }
    return new AddressRanges(entries);
  }

  get empty(): boolean {
    return this.ranges.length === 0;
  }

  /** Whether `address` lies in one of the ranges. */
  has(address: string): boolean {
    const family = net.isIP(address);
    if (!family || (family === 6 && mapped.check(address, 'ipv6'))) return false;
    return this.list.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }

  /** Why `address` may not move here, or null when it may. */
  refusal(address: string, node: string): string | null {
    if (this.has(address)) return null;
    return this.empty
      ? `${node} lets no address move (its sosd has no --move-ranges)`
      : `${address} is outside ${node}'s move ranges (${this.ranges.join(', ')})`;
  }

  toString(): string {
    return this.ranges.join(',');
  }
}
