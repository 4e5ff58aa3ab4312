// CRIU's own .proto files, installed with CRIU by scripts/criu/build-criu.sh
// (rpc.proto with the headers, stats.proto beside it). Loaded at run time so
// the messages always match the installed CRIU.
import { existsSync } from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import { CriuError } from './errors.js';

/** Where the .proto files are looked for, in order ($SOS_CRIU_PROTO_DIR first when set). */
export function protoDirs(): string[] {
  const dirs = ['/usr/local/include/criu', '/usr/local/share/serverlessos/criu', '/usr/include/criu'];
  const env = process.env.SOS_CRIU_PROTO_DIR;
  return env ? [env, ...dirs] : dirs;
}

export function findProto(name: string): string | null {
  for (const d of protoDirs()) {
    const p = path.join(d, name);
    if (existsSync(p)) return p;
  }
  return null;
}

const roots = new Map<string, Promise<protobuf.Root>>();

/** The parsed root of one CRIU .proto file (cached). */
export function loadProto(name: string, op: string): Promise<protobuf.Root> {
  let r = roots.get(name);
  if (!r) {
    const file = findProto(name);
    if (!file) {
      return Promise.reject(
        new CriuError(
          `CRIU's ${name} was not found in ${protoDirs().join(', ')} (scripts/criu/build-criu.sh installs it)`,
          { code: 'ERR_CRIU_NOT_FOUND', op },
        ),
      );
    }
    r = protobuf.load(file);
    r.catch(() => roots.delete(name));
    roots.set(name, r);
  }
  return r;
}
