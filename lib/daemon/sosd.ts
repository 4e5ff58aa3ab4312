#!/usr/bin/env node
/**
 * sosd — the ServerlessOS node daemon (runs as root on every node).
 * Today it serves the node's capabilities on a local socket; the cluster
 * issues grow it into the agent that hosts memory, migrations and limits.
 *   sosd [--socket PATH]
 * The socket is made 0600 and serves root and sosd's own user only (SO_PEERCRED);
 * an existing PATH that is not a stale socket is refused, never replaced.
 */
import { DaemonServer } from './server.js';
import { DEFAULT_SOCKET } from './protocol.js';

const args = process.argv.slice(2);
let socket = DEFAULT_SOCKET;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--socket' && args[i + 1]) socket = args[++i];
  else if (args[i] === '--help' || args[i] === '-h') {
    console.log(
      `usage: sosd [--socket PATH]   (default ${DEFAULT_SOCKET}; a stale socket there is replaced, nothing else)`,
    );
    process.exit(0);
  } else {
    console.error(`sosd: unknown argument ${args[i]}`);
    process.exit(2);
  }
}

const server = new DaemonServer(socket, { log: (l) => console.error(`sosd: ${l}`) });
try {
  await server.listen();
} catch (e) {
  // A path that is not a socket, a daemon already there…: said plainly, the path left as it was.
  console.error(`sosd: ${(e as Error).message}`);
  process.exit(1);
}
console.log(`sosd: listening on ${socket} (pid ${process.pid})`);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    void server.close().then(() => process.exit(0));
  });
}
