/**
 * Import boundaries of src/ (run by `npm run lint`). The modules are layered; an import may only point
 * down the list in LAYERS, never up and never across in a cycle. README, "Development", draws the picture.
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
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
