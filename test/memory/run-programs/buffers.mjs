// An ordinary node script for the `sosctl run` tests: large Buffers and a typed array.
import crypto from 'node:crypto';
const mib = Number(process.argv[2]);
const a = Buffer.alloc(mib << 20);
let x = 12345;
for (let i = 0; i < a.length; i += 512) {
  x = (x * 1103515245 + 12345) >>> 0;
  a.writeUInt32LE(x, i);
}
const f = new Float64Array((mib << 20) / 16);
for (let i = 0; i < f.length; i += 97) f[i] = i * 0.5;
let s = 0;
for (let i = 0; i < f.length; i += 97) s += f[i];
console.log(crypto.createHash('sha256').update(a).digest('hex'), s);
