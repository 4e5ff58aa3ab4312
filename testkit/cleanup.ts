// Last-resort cleanup of what tests started outside this process (workloads,
// namespaces): run on exit, and on SIGTERM/SIGINT/SIGHUP (tap's timeout, ^C),
// which would otherwise end the process without an 'exit' event.
const hooks = new Set<() => void>();
let installed = false;

function runAll(): void {
  for (const h of [...hooks]) {
    try {
      h();
    } catch {
      // best effort: the others still run
    }
  }
  hooks.clear();
}

/** Run `hook` (synchronous) when this process ends; returns a function that cancels it. */
export function onExit(hook: () => void): () => void {
  if (!installed) {
    installed = true;
    process.once('exit', runAll);
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
      process.once(sig, () => {
        runAll();
        process.kill(process.pid, sig); // the default action, now that our handler is gone
      });
    }
  }
  hooks.add(hook);
  return () => void hooks.delete(hook);
}
