// A fault-handler process: `node handler-process.js PID FD ADDRESS LENGTH SERVE SEED`
// adopts userfaultfd FD of process PID, registers [ADDRESS, ADDRESS+LENGTH),
// prints "READY", then serves the first SERVE faults with pattern pages of
// SEED (page index counted from ADDRESS) and prints "SERVED <page>" for
// each; the next fault it only reports ("STUCK <page>") and leaves
// unresolved. The test kills it there.
import { Userfaultfd } from '../../lib/index.js';
import { patternPage } from './pattern.js';

const [pid, fd, address, length, serve, seed] = process.argv.slice(2).map(Number);
const u = Userfaultfd.fromProcess(pid, fd);
u.register({ address, length });
let served = 0;
u.on('pagefault', (ev) => {
  const page = (ev.address - address) / 4096;
  if (served < serve) {
    served++;
    u.copy({ address: ev.address, length: 4096 }, patternPage(page, seed));
    console.log(`SERVED ${page}`);
  } else console.log(`STUCK ${page}`);
});
console.log('READY');
