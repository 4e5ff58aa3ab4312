import t from 'tap';
import { Userfaultfd } from '../../lib/index.js';

void t.test('probe reports what this kernel offers', async (t) => {
  const s = Userfaultfd.probe();
  t.ok(s.features.has('THREAD_ID'));
  t.ok(s.ioctls.has('API'));
});
