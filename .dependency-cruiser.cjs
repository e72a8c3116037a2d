/**
 * Import boundaries of src/ (run by `npm run lint`). The modules are layered; an import may only point
 * down the list in LAYERS, never up and never across in a cycle. README, "Development", draws the picture.
 */

/**
 * Bottom first. A module may import modules of lower layers only (not its own layer, not higher ones).
 * `oci` and `config` know nothing else of src/; `common` is the HTTP plumbing every admin module uses.
 */
const LAYERS = [
  ['oci', 'config'],
  ['common', 'database', 'redis'],
  ['jobs', 'invalidation', 'storage'],
  ['observability'],
  ['accounts'],
  ['registries'],
  ['auth', 'upstreams'],
  ['cache-entries'],
  ['lifecycle'],
  ['proxy'],
  ['prefetch'],
];

const layering = LAYERS.flatMap((layer, index) =>
  layer.map((module) => {
    const notBelow = LAYERS.slice(index)
      .flat()
      .filter((other) => other !== module);
    return {
      name: `layer-${module}`,
      severity: 'error',
      comment: `src/${module} may only import modules below it: ${LAYERS.slice(0, index).flat().join(', ') || 'none'}.`,
      from: { path: `^src/${module}/` },
      to: { path: `^src/(${notBelow.join('|')})/` },
    };
  }),
);

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    ...layering,
    {
      name: 'no-app-root-imports',
      severity: 'error',
      comment: 'The process entry points and the app module (src/*.ts) sit on top: no module imports them.',
      from: { path: '^src/[^/]+/' },
      to: { path: '^src/[^/]+\\.ts$' },
    },
    {
      name: 'unknown-module',
      severity: 'error',
      comment: 'Every folder of src/ is a module with a place in LAYERS (add a new one there).',
      from: { path: '^src/' },
      to: { path: `^src/(?!(${LAYERS.flat().join('|')})/)[^/]+/` },
    },
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'A file cycle inside src/.',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'oci-is-pure',
      severity: 'error',
      comment: 'src/oci is the pure domain: no Nest, no other module of src/.',
      from: { path: '^src/oci/' },
      to: { path: ['^src/(?!oci/)', '^node_modules/@nestjs/', '^node_modules/typeorm/'] },
    },
    {
      name: 'not-to-test',
      severity: 'error',
      comment: 'Production code never imports test code.',
      from: { path: '^src/', pathNot: '\\.(spec|contract)\\.ts$' },
      to: { path: ['^test/', '\\.(spec|contract)\\.ts$'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'], extensions: ['.ts', '.js'] },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
