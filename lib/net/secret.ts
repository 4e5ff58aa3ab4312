/**
 * The secret the agents (and RdmaConnection's peers) share: 32 random bytes, so that neither the
 * handshake nor the keys derived from it can be brute-forced. A shorter secret is refused.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { SystemError, argType } from '../errors.js';
import { ChannelError } from './channel-error.js';

/** Bytes of a shared secret, at least. */
export const SECRET_BYTES = 32;

/** A fresh shared secret: 32 bytes from the system's CSPRNG. */
export function generateSecret(): Buffer {
  return crypto.randomBytes(SECRET_BYTES);
}

/**
 * Write a fresh secret to `path` (created with mode 0600; an existing file is never overwritten, EEXIST)
 * and flush it to disk; resolves with the secret. Rejects with SystemError.
 */
export async function writeSecretFile(path: string): Promise<Buffer> {
  if (typeof path !== 'string' || !path) throw argType('path must be a file path');
  const secret = generateSecret();
  try {
    // O_CREAT|O_EXCL: fails on any existing entry, a symlink included.
    const fh = await fs.promises.open(path, 'wx', 0o600);
    try {
      await fh.writeFile(secret);
      await fh.sync();
    } catch (e) {
      await fs.promises.unlink(path).catch(() => undefined); // no half-written secret left behind
      throw e;
    } finally {
      await fh.close();
    }
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new SystemError(`cannot write the secret file ${path}: ${err.message}`, {
      code: err.code ?? 'EIO',
      errno: err.errno ?? 0,
      syscall: err.syscall ?? 'open',
      cause: err,
    });
  }
  return secret;
}

/**
 * A shared secret given as a string or a Buffer, as a Buffer (`name` is the argument's name in the error).
 * Throws ChannelError ERR_WEAK_SECRET when it is shorter than 32 bytes.
 */
export function secretBuffer(s: unknown, name = 'secret'): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s) : s;
  if (!Buffer.isBuffer(b)) throw argType(`${name} must be a Buffer or a string`);
  if (b.length < SECRET_BYTES)
    throw new ChannelError(
      `${name} is ${b.length} bytes: a shared secret must be at least ${SECRET_BYTES} random bytes ` +
        `(make one with generateSecret() or writeSecretFile(), or: head -c ${SECRET_BYTES} /dev/urandom > secret)`,
      { code: 'ERR_WEAK_SECRET' },
    );
  return b;
}
