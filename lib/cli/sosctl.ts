#!/usr/bin/env node
/**
 * sosctl — the ServerlessOS command line.
 *   sosctl probe                 what this machine offers (no daemon needed)
 *   sosctl status [--socket P]   ask the local sosd
 *   sosctl node [--socket P]     the node's capabilities, from sosd
 */
import { nodeInfo } from '../node-info.js';
import { request } from '../daemon/client.js';
import { DEFAULT_SOCKET } from '../daemon/protocol.js';

const [cmd, ...rest] = process.argv.slice(2);
const socket = rest[0] === '--socket' && rest[1] ? rest[1] : DEFAULT_SOCKET;

async function main(): Promise<number> {
  switch (cmd) {
    case 'probe':
      console.log(JSON.stringify(nodeInfo(), null, 2));
      return 0;
    case 'status':
      console.log(JSON.stringify(await request('status', {}, socket), null, 2));
      return 0;
    case 'node':
      console.log(JSON.stringify(await request('node.info', {}, socket), null, 2));
      return 0;
    case undefined:
    case 'help':
    case '--help':
      console.log('usage: sosctl probe | status [--socket PATH] | node [--socket PATH]');
      return cmd === undefined ? 2 : 0;
    default:
      console.error(`sosctl: unknown command ${cmd}`);
      return 2;
  }
}

main().then(
  (code) => process.exit(code),
  (e: Error & { code?: string }) => {
    console.error(`sosctl: ${e.message}${e.code ? ` (${e.code})` : ''}`);
    process.exit(1);
  },
);
