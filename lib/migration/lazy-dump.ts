// Post-copy's page server on the source (CRIU's lazy dump): a port to serve on, and how to
// make it give up so that CRIU resumes the source.
import net from 'node:net';
import { once } from 'node:events';

/** A port free on `host` now (CRIU's page server takes a port, not a socket). */
export async function freePort(host: string): Promise<number> {
  const s = net.createServer().listen(0, host);
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  s.close();
  return port;
}

/**
 * Make a lazy dump's page server give up: connect and hang up at once (retrying until it
 * listens). That fails its TLS handshake, so the dump ends and CRIU lets the source run.
 */
export function endPageServer(ps: { address: string; port: number } | null, ms = 30_000): void {
  if (!ps) return;
  const end = performance.now() + ms;
  const attempt = () => {
    const s = net.connect(ps.port, ps.address);
    s.once('connect', () => s.destroy());
    s.once('error', () => {
      s.destroy();
      if (performance.now() < end) setTimeout(attempt, 20);
    });
  };
  attempt();
}
