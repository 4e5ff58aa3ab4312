/**
 * Throughput of the agent channel's data frames over loopback TCP: one client
 * streams `--mib` MiB (default 1024) of 1 MiB data frames to a server in the
 * same process, timed from the first frame until the server has received the
 * last byte. Prints a table line and, last, one JSON object.
 *   scripts/bench.sh channel [--mib N] [--reps N]
 */
import crypto from 'node:crypto';
import { once } from 'node:events';
import type net from 'node:net';
import { AuthChannel, MAX_DATA } from '../../lib/net/channel.js';
import { parseOptions } from '../run.js';

const opts = parseOptions(process.argv.slice(2), {
  mib: 'MiB to send per repetition (default 1024)',
  reps: 'repetitions (default 3)',
});
const mib = Number(opts.get('mib') ?? 1024);
const reps = Number(opts.get('reps') ?? 3);
const secret = crypto.randomBytes(32);
const chunk = crypto.randomBytes(MAX_DATA);

async function once1(): Promise<number> {
  const total = mib * MAX_DATA;
  let got = 0;
  let done: () => void = () => {};
  const all = new Promise<void>((r) => (done = r));
  const server = AuthChannel.server(secret, (ch) =>
    ch.on('data', (_s, d) => {
      got += d.length;
      if (got === total) done();
    }),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const ch = await AuthChannel.connect({
    host: '127.0.0.1',
    port: (server.address() as net.AddressInfo).port,
    secret,
  });
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < mib; i++) await ch.sendData(1, chunk);
  await all;
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  ch.close();
  server.close();
  return s;
}

const secs: number[] = [];
for (let r = 0; r < reps; r++) {
  const s = await once1();
  secs.push(s);
  console.log(`rep ${r + 1}: ${mib} MiB in ${s.toFixed(3)} s = ${(mib / s).toFixed(0)} MiB/s`);
}
const best = Math.min(...secs);
console.log(JSON.stringify({ bench: 'channel', mib, reps, seconds: secs, best_mib_per_s: Math.round(mib / best) }));
