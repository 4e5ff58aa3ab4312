// A peer process for cm.vm.ts: listens with rdma_cm on HOST:PORT and
// accepts one connection with a 64 KiB window (byte i = (i * 3) & 0xff),
// told to the client in the accept's private data (addr u64, rkey u32,
// length u32, little-endian). Prints: listening, request <privateData>,
// established, disconnected; answers "sum OFFSET LENGTH" on stdin.
import readline from 'node:readline';
import { Region } from '../../../lib/uffd/index.js';
import * as rdma from '../../../lib/rdma/index.js';
import { DEV } from './env.js';

const [host, port] = process.argv.slice(2);
const ch = new rdma.CmEventChannel();
const listener = ch.createId();
const region = Region.anonymous(65536); // page-aligned memory of its own
const memory = region.bytes();
for (let i = 0; i < memory.length; i++) memory[i] = (i * 3) & 0xff;
// Verbs objects are closed when garbage-collected (a parent does not keep its
// children alive): keep each connection's objects referenced while it lives.
const live = new Set<object>();
listener.on('request', (req) => {
  console.log(`request ${req.request?.privateData?.toString('utf8').replace(/\0+$/, '') ?? ''}`);
  const ctx = rdma.Context.open(req.device ?? DEV);
  const pd = ctx.allocPd();
  const cq = ctx.createCq(64);
  const qp = pd.createQp(cq, cq);
  const mr = pd.registerMemory(region);
  const objects = { ctx, pd, cq, qp, mr };
  live.add(objects);
  const pdata = Buffer.alloc(16);
  pdata.writeBigUInt64LE(BigInt(mr.addr), 0);
  pdata.writeUInt32LE(mr.rkey, 8);
  pdata.writeUInt32LE(mr.length, 12);
  req.on('disconnected', () => {
    console.log('disconnected');
    req.close();
    ctx.close();
    live.delete(objects);
  });
  req.accept(qp, { privateData: pdata }).then(
    () => console.log('established'),
    (e: Error) => console.log(`accept failed ${e.message}`),
  );
});
listener.listen(host, Number(port));
console.log('listening');
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  const [cmd, a, b] = l.split(' ');
  if (cmd === 'sum') {
    let s = 0;
    for (const x of memory.subarray(Number(a), Number(a) + Number(b))) s += x;
    console.log(`sum ${s}`);
  } else if (cmd === 'exit') {
    ch.close();
    process.exit(0);
  }
});
