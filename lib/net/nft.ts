// The few nftables operations the project needs: list tables, drop packets to an
// address (a "hold"), delete a table. Driven through the nft program (lib/exec).
import { exec } from '../exec.js';

/** Where to run nft: this namespace (default) or a named one under /run/netns. */
export interface NftScope {
  netns?: string;
}

/** A table, as `nft list tables` names it: family and name. */
export interface NftTable {
  family: string;
  name: string;
}

/** The tables of the namespace; `[]` when nft cannot run. */
export async function listTables(scope: NftScope = {}): Promise<NftTable[]> {
  let out: string;
  try {
    out = await exec('nft', ['list', 'tables'], scope);
  } catch {
    return [];
  }
  return [...out.matchAll(/^table (\S+) (\S+)$/gm)].map((m) => ({ family: m[1], name: m[2] }));
}

/** Delete a table; a table that is already gone is not an error. */
export async function deleteTable(t: NftTable, scope: NftScope = {}): Promise<void> {
  await exec('nft', ['delete', 'table', t.family, t.name], scope).catch(() => undefined);
}

/**
 * Drop every packet to `address` that arrives in the namespace until the returned function
 * runs: a table `name` with one input rule at priority -300 (before conntrack).
 * The release is idempotent and never fails.
 */
export async function dropTo(address: string, name: string, scope: NftScope = {}): Promise<() => Promise<void>> {
  const table = { family: 'inet', name };
  const nft = (...args: string[]) => exec('nft', args, scope);
  await nft('add', 'table', 'inet', name);
  try {
    await nft('add', 'chain', 'inet', name, 'in', '{ type filter hook input priority -300; policy accept; }');
    await nft('add', 'rule', 'inet', name, 'in', address.includes(':') ? 'ip6' : 'ip', 'daddr', address, 'drop');
  } catch (e) {
    await deleteTable(table, scope);
    throw e;
  }
  let released: Promise<void> | undefined;
  return () => (released ??= deleteTable(table, scope));
}
