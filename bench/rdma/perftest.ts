/**
 * bench/rdma: reading perftest's result tables (ib_read_lat, ib_write_lat,
 * ib_read_bw as shipped by Debian 12's perftest 4.5-0.17). Columns are found
 * by name in the header line, so versions that add or drop columns still
 * parse; a missing table is an error that quotes the output.
 */

/** One row of ib_*_lat's summary table, in microseconds. */
export interface PerftestLat {
  bytes: number;
  iters: number;
  minUs: number;
  maxUs: number;
  /** The median of the per-iteration times ("t_typical"). */
  typicalUs: number;
  avgUs: number;
  stdevUs?: number;
  p99Us?: number;
  p999Us?: number;
}

/** One row of ib_*_bw's summary table; bandwidth in MiB/s (perftest's "MB/sec" is 2^20 bytes). */
export interface PerftestBw {
  bytes: number;
  iters: number;
  peakMiBs: number;
  avgMiBs: number;
  msgRateMpps: number;
}

const LAT_COLUMNS: Record<string, keyof PerftestLat> = {
  '#bytes': 'bytes',
  '#iterations': 'iters',
  t_min: 'minUs',
  t_max: 'maxUs',
  t_typical: 'typicalUs',
  t_avg: 'avgUs',
  t_stdev: 'stdevUs',
  '99% percentile': 'p99Us',
  '99.9% percentile': 'p999Us',
};
const BW_COLUMNS: Record<string, keyof PerftestBw> = {
  '#bytes': 'bytes',
  '#iterations': 'iters',
  'BW peak': 'peakMiBs',
  'BW average': 'avgMiBs',
  MsgRate: 'msgRateMpps',
};

function excerpt(text: string): string {
  return text.trim().split('\n').slice(-12).join('\n');
}

/** The header line (the first holding `marker`), its column names in order, and the first all-numeric row after it. */
function row(
  text: string,
  marker: string,
  names: readonly string[],
  tool: string,
): { cols: string[]; values: number[]; header: string } {
  const lines = text.split('\n');
  const at = lines.findIndex((l) => l.includes(marker));
  if (at < 0) throw new Error(`${tool}: no result table (no "${marker}" header) in its output:\n${excerpt(text)}`);
  const header = lines[at];
  const pattern = new RegExp(
    names
      .map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .sort((a, b) => b.length - a.length)
      .join('|'),
    'g',
  );
  const cols = [...header.matchAll(pattern)].map((m) => m[0]);
  for (const l of lines.slice(at + 1)) {
    const t = l.trim();
    if (t === '' || /^-+$/.test(t)) continue;
    const fields = t.split(/\s+/);
    if (fields.length >= cols.length && fields.every((f) => /^[0-9.]+$/.test(f)))
      return { cols, values: fields.map(Number), header };
    break;
  }
  throw new Error(`${tool}: no numeric row under its result header in its output:\n${excerpt(text)}`);
}

/** The summary row of ib_read_lat / ib_write_lat (default output, not -H/-U). */
export function parseLat(text: string, tool = 'perftest'): PerftestLat {
  const { cols, values, header } = row(text, 't_typical', Object.keys(LAT_COLUMNS), tool);
  if (!header.includes('[usec]'))
    throw new Error(`${tool}: latency not in microseconds (run without -C): ${header.trim()}`);
  const out: Partial<PerftestLat> = {};
  cols.forEach((c, i) => {
    out[LAT_COLUMNS[c]] = values[i];
  });
  for (const k of ['bytes', 'iters', 'typicalUs', 'avgUs'] as const)
    if (out[k] === undefined) throw new Error(`${tool}: column for ${k} missing in: ${header.trim()}`);
  return out as PerftestLat;
}

/** The summary row of ib_read_bw (MB/sec units, i.e. without --report_gbits). */
export function parseBw(text: string, tool = 'perftest'): PerftestBw {
  const { cols, values, header } = row(text, 'BW average', Object.keys(BW_COLUMNS), tool);
  if (!header.includes('[MB/sec]'))
    throw new Error(`${tool}: bandwidth not in MB/sec (run without --report_gbits): ${header.trim()}`);
  const out: Partial<PerftestBw> = {};
  cols.forEach((c, i) => {
    out[BW_COLUMNS[c]] = values[i];
  });
  for (const k of ['bytes', 'iters', 'avgMiBs'] as const)
    if (out[k] === undefined) throw new Error(`${tool}: column for ${k} missing in: ${header.trim()}`);
  return out as PerftestBw;
}
