// createNet on names that are taken: a stale file under /run/netns (its mount gone with the mount
// namespace that made it, as after `unshare --mount`) is cleared and the net is made; a live net of the
// same name is refused, and the refusal removes nothing of it.
import t from 'tap';
import crypto from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createNet, netnsNames, removeNet } from '../../lib/net/netns.js';
import { onExit } from '../../testkit/cleanup.js';

const base = `sos-nt${process.pid}`;
const prefix = `10.${crypto.randomInt(1, 255)}.${crypto.randomInt(0, 256)}`;
const names = [`${base}br`, `${base}n0`, `${base}n1`];
const forget = onExit(() => {
  for (const n of names) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
});
t.teardown(forget);

/** Whether `name` is a namespace one can enter. */
const enters = (name: string) =>
  spawnSync('ip', ['netns', 'exec', name, 'ip', '-o', 'link', 'show'], { encoding: 'utf8' }).status === 0;

void t.test('a stale namespace file is cleared; a live one is refused and kept', async (t) => {
  // Made in a mount namespace of its own, which ends: the file stays, the namespace's mount does not.
  execFileSync('unshare', ['--mount', 'ip', 'netns', 'add', names[1]]);
  t.ok(fs.existsSync(`/run/netns/${names[1]}`), 'the stale file is there');
  t.notOk(enters(names[1]), 'and is no namespace');

  const net = await createNet({ base, n: 2, prefix });
  t.same(netnsNames(net), names);
  t.ok(names.every(enters), 'every namespace of the net is real');
  const addr = execFileSync('ip', ['-n', names[1], '-o', '-4', 'addr', 'show', 'eth0'], { encoding: 'utf8' });
  t.match(addr, `inet ${prefix}.1/24`, "node0's eth0 has its address");

  await t.rejects(createNet({ base, n: 2, prefix }), 'the same names again, while they live: refused');
  t.ok(names.every(enters), 'and that removed nothing of the live net');

  await removeNet(net);
  t.notOk(
    names.some((n) => fs.existsSync(`/run/netns/${n}`)),
    'removeNet leaves no namespace',
  );
});
