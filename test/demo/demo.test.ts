// The README's demo, end to end: it runs to completion on a fresh 3-node cluster (short parts): one
// workload paged to another node's memory node and migrated post-copy to a third, its clients'
// repeated requests answered as before; its HTML report renders in headless Chromium with data in
// every plot, needing no network; a Ctrl-C while the cluster comes up, while the workload pages or
// while it migrates leaves no namespace, process, etcd or nftables table behind.
import t, { type Test } from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';
import { localCluster } from '../../lib/cluster/local.js';
import { onExit } from '../../testkit/cleanup.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const demo = path.join(here, '../../examples/demo/index.js');
const sosctl = path.join(here, '../../lib/cli/sosctl.js');
const CHROMIUM = process.env.SOS_CHROMIUM ?? '/usr/bin/chromium';

function runDemo(args: string[], onLine?: (l: string, kill: () => void) => void) {
  const p = spawn(process.execPath, [demo, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d: Buffer) => {
    const s = d.toString();
    out += s;
    for (const l of s.split('\n')) onLine?.(l, () => p.kill('SIGINT'));
  });
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise<{ code: number | null; out: string; err: string }>((resolve) =>
    p.once('exit', (code) => resolve({ code, out, err })),
  );
}

/** What a local cluster of `dir` would leave: its namespaces, etcd, sosds. */
function leftovers(dir: string, tag: string): string[] {
  const found: string[] = [];
  const ns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (ns.includes(tag))
    found.push(
      `namespaces: ${ns
        .split('\n')
        .filter((l) => l.includes(tag))
        .join(', ')}`,
    );
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
      // Its sosds and etcd name the folder; the workload's script has this line.
      if (cmd.includes(dir) || cmd.includes('target=serve'))
        found.push(`process ${d}: ${cmd.replace(/\0/g, ' ').slice(0, 120)}`);
    } catch {
      // gone
    }
  }
  if (localCluster(dir)) found.push('local.json');
  return found;
}

function folder(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-demo-'));
  const cancel = onExit(() => execFileSync(process.execPath, [sosctl, 'cluster', 'down', '--dir', dir]));
  t.teardown(() => {
    execFileSync(process.execPath, [sosctl, 'cluster', 'down', '--dir', dir]);
    cancel();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

void t.test('the demo runs to completion and its report renders every plot with data', async (t) => {
  const dir = folder(t);
  const out = path.join(dir, 'report.html');
  const r = await runDemo([
    '--dir',
    path.join(dir, 'cluster'),
    '--out',
    out,
    '--seconds',
    '4',
    '--mib',
    '128',
    '--budget',
    '32',
  ]);
  if (!t.equal(r.code, 0, 'the demo exits 0')) t.comment(`${r.out.slice(-3000)}\n${r.err}`);
  t.match(r.out, /sosctl cluster up --nodes 3/);
  t.match(r.out, /downtime +\d+ ms/, 'the report gives the downtime');
  t.match(r.out, /its far memory \(peak\) +\d+ MiB on node1/);
  t.match(r.out, /runs on node2 now/, 'it migrated to the third node');
  const again = /answers checked again +(\d+) repeated requests, (\d+) answered differently/.exec(r.out);
  t.ok(again && Number(again[1]) > 0, `the clients asked again for pages answered before (${again?.[1]})`);
  t.equal(again?.[2], '0', 'and every one got the answer it got before: no page lost or changed');
  t.match(r.out, / 0 errors/, 'no request failed');
  const data = JSON.parse(fs.readFileSync(`${out}.json`, 'utf8')) as {
    far: { t: number[]; remoteMiB: number[]; residentMiB: number[] };
    latency: { ms: number[] };
    migration: { downtime: { from: number; to: number } };
  };
  t.ok(
    Math.max(...data.far.remoteMiB) > 32,
    `more than the budget lived on the memory nodes (${Math.max(...data.far.remoteMiB)} MiB)`,
  );
  t.ok(Math.max(...data.far.residentMiB) <= 32 + 1, 'resident memory stayed within the budget');
  t.ok(data.latency.ms.length > 0, 'the clients were answered through the migration');
  const after = data.far.t.map((x, i) => [x, data.far.remoteMiB[i]]).filter(([x]) => x > data.migration.downtime.to);
  t.ok(
    after.length > 0 && after.every(([, mib]) => mib > 32),
    'after the migration its memory is still on the memory node (handed over, not pulled back)',
  );
  t.same(leftovers(path.join(dir, 'cluster'), 'sos-'), [], 'the demo took its cluster down');

  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu'],
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  // Self-contained: no request leaves the file.
  const requests: string[] = [];
  page.on('request', (q) => void (q.url().startsWith('file:') || requests.push(q.url())));
  await page.goto(`file://${out}`, { waitUntil: 'load' });
  type Canvas = {
    width: number;
    height: number;
    getContext(k: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } };
  };
  type Plot = { id: string; points: number; u: { root: { querySelector(s: string): Canvas } } };
  const plots = await page.evaluate(() =>
    (globalThis as unknown as { __plots: Plot[] }).__plots.map((p) => {
      const canvas = p.u.root.querySelector('canvas');
      const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let inked = 0;
      for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) inked++;
      return { id: p.id, points: p.points, inked };
    }),
  );
  t.same(
    plots.map((p) => p.id),
    ['memory', 'faults', 'farlat', 'migration', 'latency'],
  );
  for (const p of plots) t.ok(p.points > 0 && p.inked > 0, `${p.id}: ${p.points} points drawn (${p.inked} pixels)`);
  t.same(requests, [], 'the report needs no network');
});

const nftTables = () =>
  execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }).split('\n').filter(Boolean).sort();

void t.test('Ctrl-C at any moment leaves nothing behind', async (t) => {
  const tables = nftTables();
  // While the cluster comes up, while the workload pages, while it migrates.
  for (const moment of ['$ sosctl cluster up', 'A key-value server', '$ sosctl migrate']) {
    const dir = folder(t);
    const cl = path.join(dir, 'cluster');
    let sent = false;
    const r = await runDemo(
      ['--dir', cl, '--out', path.join(dir, 'r.html'), '--seconds', '6', '--mib', '64', '--budget', '16'],
      (l, kill) => {
        if (!sent && l.startsWith(moment)) {
          sent = true;
          kill();
        }
      },
    );
    t.ok(sent, `interrupted at "${moment}"`);
    if (!t.equal(r.code, 130, 'it exits 130, as after SIGINT')) t.comment(`${r.out.slice(-3000)}\n${r.err}`);
    t.match(r.out, /SIGINT: taking the demo down/);
    t.same(leftovers(cl, 'sos-'), [], 'no namespace, process (sosd, etcd, the workload) of it is left');
    t.same(nftTables(), tables, 'no nftables table is left');
  }
});
