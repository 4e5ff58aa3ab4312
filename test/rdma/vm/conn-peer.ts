// A peer process for connection.vm.ts: listens, serves a 1 MiB window whose
// byte i is (i * 7) & 0xff, and answers commands on stdin with one line:
//   sum OFFSET LENGTH   byte sum of its window range
import readline from 'node:readline';
import { Region, rdma } from '../../../lib/index.js';

const [host, port, secret] = process.argv.slice(2);
const memory = Region.anonymous(1 << 20);
const v = memory.bytes();
for (let i = 0; i < v.length; i++) v[i] = (i * 7) & 0xff;
const server = await rdma.RdmaConnection.listen(host, Number(port), { device: 'rxe0', secret, memory }, (c) => {
  console.log(`connected ${c.remote.qpNum}`);
}, (e) => console.log(`refused ${(e as Error & { code?: string }).code ?? e.message}`));
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
