/**
 * The measuring side of bench/memory, run inside the client's network namespace by index.ts: the native
 * workload (lib/memory/workload.ts) on an all-local region and on far-memory regions at several local
 * shares, every run's final checksum compared with the all-local one. Talks to the parent in JSON lines on
 * stdout: {"phase": ...} as it goes (the parent kills a memory node on {"phase":"kill-now"}), and one final
 * {"results": ...}.
 *
 *   node dist/bench/memory/client.js CONFIG_JSON
 */
import fs from 'node:fs';
import { Region } from '../../lib/uffd/region.js';
import { memory } from '../../lib/index.js';
import { workload } from '../../lib/memory/workload.js';

export interface ClientConfig {
  size: number;
  updates: number;
  locals: number[];
  nodes: { host: string; port: number }[];
  application: string;
  secretFile: string;
  replicas: number;
  transport: 'tcp' | 'rdma';
  /** Also run once at this local % with a memory node killed during the updates. */
  killAt: number | null;
  threads: number;
  seed: number;
}

export interface PhaseTimes {
  fillNs: number;
  updateNs: number;
  scanNs: number;
  /** A second scan right after: every page clean, so eviction only drops (no write-back). */
  rescanNs: number;
  checksumOk: boolean;
}

export interface FarRun extends PhaseTimes {
  localPct: number;
  faults: number;
  faultP50Ns: number;
  faultP99Ns: number;
  fetchedPages: number;
  evictions: number;
  writebacks: number;
  prefetchHits: number;
  maxResidentBytes: number;
  localBytes: number;
  /** One StoreV batch of write-back. */
  writeBackP50Ns: number;
  writeBackP99Ns: number;
  killed?: boolean;
  failovers?: number;
  /** Counters of the scan phase alone (after the updates): where its time went. */
  scan: ScanCounters;
}

/** What the sequential scan cost the pager (differences of FarStats over the phase). */
export interface ScanCounters {
  faults: number;
  readaheads: number;
  triggers: number;
  frameWaits: number;
  evictions: number;
  cleanDrops: number;
  writeBacks: number;
  stagedHits: number;
  writeBackBatches: number;
}

const SCAN_KEYS = [
  'faults',
  'readaheads',
  'triggers',
  'frameWaits',
  'evictions',
  'cleanDrops',
  'writeBacks',
  'stagedHits',
  'writeBackBatches',
] as const;

const say = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');

async function phases(
  r: Region,
  c: ClientConfig,
  onUpdate?: () => void,
  beforeScan?: () => void,
  afterScan?: () => void,
): Promise<PhaseTimes & { sum: bigint }> {
  const f = await workload(r, 'fill', { seed: c.seed, threads: c.threads });
  onUpdate?.();
  const u = await workload(r, 'update', { ops: c.updates, seed: c.seed + 1, threads: c.threads });
  beforeScan?.();
  const s = await workload(r, 'scan', { threads: c.threads });
  afterScan?.();
  const again = await workload(r, 'scan', { threads: c.threads });
  return {
    fillNs: f.elapsedNs,
    updateNs: u.elapsedNs,
    scanNs: s.elapsedNs,
    rescanNs: again.elapsedNs,
    checksumOk: again.checksum === s.checksum,
    sum: s.checksum,
  };
}

async function main(): Promise<void> {
  const c = JSON.parse(process.argv[2]) as ClientConfig;
  say({ phase: 'local' });
  const local = Region.anonymous(c.size);
  const base = await phases(local, c);
  local.close();
  const far: FarRun[] = [];
  const runs: { pct: number; kill: boolean }[] = c.locals.map((pct) => ({ pct, kill: false }));
  if (c.killAt !== null) runs.push({ pct: c.killAt, kill: true });
  for (const run of runs) {
    say({ phase: 'far', localPct: run.pct, kill: run.kill });
    const localBytes = Math.floor((c.size * run.pct) / 100 / 4096) * 4096;
    const fm = await memory.region(c.size, {
      localBytes,
      nodes: c.nodes,
      application: c.application,
      secret: fs.readFileSync(c.secretFile),
      replicas: c.replicas,
      transport: c.transport,
    });
    let maxResident = 0;
    const sampler = setInterval(() => {
      maxResident = Math.max(maxResident, fm.residentBytes());
    }, 50);
    try {
      let atScan = fm.stats();
      let scanEnd = atScan;
      const p = await phases(
        fm.region,
        c,
        run.kill ? () => say({ phase: 'kill-now' }) : undefined,
        () => (atScan = fm.stats()),
        () => (scanEnd = fm.stats()),
      );
      maxResident = Math.max(maxResident, fm.residentBytes());
      const s = fm.stats();
      const scan = Object.fromEntries(SCAN_KEYS.map((k) => [k, scanEnd[k] - atScan[k]])) as unknown as ScanCounters;
      far.push({
        localPct: run.pct,
        localBytes,
        fillNs: p.fillNs,
        updateNs: p.updateNs,
        scanNs: p.scanNs,
        rescanNs: p.rescanNs,
        checksumOk: p.checksumOk && p.sum === base.sum,
        faults: s.faults,
        faultP50Ns: s.faultLatency.p50Ns,
        faultP99Ns: s.faultLatency.p99Ns,
        fetchedPages: s.pagesFetched,
        evictions: s.evictions,
        writebacks: s.writeBacks,
        prefetchHits: s.prefetchHits,
        maxResidentBytes: maxResident,
        scan,
        writeBackP50Ns: s.writeBackLatency.p50Ns,
        writeBackP99Ns: s.writeBackLatency.p99Ns,
        ...(run.kill ? { killed: true, failovers: s.failovers } : {}),
      });
    } finally {
      clearInterval(sampler);
      await fm.close();
    }
  }
  say({ results: { local: { ...base, sum: undefined }, far } });
}

main().catch((e: unknown) => {
  say({ error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
  process.exit(1);
});
