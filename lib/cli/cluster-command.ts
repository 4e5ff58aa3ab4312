/**
 * `sosctl cluster init | issue | revoke` (the cluster folder: CA, certificates, CRL) and `sosctl nodes`
 * (the live members and their telemetry, read from etcd with the operator's certificate). Every
 * command takes --json (one JSON document on stdout) and --dir (default $SOS_CLUSTER_DIR or
 * /etc/serverlessos/cluster).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { initCluster, issueMember, loadMember, revoke, type ClusterConfig } from '../cluster/folder.js';
import { ROLES, type Credentials, type Role } from '../cluster/identity.js';
import { listNodes, type NodeRecord } from '../cluster/membership.js';
import { listTelemetry, type Telemetry } from '../cluster/telemetry.js';
import { storeFromFolder } from '../cluster/join.js';
import { X509Certificate } from 'node:crypto';
import { ClusterError } from '../cluster/errors.js';
import { downCommand, upCommand } from './local-command.js';
import { socketOption, sosdSocket } from './sosd-socket.js';
import { request } from '../daemon/client.js';

export const DEFAULT_CLUSTER_DIR = process.env.SOS_CLUSTER_DIR ?? '/etc/serverlessos/cluster';

const dirOption = () => new Option('--dir <path>', 'the cluster folder').default(DEFAULT_CLUSTER_DIR);
const list = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
const urls = (v: string) => {
  const l = list(v);
  for (const u of l) if (!/^https?:\/\/\S+$/.test(u)) throw new InvalidArgumentError(`not an http(s) URL: ${u}`);
  return l;
};
const positive = (name: string) => (v: string) => {
  if (!/^[1-9]\d*$/.test(v)) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return Number(v);
};

function print(json: boolean | undefined, doc: unknown, text: string): void {
  console.log(json ? JSON.stringify(doc, null, 2) : text);
}

const certDoc = (c: Credentials) => ({
  name: c.name,
  role: c.role,
  cluster: c.cluster,
  serial: c.serial,
  notAfter: c.notAfter.toISOString(),
});

export function clusterCommand(): Command {
  // exitOverride before the subcommands: they inherit it, so usage errors reach sosctl's exit code 2.
  const cluster = new Command('cluster')
    .description('the cluster: its folder (CA, member certificates, revocation) and a local cluster (up, down)')
    .exitOverride()
    .showHelpAfterError();
  cluster
    .command('init')
    .description('create a cluster CA, an empty revocation list and an operator certificate')
    .requiredOption('--name <cluster>', 'the cluster name (lowercase)')
    .addOption(dirOption())
    .option('--etcd <urls>', 'etcd client URLs, comma-separated', urls, [] as string[])
    .option('--json', 'print JSON')
    .action(async (o: { name: string; dir: string; etcd: string[]; json?: boolean }) => {
      const r = await initCluster(o.dir, { cluster: o.name, etcd: o.etcd });
      print(
        o.json,
        { dir: o.dir, ...r.config, operator: certDoc(r.operator) },
        `cluster ${r.config.cluster} created in ${o.dir}\n  CA: ${o.dir}/ca.pem (its key ${o.dir}/ca-key.pem stays here)\n  operator certificate: ${o.dir}/operator/operator.pem (serial ${r.operator.serial})`,
      );
    });
  cluster
    .command('issue')
    .description("issue (or rotate) a member's certificate")
    .requiredOption('--name <name>', "the member's name (a node's name is its hostname in the cluster)")
    .addOption(new Option('--role <role>', 'node, orchestrator or operator').choices(ROLES).default('node'))
    .option('--hosts <list>', 'addresses and DNS names it serves on, comma-separated', list, [] as string[])
    .option('--days <n>', 'lifetime in days', positive('--days'), 365)
    .addOption(dirOption())
    .option('--json', 'print JSON')
    .action(async (o: { name: string; role: Role; hosts: string[]; days: number; dir: string; json?: boolean }) => {
      const c = await issueMember(o.dir, o);
      print(
        o.json,
        certDoc(c),
        `${c.role} ${c.name}: ${o.dir}/${c.role}/${c.name}.pem (serial ${c.serial}, valid until ${c.notAfter.toISOString()})`,
      );
    });
  cluster
    .command('revoke')
    .description("revoke certificates by serial, or a member's current one with --name/--role; peers refuse them")
    .argument('[serials...]', 'hexadecimal serials')
    .option('--name <name>', "revoke this member's current certificate")
    .addOption(new Option('--role <role>', "with --name: the member's role").choices(ROLES).default('node'))
    .addOption(dirOption())
    .option('--json', 'print JSON')
    .action(async (serials: string[], o: { name?: string; role: Role; dir: string; json?: boolean }) => {
      const add = [...serials];
      if (o.name) add.push(new X509Certificate(loadMember(o.dir, o.role, o.name).certPem).serialNumber.toLowerCase());
      if (add.length === 0)
        throw Object.assign(new Error('cluster revoke: give serials, or --name NAME [--role ROLE]'), { exitCode: 2 });
      const all = await revoke(o.dir, add);
      print(o.json, { revoked: all }, `revoked: ${all.join(', ')}\n  ${o.dir}/crl.pem re-signed`);
    });
  cluster.addCommand(upCommand());
  cluster.addCommand(downCommand());
  return cluster;
}

export function nodesCommand(): Command {
  return new Command('nodes')
    .description("the cluster's live nodes and their latest telemetry: from sosd, or from etcd with --dir")
    .exitOverride()
    .showHelpAfterError()
    .option(
      '--dir <path>',
      'read etcd directly with an operator certificate of this cluster folder (default $SOS_CLUSTER_DIR)',
    )
    .addOption(socketOption())
    .option('--as <name>', 'with --dir: the operator certificate to use', 'operator')
    .option('--json', 'print JSON')
    .action(async (o: { dir?: string; socket?: string; as: string; json?: boolean }) => {
      const dir = o.dir ?? process.env.SOS_CLUSTER_DIR;
      const rows = dir
        ? await fromEtcd(dir, o.as)
        : ((await request('cluster.nodes', {}, sosdSocket(o.socket))) as NodeRecord[]);
      const MiB = 2 ** 20;
      const text = [
        `${'NAME'.padEnd(20)} ${'ADDR'.padEnd(16)} ${'CPU'.padStart(5)} ${'MEM AVAIL'.padStart(12)} LEASE`,
        ...rows.map((r) => {
          const t = r.telemetry as Telemetry | null;
          return `${r.name.padEnd(20)} ${(typeof r.addr === 'string' ? r.addr : '-').padEnd(16)} ${(t ? `${Math.round(t.cpu * 100)}%` : '-').padStart(5)} ${(t ? `${Math.round(t.memAvail / MiB)} MiB` : '-').padStart(12)} ${r.lease}`;
        }),
      ].join('\n');
      print(o.json, rows, text);
    });
}

async function fromEtcd(dir: string, as: string): Promise<NodeRecord[]> {
  const store = storeFromFolder(dir, 'operator', as);
  try {
    const [nodes, tele] = await Promise.all([listNodes(store), listTelemetry(store)]).catch((e: Error) => {
      throw new ClusterError(`etcd did not answer (${store.endpoints.join(', ')}): ${e.message}`, {
        code: 'ERR_ETCD_UNAVAILABLE',
        cause: e,
      });
    });
    return [...nodes.values()].map((n): NodeRecord => ({ ...n, telemetry: tele.get(n.name) ?? null }));
  } finally {
    store.close();
  }
}

export type { ClusterConfig };
