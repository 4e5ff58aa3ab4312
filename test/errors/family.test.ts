// One error family: every error class the package exports is a SosError and is listed in
// docs/errors.md, and every ERR_ code the library or the addon uses is documented there.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as pkg from '../../lib/index.js';
import { SosError } from '../../lib/errors.js';
import { native } from '../../lib/native/index.js';

// dist/test/errors/ → the checkout.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const doc = fs.readFileSync(path.join(root, 'docs', 'errors.md'), 'utf8');

type Ctor = abstract new (...args: never[]) => unknown;

/** Every class reachable from the package's exports (namespaces such as `rdma` are walked too). */
function errorClasses(): Map<string, Ctor> {
  const found = new Map<string, Ctor>();
  const walk = (ns: object, where: string) => {
    for (const [name, v] of Object.entries(ns) as [string, unknown][]) {
      if (typeof v === 'function' && (v as { prototype: unknown }).prototype instanceof Error)
        found.set(name, v as Ctor);
      else if (v && typeof v === 'object' && Object.getPrototypeOf(v) === null) walk(v, `${where}${name}.`);
    }
  };
  walk(pkg, '');
  return found;
}

void t.test('every exported error class is a SosError listed in docs/errors.md', async (t) => {
  const classes = errorClasses();
  t.ok(classes.size >= 20, `found ${classes.size} exported error classes`);
  for (const name of ['SosError', 'SystemError', 'StateError', 'ArgTypeError', 'CriuError', 'MigrationError'])
    t.ok(classes.has(name), `${name} is among them`);
  for (const [name, cls] of classes) {
    t.ok(cls === SosError || cls.prototype instanceof SosError, `${name} is a SosError`);
    t.match(doc, new RegExp(`^\\| \`${name}\``, 'm'), `${name} has a row in docs/errors.md`);
  }
});

void t.test('argument errors are Node-style and SosErrors', async (t) => {
  const cases = [
    [new pkg.ArgTypeError('x'), TypeError, 'ERR_INVALID_ARG_TYPE'],
    [new pkg.ArgValueError('x'), TypeError, 'ERR_INVALID_ARG_VALUE'],
    [new pkg.ArgRangeError('x'), RangeError, 'ERR_OUT_OF_RANGE'],
  ] as const;
  for (const [e, base, code] of cases) {
    t.ok(e instanceof SosError && e instanceof base, `${code}: a SosError and a ${base.name}`);
    t.equal(e.code, code);
  }
  // The addon throws the same classes for what it re-checks (here: a spec that is not an object).
  const err = t.throws(() => new native.NativeRegion(42 as never)) as Error & { code?: string };
  t.ok(err instanceof SosError, `the addon's ${err.name} (${err.code}) is a SosError`);
  t.notOk(new Error('plain') instanceof SosError, 'a plain Error is not');
});

void t.test('a SosError keeps its code and cause', async (t) => {
  const cause = new Error('below');
  const e = new pkg.StateError('above', { code: 'ERR_BUSY', cause });
  t.equal(e.code, 'ERR_BUSY');
  t.equal(e.cause, cause);
  t.equal(e.name, 'StateError');
});

/** Quoted ERR_ codes in the sources under `dir` (TypeScript or C++). */
function codesIn(dir: string, exts: string[]): Map<string, string> {
  const codes = new Map<string, string>();
  for (const entry of fs.readdirSync(path.join(root, dir), { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !exts.some((x) => entry.name.endsWith(x))) continue;
    const file = path.join(entry.parentPath, entry.name);
    for (const m of fs.readFileSync(file, 'utf8').matchAll(/['"](ERR_[A-Z0-9_]*[A-Z0-9])['"]/g))
      codes.set(m[1], path.relative(root, file));
  }
  return codes;
}

void t.test('every ERR_ code the library and the addon use is documented', async (t) => {
  const documented = new Set([...doc.matchAll(/`(ERR_[A-Z0-9_]+|[A-Z_]+_ERR(?:OR)?)`/g)].map((m) => m[1]));
  const used = new Map([...codesIn('lib', ['.ts']), ...codesIn('native', ['.cc', '.h'])]);
  t.ok(used.size >= 30, `${used.size} codes used`);
  for (const [code, file] of used) t.ok(documented.has(code), `${code} (${file}) is in docs/errors.md`);
});
