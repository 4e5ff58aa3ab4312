// The peer process of connection.vm.ts and cm-connection.vm.ts: an
// RdmaConnection listener serving a 1 MiB window whose byte i is
// (i * 7) & 0xff, found over the TCP handshake (MODE tcp) or rdma_cm (MODE cm).
// Prints "listening", "connected QPN", "refused CODE" and, in cm mode,
// "closed"; answers "sum OFFSET LENGTH" with the byte sum of its window range.
// Usage: conn-peer.js tcp|cm HOST PORT SECRET
import readline from 'node:readline';
import { Region } from '../../../lib/uffd/index.js';
import * as rdma from '../../../lib/rdma/index.js';
import { DEV } from './env.js';

const [mode, host, port, secret] = process.argv.slice(2);
const memory = Region.anonymous(1 << 20);
const v = memory.bytes();
for (let i = 0; i < v.length; i++) v[i] = (i * 7) & 0xff;
const refused = (e: unknown) => console.log(`refused ${(e as Error & { code?: string }).code ?? (e as Error).message}`);
const server =
  mode === 'cm'
    ? rdma.RdmaConnection.listenCm(
        host,
        Number(port),
        { secret, memory },
        (c) => {
          console.log(`connected ${c.remote.qpNum}`);
          c.once('close', () => console.log('closed'));
        },
        refused,
      )
    : await rdma.RdmaConnection.listen(
        host,
        Number(port),
        { device: DEV, secret, memory },
        (c) => {
          console.log(`connected ${c.remote.qpNum}`);
        },
        refused,
      );
console.log('listening');
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  const [cmd, a, b] = l.split(' ');
  if (cmd === 'sum') {
    let s = 0;
    for (const x of memory.bytes(Number(a), Number(b))) s += x;
    console.log(`sum ${s}`);
  } else if (cmd === 'exit') {
    server.close();
    process.exit(0);
  }
});
