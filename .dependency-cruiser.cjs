// dependency-cruiser: the import graph of lib/ (scripts/lint.sh, step "cycles").
// A runtime import cycle makes load order matter: a module of the cycle can run while another one's
// exports are still undefined (or in the temporal dead zone). Type-only imports are allowed to close a
// cycle, because TypeScript erases them: the verbs tree needs them (a child names its parent's type,
// the parent creates the child). A value import that is used only as a type still counts: write it
// `import type`, so that what is checked is what is loaded.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-runtime-cycle',
      comment: 'lib/ has no runtime import cycle (type-only imports may close one).',
      severity: 'error',
      from: { path: '^lib/' },
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
