/**
 * The demo's TCP clients: `node client.js HOST PORT CONNECTIONS RATE PAGES`. Each connection asks the
 * key-value server for a random page's checksum, waits for the answer, and keeps its share of RATE
 * requests per second. Every fourth request asks again for a page answered before: the data never
 * changes, so the answer must be the same (through paging and migration alike). Every 250 ms one JSON
 * line on stdout: `{ t, lat: [[t, ms], …], errors, checked, wrong }` (since the last line). A failed
 * request is counted and the connection made again. SIGTERM: the last line, then exit.
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const [host, port, conns, rate, pages] = process.argv.slice(2);
const perConn = Number(rate) / Number(conns);
let lat: [number, number][] = [];
let errors = 0;
let checked = 0;
let wrong = 0;
let stopping = false;
/** Every answer so far, by page: what a repeated request must get again. */
const answers = new Map<number, string>();
const asked: number[] = [];
let n = 0;

function flush(): void {
  process.stdout.write(`${JSON.stringify({ t: Date.now(), lat, errors, checked, wrong })}\n`);
  lat = [];
  errors = checked = wrong = 0;
}

function nextPage(): number {
  if (++n % 4 === 0 && asked.length) return asked[Math.floor(Math.random() * asked.length)];
  return Math.floor(Math.random() * Number(pages));
}

/** One connection's loop: request, answer, pause; a failure reconnects. */
async function connection(): Promise<void> {
  while (!stopping) {
    const sock = net.connect({ host, port: Number(port) });
    sock.setNoDelay(true);
    let buf = '';
    const waiting: ((line: string | null) => void)[] = [];
    sock.on('data', (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        waiting.shift()?.(line);
      }
    });
    const gone = () => {
      for (const w of waiting.splice(0)) w(null);
    };
    sock.on('error', gone);
    sock.on('close', gone);
    try {
      await new Promise<void>((resolve, reject) => {
        sock.once('connect', resolve);
        sock.once('error', reject);
      });
      while (!stopping) {
        const k = nextPage();
        const at = performance.now();
        const answer = new Promise<string | null>((r) => waiting.push(r));
        sock.write(`${k}\n`);
        const got = await answer;
        if (got === null) throw new Error('closed');
        const ms = performance.now() - at;
        const before = answers.get(k);
        if (before === undefined) {
          answers.set(k, got);
          asked.push(k);
        } else {
          checked++;
          if (before !== got) wrong++;
        }
        lat.push([Date.now(), Math.round(ms * 1000) / 1000]);
        await sleep(Math.max(0, 1000 / perConn - ms));
      }
    } catch {
      errors++;
      await sleep(50);
    } finally {
      sock.destroy();
    }
  }
}

const ticker = setInterval(flush, 250);
process.once('SIGTERM', () => {
  stopping = true;
  clearInterval(ticker);
  flush();
  process.exit(0);
});
for (let i = 0; i < Number(conns); i++) void connection();
