/**
 * Desired state: the processes the cluster should run, `desired/<app>/<id>` in etcd, durable (not
 * leased: it outlives every node and every leader). `submit` numbers a process with the same counter
 * sosd's direct runs use (`apps/<app>/next`), so APP/ID is unique whichever way it started, and
 * writes its spec in the same transaction: once it resolves the process will be placed, by whichever
 * orchestrator leads. A spec is run-once (a job, not a service): placed once, then its process's own
 * entry (lib/cluster/processes.ts) says how it goes.
 */
import { Ajv } from 'ajv';
import { etcdError } from '../cluster/errors.js';
import { jsonObject, readKey, readPrefix } from '../cluster/reads.js';
import { DESIRED, desiredKey } from '../cluster/keys.js';
import { counterKey } from '../cluster/processes.js';
import type { Store } from '../cluster/store.js';
import { OrchestratorError } from './errors.js';

export interface Limits {
  memoryBytes?: number | null;
  cpu?: { quotaUs: number; periodUs?: number } | null;
  pids?: number | null;
}

/** What to run: sosd's apps.run arguments, and where it may go. */
export interface ProcessRequest {
  app: string;
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  limits?: Limits;
  /** Only on this node (default: wherever the placement policy puts it). */
  node?: string;
  /**
   * Its large memory on memory nodes (sosctl run --far-memory without --node): at placement the
   * leader lets the application in on each of `memoryNodes` with `secret` and has the chosen node's
   * sosd page it (apps.run's farMemory). The secret is made once, at submit, so a placement asked
   * again lets it in with the same one.
   */
  farMemory?: FarRequest;
}

export interface FarRequest {
  localBytes: number;
  farBytes: number;
  replicas?: number;
  /** The cluster nodes whose memory nodes hold its pages. */
  memoryNodes: string[];
  /** The application's secret on them, base64. */
  secret: string;
}

export interface ProcessSpec extends ProcessRequest {
  id: number;
  /** When it was submitted (ISO 8601). */
  submittedAt: string;
}

const NAME = { type: 'string', pattern: '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$' } as const;

/** The fields of a run request (apps.run's and submit's schema). */
export const RUN_PROPERTIES = {
  app: NAME,
  argv: { type: 'array', minItems: 1, maxItems: 4096, items: { type: 'string', maxLength: 65536 } },
  env: { type: 'object', maxProperties: 4096, additionalProperties: { type: 'string', maxLength: 65536 } },
  cwd: { type: 'string', maxLength: 4096 },
  limits: {
    type: 'object',
    additionalProperties: false,
    properties: {
      memoryBytes: { type: ['integer', 'null'], minimum: 1 },
      cpu: {
        type: ['object', 'null'],
        additionalProperties: false,
        required: ['quotaUs'],
        properties: { quotaUs: { type: 'integer', minimum: 1000 }, periodUs: { type: 'integer', minimum: 1000 } },
      },
      pids: { type: ['integer', 'null'], minimum: 1 },
    },
  },
} as const;

/** A request to run a process somewhere in the cluster (sosd's orchestrator.submit). */
export const REQUEST_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['app', 'argv'],
  properties: {
    ...RUN_PROPERTIES,
    node: { type: 'string', pattern: '^[a-z0-9][a-z0-9.-]{0,62}$' },
    farMemory: {
      type: 'object',
      additionalProperties: false,
      required: ['localBytes', 'farBytes', 'memoryNodes', 'secret'],
      properties: {
        localBytes: { type: 'integer', minimum: 128 * 4096, maximum: 2 ** 46, multipleOf: 4096 },
        farBytes: { type: 'integer', minimum: 128 * 4096, maximum: 2 ** 46, multipleOf: 4096 },
        replicas: { type: 'integer', minimum: 1, maximum: 16 },
        memoryNodes: { type: 'array', minItems: 1, maxItems: 16, items: NAME },
        secret: { type: 'string', minLength: 44, maxLength: 1368, pattern: '^[A-Za-z0-9+/]+={0,2}$' },
      },
    },
  },
} as const;

const SPEC_SCHEMA = {
  ...REQUEST_SCHEMA,
  required: ['app', 'argv', 'id', 'submittedAt'],
  properties: {
    ...REQUEST_SCHEMA.properties,
    id: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
    submittedAt: { type: 'string', maxLength: 64 },
  },
} as const;

const MAX_SPEC = 1 << 20;
const checkSpec = new Ajv({ strict: true }).compile(SPEC_SCHEMA);
const checkRequest = new Ajv({ strict: true }).compile(REQUEST_SCHEMA);

/** A spec read from etcd (any member may write there): size-limited and schema-checked; null when it is not one. */
export function parseSpec(key: string, text: unknown): ProcessSpec | null {
  const v = jsonObject<ProcessSpec>(text, MAX_SPEC);
  if (!checkSpec(v)) return null;
  const s = v as ProcessSpec;
  return key === desiredKey(s.app, s.id) ? s : null;
}

/** Number `r` and make it desired, in one transaction: durable once this resolves. */
export async function submit(store: Store, r: ProcessRequest): Promise<ProcessSpec> {
  if (!checkRequest(r))
    throw new OrchestratorError(
      `bad request: ${checkRequest.errors?.[0]?.instancePath || '/'} ${checkRequest.errors?.[0]?.message}`,
      {
        code: 'ERR_BAD_ARGS',
      },
    );
  const kv = store.kv;
  const counter = counterKey(r.app);
  for (let attempt = 0; attempt < 32; attempt++) {
    const at = await readKey(store, counter, `numbering a process of ${r.app}`);
    const id = at ? Number(at.value) : 1;
    if (!Number.isSafeInteger(id) || id < 1)
      throw new OrchestratorError(`${counter} holds ${JSON.stringify(at?.value)}, not a number`, {
        code: 'ERR_BAD_RECORD',
      });
    const spec: ProcessSpec = { ...r, id, submittedAt: new Date().toISOString() };
    const res = await kv
      .if(counter, 'Mod', '==', at ? at.mod : '0')
      .and(desiredKey(r.app, id), 'Create', '==', 0)
      .then(kv.put(counter).value(String(id + 1)), kv.put(desiredKey(r.app, id)).value(JSON.stringify(spec)))
      .commit()
      .catch((e: Error) => {
        throw etcdError(`submitting a process of ${r.app}`, e);
      });
    if (res.succeeded) return spec;
  }
  throw new OrchestratorError(`could not number a process of ${r.app}: too many concurrent submits`, {
    code: 'ERR_FENCED',
  });
}

/** Every desired process, by app and id; malformed entries are skipped. */
export async function listDesired(store: Store): Promise<ProcessSpec[]> {
  const out: ProcessSpec[] = [];
  for (const r of await readPrefix(store, DESIRED, 'listing desired processes')) {
    const s = parseSpec(r.key, r.value);
    if (s) out.push(s);
  }
  return out.sort((a, b) => a.app.localeCompare(b.app) || a.id - b.id);
}

/** The desired process `app/id`, or null. */
export async function readDesired(store: Store, app: string, id: number): Promise<ProcessSpec | null> {
  const r = await readKey(store, desiredKey(app, id), `reading desired ${app}/${id}`);
  return r ? parseSpec(r.key, r.value) : null;
}

/** No longer desired (sosctl rm): its action and process entry are left to say what happened. */
export async function removeDesired(store: Store, app: string, id: number): Promise<boolean> {
  const res = await store.kv
    .delete()
    .key(desiredKey(app, id))
    .exec()
    .catch((e: Error) => {
      throw etcdError(`removing desired ${app}/${id}`, e);
    });
  return Number(res.deleted) > 0;
}
