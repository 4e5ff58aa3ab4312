/**
 * Files that survive a crash or a power loss once written: the data goes to a temporary file in the
 * same folder, is fsync'd, renamed over the target (atomic: a reader sees the old file or the new one,
 * never a torn one), and the folder is fsync'd so the rename itself is on disk. What another machine,
 * or the next run of a daemon, acts on is written this way before it is acknowledged.
 */
import fs from 'node:fs';
import path from 'node:path';

/** Write `data` to `file` durably (its folder made 0700 when missing). */
export async function writeDurable(file: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const dir = path.dirname(file);
  await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await fs.promises.open(tmp, 'w', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.promises.rename(tmp, file);
  await syncDir(dir);
}

/** `writeDurable`, blocking: for small files written before a process goes on (setup, exit paths). */
export function writeDurableSync(file: string, data: string | Uint8Array, mode = 0o600): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  const dfd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(dfd);
  } finally {
    fs.closeSync(dfd);
  }
}

/** Remove `file` durably (no error when it is already gone). */
export async function removeDurable(file: string): Promise<void> {
  await fs.promises.rm(file, { force: true });
  await syncDir(path.dirname(file)).catch(() => undefined);
}

/** fsync a folder, so a rename or unlink in it survives a power loss. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await fs.promises.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
