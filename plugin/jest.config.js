// Jest runs the editors and the data source in jsdom. @swc/jest compiles
// TypeScript and JSX the way the build does (the classic JSX runtime).
const swc = {
  jsc: {
    parser: { syntax: 'typescript', tsx: true },
    transform: { react: { runtime: 'classic' } },
    target: 'es2020',
  },
  module: { type: 'commonjs' },
};

// Packages that @grafana/data, @grafana/ui and @grafana/runtime load and
// that ship ES modules only (package.json "type": "module" without a
// "require" export); Jest runs CommonJS, so it compiles these too.
const esmOnly = [
  '@grafana/react-data-grid',
  '@react-hookz/web',
  '@ver0/deep-equal',
  '@wojtekmaj/date-utils',
  '@zarrita/storage',
  'd3-[a-z-]+',
  'earcut',
  'get-user-locale',
  'internmap',
  'marked',
  'memoize',
  'mimic-function',
  'numcodecs',
  'ol',
  'pbf',
  'quick-lru',
  'quickselect',
  'rbush',
  'react-calendar',
  'reference-spec-reader',
  'unzipit',
  'uwrap',
  'zarrita',
];

module.exports = {
  testEnvironment: 'jsdom',
  // A test waits on conditions (findBy*), never fixed sleeps; on a loaded
  // machine the first render of @grafana/ui's components can take seconds.
  testTimeout: 60_000,
  roots: ['<rootDir>/src'],
  setupFilesAfterEnv: ['<rootDir>/jest-setup.ts'],
  transform: {
    '^.+\\.(t|j)sx?$': ['@swc/jest', swc],
    '^.+\\.m?js$': ['@swc/jest', { ...swc, jsc: { ...swc.jsc, parser: { syntax: 'ecmascript' } } }],
  },
  moduleNameMapper: { '\\.(css|scss|sass)$': '<rootDir>/jest/style-stub.js' },
  transformIgnorePatterns: [`node_modules/(?!(${esmOnly.join('|')})/)`],
};
