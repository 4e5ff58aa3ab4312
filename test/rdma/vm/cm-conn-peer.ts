// A peer process for cm-connection.vm.ts: RdmaConnection.listenCm on
// HOST:PORT serving a 1 MiB window whose byte i is (i * 5) & 0xff. Prints
// "listening", "connected", "refused CODE", "closed"; answers "sum OFF LEN".
import readline from 'node:readline';
import { Region, rdma } from '../../../lib/index.js';

const [host, port, secret] = process.argv.slice(2);
const memory = Region.anonymous(1 << 20);
const v = memory.bytes();
for (let i = 0; i < v.length; i++) v[i] = (i * 5) & 0xff;
const listener = rdma.RdmaConnection.listenCm(host, Number(port), { secret, memory }, (c) => {
  console.log('connected');
  c.once('close', () => console.log('closed'));
}, (e) => console.log(`refused ${(e as Error & { code?: string }).code ?? e.message}`));
console.log('listening');
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  const [cmd, a, b] = l.split(' ');
  if (cmd === 'sum') {
    let s = 0;
    for (const x of memory.bytes(Number(a), Number(b))) s += x;
    console.log(`sum ${s}`);
  } else if (cmd === 'exit') {
    listener.close();
    process.exit(0);
  }
});
