/**
 * bench/memory-tls: the memory node's data channel over loopback, the secret channel (every frame sealed
 * with AES-256-GCM by the project) against mutual TLS 1.3 (frames inside TLS records only), same node,
 * same native client. Per mode: MiB/s of 1 MiB WRITEs and READs (`--depth` in flight) over a
 * `--mib` region, and 4 KiB READs one at a time (round trips per second). Median of `--reps`.
 * Prints a table and, last, one JSON object {"bench":"memory-tls","sealed":{…},"tls":{…},"ratios":{…}}.
 *   npm run bench -- memory-tls [--mib 256] [--depth 4] [--small 5000] [--reps 3]
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { initCluster, issueMember, loadMember } from '../../lib/cluster/folder.js';
import { MemoryNode, RemoteStore, type MemoryTlsOptions } from '../../lib/memory/index.js';
import { median, parseOptions, round, table } from '../run.js';

const opts = parseOptions(process.argv.slice(2), {
  mib: 'region size in MiB, written then read whole each repetition (default 256)',
  depth: '1 MiB requests in flight (default 4)',
  small: '4 KiB reads one at a time per repetition (default 5000)',
  reps: 'repetitions (default 3)',
});
const MIB = 1 << 20;
const mib = Number(opts.get('mib') ?? 256);
const depth = Number(opts.get('depth') ?? 4);
const small = Number(opts.get('small') ?? 5000);
const reps = Number(opts.get('reps') ?? 3);

interface Result {
  writeMiBs: number;
  readMiBs: number;
  smallReadsPerS: number;
}

async function measure(store: RemoteStore): Promise<Result> {
  const chunk = crypto.randomBytes(MIB);
  const timed = async (op: (i: number) => Promise<unknown>, n: number, inFlight: number): Promise<number> => {
    let next = 0;
    const t0 = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < n) await op(next++);
      }),
    );
    return Number(process.hrtime.bigint() - t0) / 1e9;
  };
  const w = await timed((i) => store.write(i * MIB, chunk), mib, depth);
  let bad = 0;
  const r = await timed(
    (i) =>
      store.read(i * MIB, MIB).then((b) => {
        if (!b.equals(chunk)) bad++;
      }),
    mib,
    depth,
  );
  if (bad) throw new Error(`${bad} reads came back wrong`);
  const s = await timed((i) => store.read((i % (mib * 256)) * 4096, 4096), small, 1);
  return { writeMiBs: mib / w, readMiBs: mib / r, smallReadsPerS: small / s };
}

async function mode(tls: { node: MemoryTlsOptions; client: MemoryTlsOptions } | undefined): Promise<Result> {
  const secret = crypto.randomBytes(32);
  const node = new MemoryNode({ capacity: (mib + 16) * MIB, applications: { bench: secret }, tls: tls?.node });
  try {
    const { host, port } = await node.listen();
    const runs: Result[] = [];
    for (let i = 0; i < reps; i++) {
      const store = await RemoteStore.connect({
        host,
        port,
        application: 'bench',
        secret,
        size: mib * MIB,
        ...(tls ? { tls: tls.client, serverName: 'node-1' } : {}),
      });
      try {
        runs.push(await measure(store));
      } finally {
        await store.close();
      }
    }
    return {
      writeMiBs: round(median(runs.map((r) => r.writeMiBs))),
      readMiBs: round(median(runs.map((r) => r.readMiBs))),
      smallReadsPerS: round(median(runs.map((r) => r.smallReadsPerS))),
    };
  } finally {
    node.close();
  }
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-memory-tls-'));
try {
  await initCluster(dir, { cluster: 'bench' });
  await issueMember(dir, { name: 'node-1', role: 'node' });
  const creds = { node: loadMember(dir, 'node', 'node-1'), client: loadMember(dir, 'operator', 'operator') };
  const sealed = await mode(undefined);
  const overTls = await mode(creds);
  const fmt = (r: Result) => [String(r.writeMiBs), String(r.readMiBs), String(r.smallReadsPerS)];
  process.stdout.write(
    table(
      ['mode', 'write MiB/s', 'read MiB/s', '4 KiB reads/s'],
      [
        ['sealed (AES-GCM)', ...fmt(sealed)],
        ['mutual TLS 1.3', ...fmt(overTls)],
      ],
    ) + '\n',
  );
  const ratio = (a: number, b: number) => round(a / b, 3);
  process.stdout.write(
    JSON.stringify({
      bench: 'memory-tls',
      mib,
      depth,
      cpus: os.cpus().length,
      sealed,
      tls: overTls,
      ratios: {
        write_tls_vs_sealed: ratio(overTls.writeMiBs, sealed.writeMiBs),
        read_tls_vs_sealed: ratio(overTls.readMiBs, sealed.readMiBs),
        small_read_tls_vs_sealed: ratio(overTls.smallReadsPerS, sealed.smallReadsPerS),
      },
    }) + '\n',
  );
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
