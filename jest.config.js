/**
 * Jest runs in ESM mode (Nest 12 is ESM-only): see package.json "test".
 * Unit specs live beside the code (src/**\/*.spec.ts), end-to-end specs in test/ (*.e2e-spec.ts).
 * ts-jest transpiles each file on its own (tsconfig.json has isolatedModules): type errors are `npm run
 * typecheck`'s and the linter's to report, which keeps a cold unit tier to about a third of the time.
 */
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
    // @fastify/static requires the ESM-only content-disposition@3; jest on Node 20 cannot require(esm).
    // Tests use the CommonJS 0.5 line (same API for what Swagger UI's static files need).
    '^content-disposition$': 'content-disposition-cjs',
  },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json', diagnostics: { ignoreCodes: [151002] } }],
  },
  testMatch: ['<rootDir>/src/**/*.spec.ts', '<rootDir>/test/**/*.e2e-spec.ts'],
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  testTimeout: 60000,
  reporters: ['default', '<rootDir>/test/support/summary-reporter.cjs'],
};
