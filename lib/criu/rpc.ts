// The messages of `criu swrk`: criu_req out, criu_resp in (rpc.proto).
import type protobuf from 'protobufjs';
import { CriuError } from './errors.js';
import { loadProto } from './protos.js';

/** criu_req_type names as in rpc.proto. */
export type CriuReqType =
  | 'DUMP'
  | 'RESTORE'
  | 'CHECK'
  | 'PRE_DUMP'
  | 'PAGE_SERVER'
  | 'NOTIFY'
  | 'FEATURE_CHECK'
  | 'VERSION'
  | 'WAIT_PID'
  | 'PAGE_SERVER_CHLD'
  | 'SINGLE_PRE_DUMP';

/** criu_opts with protobufjs' camelCase field names. */
export type CriuOpts = Record<string, unknown> & { imagesDirFd: number };

export interface CriuReq {
  type: CriuReqType;
  opts?: CriuOpts;
  notifySuccess?: boolean;
  keepOpen?: boolean;
  features?: { memTrack?: boolean; lazyPages?: boolean; pidfdStore?: boolean };
  pid?: number;
}

/** criu_resp decoded: enums as names, 64-bit numbers as numbers, absent optionals absent. */
export interface CriuResp {
  type: CriuReqType | 'EMPTY';
  success: boolean;
  dump?: { restored?: boolean };
  restore?: { pid: number };
  notify?: { script?: string; pid?: number };
  ps?: { address?: string; port?: number; pid?: number; fd?: number };
  crErrno?: number;
  features?: { memTrack?: boolean; lazyPages?: boolean; pidfdStore?: boolean };
  crErrmsg?: string;
  version?: {
    majorNumber: number;
    minorNumber: number;
    gitid?: string;
    sublevel?: number;
    extra?: number;
    name?: string;
  };
  status?: number;
}

export interface RpcCodec {
  encode(req: CriuReq): Uint8Array;
  decode(bytes: Uint8Array): CriuResp;
}

let codec: Promise<RpcCodec> | undefined;

/** The codec over the installed rpc.proto (loaded once). */
export function rpcCodec(op = 'rpc'): Promise<RpcCodec> {
  codec ??= loadProto('rpc.proto', op).then(makeCodec);
  codec.catch(() => {
    codec = undefined;
  });
  return codec;
}

function makeCodec(root: protobuf.Root): RpcCodec {
  const Req = root.lookupType('criu_req');
  const Resp = root.lookupType('criu_resp');
  return {
    encode(req) {
      const msg = Req.fromObject(req);
      const err = Req.verify(msg);
      if (err) throw new CriuError(`bad criu_req: ${err}`, { code: 'ERR_CRIU_PROTOCOL', op: req.type.toLowerCase() });
      return Req.encode(msg).finish();
    },
    decode(bytes) {
      try {
        const m = Resp.decode(bytes);
        return Resp.toObject(m, { enums: String, longs: Number, defaults: false }) as CriuResp;
      } catch (e) {
        throw new CriuError(`CRIU sent a message that is not a criu_resp: ${(e as Error).message}`, {
          code: 'ERR_CRIU_PROTOCOL',
          op: 'rpc',
          cause: e,
        });
      }
    },
  };
}
