// Layer rules: agents import only shared/; the controller never imports an agent; shared/ imports nothing of ours.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const agentDirs = ['kvmagent', 'storageagent', 'vrouteragent'];
const forbid = (dirs) => dirs.flatMap((d) => [`**/${d}/**`, `../${d}/**`, `../../${d}/**`]);

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'scripts/guest-image/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['shared/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      'no-restricted-imports': ['error', { patterns: forbid(['controller', ...agentDirs, 'test']) }],
    },
  },
  {
    files: ['controller/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: forbid([...agentDirs, 'simulator']) }] },
  },
  // the simulator hosts agents' code in one process; it never imports the controller or tests
  {
    files: ['simulator/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: forbid(['controller', 'test']) }] },
  },
  ...agentDirs.map((a) => ({
    files: [`${a}/**/*.ts`],
    rules: {
      'no-restricted-imports': ['error', { patterns: forbid(['controller', ...agentDirs.filter((x) => x !== a)]) }],
    },
  })),
  { files: ['test/**/*.ts', 'scripts/**/*.ts'], rules: { '@typescript-eslint/no-explicit-any': 'off', '@typescript-eslint/no-non-null-assertion': 'off' } },
);
