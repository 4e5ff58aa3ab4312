// `node remote-call.js CLUSTER_DIR ROLE NAME HOST PORT OP [ARGS_JSON]`: one request to a sosd's mutual-TLS API with
// ROLE/NAME's certificate; prints {ok, result} or {ok:false, code, message} as one JSON line. Run inside
// a namespace (ip netns exec) to reach a local cluster's nodes, which the host has no route to.
import { loadConfig, loadMember } from '../lib/cluster/folder.js';
import type { Role } from '../lib/cluster/identity.js';
import { remoteRequest } from '../lib/daemon/remote.js';

const [dir, role, name, host, port, op, args] = process.argv.slice(2);
try {
  const result = await remoteRequest(
    { host, port: Number(port), credentials: loadMember(dir, role as Role, name), cluster: loadConfig(dir).cluster },
    op,
    args ? (JSON.parse(args) as Record<string, unknown>) : {},
  );
  console.log(JSON.stringify({ ok: true, result }));
} catch (e) {
  const err = e as Error & { code?: string };
  console.log(JSON.stringify({ ok: false, code: err.code, message: err.message }));
}
