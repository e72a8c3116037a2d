// ESLint flat config: typescript-eslint's recommended type-checked rules. The rules switched off below are
// those the code base cannot meet without a rewrite; each says why.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Interface implementations (QueueDriver, BlobStore, Nest hooks) are async by contract even when a driver's body is synchronous.
      '@typescript-eslint/require-await': 'off',
      // Static DTO mappers (`items.map(RegistryResponseDto.from)`) never use `this`; binding each would be noise.
      '@typescript-eslint/unbound-method': 'off',
      // Abort reasons and rethrown unknown errors are passed on as they came (`reject(signal.reason)`).
      '@typescript-eslint/prefer-promise-reject-errors': 'off',
      // Raw `query()` results are asserted to their row types (`(await q.query(sql)) as Row[]`); the rule now asks for type
      // arguments instead, a change across ~40 query sites that other branches edit: switch on once those have merged.
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
    },
  },
  {
    // Tests and the benchmark read JSON bodies as `any` on purpose (they assert on what the server sent);
    // typing every response would be a rewrite of the suites.
    files: ['test/**/*.ts', 'bench/**/*.ts', 'src/**/*.spec.ts', 'src/**/*.contract.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/restrict-template-expressions': 'off',
    },
  },
  {
    // src/proxy's data path (pull.service, proxy-blob-store, blob-fills) is being rewritten on another branch;
    // these are the rules its current files do not meet, switched off for src/proxy only until that lands.
    files: ['src/proxy/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
    },
  },
  { files: ['**/*.js', '**/*.cjs'], ...tseslint.configs.disableTypeChecked },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', module: 'writable', process: 'readonly', console: 'readonly' } },
  },
);
