/**
 * sosd's memory-node role: a MemoryNode (lib/memory/node.ts, native) on the node's address that holds
 * far-memory pages for applications, up to `--memory-capacity` bytes.
 *
 * An application gets in with a secret of its own, which the memory node must know before the
 * application connects: `memory.grant { app, secret }` (operator and orchestrator roles: the secret
 * travels inside the mutual-TLS API, or over the root-only socket) lets it in and answers where the
 * node listens. The caller makes the secret (sosctl run: a fresh one per run) and gives the same one
 * to every node it places the application's pages on; `memory.revoke { app }` lets it out again
 * (connections already in keep theirs until they close). The node's capacity, what is reserved and
 * what is held go into its telemetry, in steps of 16 MiB.
 *
 * A node of a cluster serves mutual TLS with its own certificate (`tls`: the one its API listener
 * uses): a client must present a certificate of the cluster CA, not revoked, naming the cluster,
 * before the application's secret is even asked for; the grant says so (`tls: true`), and sosctl then
 * connects with the operator's certificate. Without a cluster the node speaks the secret channel only.
 */
import { MemoryNode, type MemoryNodeTlsOptions } from '../memory/node.js';
import { SosError } from '../errors.js';
import type { DaemonLogger, OpSpec } from './server.js';
import { FENCE_SCHEMA, type Fence } from '../orchestrator/fence.js';
import { forbidden } from './refusals.js';

export interface MemoryServiceOptions {
  host: string;
  port: number;
  /** Bytes of pages it may hold. */
  capacity: number;
  log: DaemonLogger;
  /** The node's certificate, key, CA and CRL, and its cluster: every connection is mutual TLS. */
  tls?: MemoryNodeTlsOptions;
}

const NAME = { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' };
// 32 to 1024 bytes, base64.
const SECRET = { type: 'string', minLength: 44, maxLength: 1368, pattern: '^[A-Za-z0-9+/]+={0,2}$' };
const OPERATORS = ['operator', 'orchestrator'] as const;
const STEP = 16 * 2 ** 20;
const step = (n: number) => Math.round(n / STEP) * STEP;

export class MemoryService {
  /** Checks an orchestrator's fence against etcd (sosd sets it once it joined its cluster). */
  checkFence: ((f: Fence) => Promise<void>) | null = null;

  private constructor(
    private readonly node: MemoryNode,
    readonly address: { host: string; port: number },
    private readonly o: MemoryServiceOptions,
  ) {}

  static async start(o: MemoryServiceOptions): Promise<MemoryService> {
    const node = new MemoryNode({ capacity: o.capacity, host: o.host, port: o.port, tls: o.tls });
    try {
      const address = await node.listen();
      o.log.info({ address, capacity: o.capacity, tls: !!o.tls }, 'memory node listening');
      return new MemoryService(node, address, o);
    } catch (e) {
      node.close();
      throw e;
    }
  }

  /** `farMemory: { capacity, reserved, held }` for the node's telemetry (16 MiB steps). */
  telemetrySource(): () => Record<string, unknown> {
    return () => {
      if (this.node.closed) return {};
      const s = this.node.stats();
      return { farMemory: { capacity: s.capacity, reserved: step(s.reserved), held: step(s.total.heldBytes) } };
    };
  }

  ops(): OpSpec[] {
    return [
      {
        op: 'memory.grant',
        schema: {
          type: 'object',
          additionalProperties: false,
          required: ['app', 'secret'],
          // `fence`: the leading orchestrator placing a far-memory process (a node peer naming itself).
          properties: { app: NAME, secret: SECRET, fence: FENCE_SCHEMA },
        },
        roles: [...OPERATORS, 'node'],
        handler: async (a, ctx) => {
          const fence = a.fence as Fence | undefined;
          if (ctx.peer.kind === 'tls' && ctx.peer.role === 'node') {
            if (fence?.leader !== ctx.peer.name)
              throw forbidden(`node ${ctx.peer.name} may let an application in only as the leading orchestrator`);
            if (!this.checkFence) throw forbidden('this sosd is not in a cluster: no orchestrator leads it');
            await this.checkFence(fence);
          }
          const secret = Buffer.from(a.secret as string, 'base64');
          if (secret.length < 32) throw new SosError('the secret must be at least 32 bytes', { code: 'ERR_BAD_ARGS' });
          this.node.addApplication(a.app as string, secret);
          this.o.log.info({ app: a.app }, 'memory node: application let in');
          return { app: a.app, ...this.address, capacity: this.o.capacity, tls: !!this.o.tls };
        },
      },
      {
        op: 'memory.revoke',
        schema: { type: 'object', additionalProperties: false, required: ['app'], properties: { app: NAME } },
        roles: [...OPERATORS],
        handler: (a) => ({ app: a.app, revoked: this.node.removeApplication(a.app as string) }),
      },
      {
        op: 'memory.stats',
        schema: { type: 'object', additionalProperties: false, properties: {} },
        roles: ['operator', 'orchestrator', 'node'],
        handler: () => {
          const s = this.node.stats();
          return {
            ...this.address,
            capacity: s.capacity,
            reserved: s.reserved,
            connections: s.connections,
            applications: Object.keys(s.applications),
            // What each application holds here (far memory on this node) and has reserved.
            usage: Object.fromEntries(
              Object.entries(s.applications).map(([a, u]) => [
                a,
                { heldBytes: u.heldBytes, reservedBytes: u.reservedBytes },
              ]),
            ),
            tls: !!this.o.tls,
            tlsRefused: s.tlsRefused,
          };
        },
      },
    ];
  }

  /** New connections use these credentials (SIGHUP: a rotated certificate, a new CRL). */
  setTls(tls: MemoryNodeTlsOptions): void {
    this.node.setTls(tls);
  }

  close(): void {
    this.node.close();
  }
}
