/**
 * The quick-start demo: a process whose memory lives elsewhere.
 *
 * A 512 MiB "remote" image (here a file on disk standing in for a memory
 * node) backs an empty region. Nothing is copied up front: four threads
 * touch the region and every page arrives on first touch, resolved by the
 * native fault engine in batches — JavaScript never sees a fault. The same
 * is then done with a JavaScript fault handler to show what the native path
 * buys.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FaultEngine, PageSource, Region, Userfaultfd, touch } from '../lib/index.js';

const MiB = 1 << 20;
const size = Number(process.env.SOS_DEMO_MIB ?? 512) * MiB;

function fmt(n: number, unit = ''): string {
  return n >= 1e6
    ? `${(n / 1e6).toFixed(2)} M${unit}`
    : n >= 1e3
      ? `${(n / 1e3).toFixed(1)} k${unit}`
      : `${n.toFixed(0)} ${unit}`;
}

async function main(): Promise<void> {
  const support = Userfaultfd.probe();
  console.log(`kernel ${os.release()}: userfaultfd features ${[...support.features].join(' ')}`);

  // The "remote" memory image.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-demo-'));
  const image = path.join(dir, 'memory.img');
  const pattern = Buffer.alloc(4099);
  for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 31 + 7) & 0xff;
  const chunk = Buffer.alloc(16 * MiB).fill(pattern);
  const fd = fs.openSync(image, 'w');
  for (let off = 0; off < size; off += chunk.length) fs.writeSync(fd, chunk, 0, chunk.length, off);
  fs.closeSync(fd);
  console.log(`memory image: ${size / MiB} MiB at ${image}`);

  // 1. Native fault engine.
  const region = Region.anonymous(size);
  const uffd = Userfaultfd.open();
  uffd.register(region, { missing: true });
  const source = PageSource.fromFile(image);
  const engine = new FaultEngine(uffd, { batchPages: 16 }).serve(region, source).start();
  console.log(`region at 0x${region.address.toString(16)}: ${region.size / MiB} MiB, nothing resident yet`);
  const t = await touch(region, { threads: 4 });
  const s = engine.stop();
  engine.start(); // keep serving while we verify from this thread
  const ok = Buffer.compare(Buffer.from(region.buffer), fs.readFileSync(image)) === 0;
  const secs = t.elapsedNs / 1e9;
  console.log('\nnative fault engine (4 faulting threads, 16-page batches)');
  console.log(
    `  faults ${s.faults}, pages ${s.pages}, ${fmt(s.pages / secs, 'pages/s')}, ${(s.bytes / MiB / secs).toFixed(0)} MiB/s`,
  );
  console.log(
    `  service latency p50 ${(s.latency.p50Ns / 1000).toFixed(1)} µs, p99 ${(s.latency.p99Ns / 1000).toFixed(1)} µs`,
  );
  console.log(`  contents identical to the image: ${ok ? 'yes' : 'NO'}`);
  engine.close();
  uffd.close();
  region.close();

  // 2. The same faults handled in JavaScript (one page per fault), 64 MiB.
  const small = Math.min(size, 64 * MiB);
  const r2 = Region.anonymous(small);
  const u2 = Userfaultfd.open();
  u2.register(r2);
  const img = fs.readFileSync(image).subarray(0, small);
  let faults = 0;
  u2.on('pagefault', (ev) => {
    faults++;
    const off = ev.offset! - (ev.offset! % 4096);
    u2.copy({ region: r2, offset: off, length: 4096 }, img.subarray(off, off + 4096));
  });
  const t2 = await touch(r2, { threads: 4 });
  const secs2 = t2.elapsedNs / 1e9;
  console.log('\nJavaScript fault handler (same work, 64 MiB, one page per fault)');
  console.log(
    `  faults ${faults}, ${fmt(t2.pages / secs2, 'pages/s')}, first-touch p50 ${(t2.latency.p50Ns / 1000).toFixed(1)} µs`,
  );
  console.log(`\nnative engine vs JavaScript handler: ${(s.pages / secs / (t2.pages / secs2)).toFixed(1)}x pages/s`);
  u2.close();
  r2.close();
  fs.rmSync(dir, { recursive: true, force: true });
  if (!ok) process.exitCode = 1;
}

await main();
