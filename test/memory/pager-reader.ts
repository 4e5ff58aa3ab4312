// Worker for the fetch-failure tests: attaches the far region by id and, for
// each { offset, length } it is sent, reads that range (its fault may wait on
// a failing source) and posts a copy back; null ends it.
import { parentPort, workerData } from 'node:worker_threads';
import { Region } from '../../lib/index.js';

const r = Region.attach((workerData as { id: number }).id);
parentPort!.on('message', (m: { offset: number; length: number } | null) => {
  if (m === null) {
    r.close();
    parentPort!.close();
    return;
  }
  parentPort!.postMessage(Uint8Array.from(r.bytes(m.offset, m.length)));
});
parentPort!.postMessage('ready');
