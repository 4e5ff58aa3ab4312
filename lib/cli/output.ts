/** How sosctl prints a result: one JSON document with --json (for scripts), else indented `key: value` lines. */
export function printDoc(json: boolean | undefined, doc: unknown, text?: string): void {
  console.log(json ? JSON.stringify(doc, null, 2) : (text ?? lines(doc, '').join('\n')));
}

function lines(v: unknown, indent: string): string[] {
  if (v === null || typeof v !== 'object') return [`${indent}${String(v)}`];
  const out: string[] = [];
  for (const [k, x] of Object.entries(v)) {
    if (x !== null && typeof x === 'object' && !(Array.isArray(x) && x.every((e) => typeof e !== 'object')))
      out.push(`${indent}${k}:`, ...lines(x, indent + '  '));
    else out.push(`${indent}${k}: ${Array.isArray(x) ? x.join(', ') : String(x)}`);
  }
  return out;
}
