// Lint is part of `npm test`. typescript-eslint's recommended rules plus the
// few that catch real operator bugs (floating promises lose errors silently),
// and the house's layer rules (docs/design.md §5) as import restrictions.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// ---------------------------------------------------------------------------
// Layers (docs/design.md §5). Each top-level folder of src/ lists the folders
// it may import; every other folder of src/ is refused, for static imports,
// `export … from` and literal `import()` alike. Imports are relative, so a
// refused folder is matched as `../<folder>/` (any depth of `../`): no
// subfolder of src/ is named like a top-level one except drivers/libvirt and
// drivers/vsphere, which only drivers/ (allowed both) can reach that way.
const SRC = ['api', 'model', 'planner', 'libvirt', 'vsphere', 'drivers', 'manifests', 'controller', 'kube', 'standalone', 'cli', 'util'];
// src/util (sleep, backoff, JSON equality) is a leaf every layer may use, except the pure
// planner and model: its helpers wait on timers.
const UTIL_USERS = ['libvirt', 'vsphere', 'drivers', 'manifests', 'controller', 'kube', 'standalone'];
const LAYERS = {
  util: { may: [], why: 'src/util is a leaf: it imports nothing of src' },
  api: { may: [], why: 'src/api is the bottom layer: it imports nothing else of src' },
  model: { may: ['api'], why: 'src/model imports only src/api' },
  planner: { may: ['model', 'api'], why: 'the planner is pure: it imports only src/model and src/api' },
  libvirt: { may: [], why: 'the libvirt protocol client knows nothing of vmmem: it imports nothing of src' },
  vsphere: { may: [], why: 'the vSphere protocol client knows nothing of vmmem: it imports nothing of src' },
  manifests: { may: ['api'], why: 'manifest loading imports only src/api' },
  drivers: { may: ['model', 'api', 'libvirt', 'vsphere'], why: 'drivers import only src/model, src/api and the protocol clients' },
  controller: {
    may: ['planner', 'drivers', 'model', 'api'],
    why: 'the controller owns the store ports; src/kube and src/standalone implement them, src/cli composes them',
  },
  kube: { may: ['controller', 'api'], why: 'src/kube implements the controller\'s ports: it imports src/controller and src/api only' },
  standalone: {
    may: ['controller', 'manifests', 'api'],
    why: 'src/standalone implements the controller\'s ports over manifests: it imports src/controller, src/manifests and src/api only',
  },
};
// Packages that stay inside one layer: only src/kube talks to the Kubernetes API.
const PACKAGE_HOMES = { '@kubernetes/client-node': 'kube' };
// The planner and the model are pure: no node: module, no package.
const PURE = new Set(['planner', 'model']);

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function layerRules(layer) {
  const { may, why } = LAYERS[layer];
  const refused = SRC.filter((f) => f !== layer && !may.includes(f) && !(f === 'util' && UTIL_USERS.includes(layer)));
  const folderRe = refused.length > 0 ? `^(\\.\\./)+(${refused.join('|')})/` : undefined;
  const patterns = [];
  if (folderRe) patterns.push({ regex: folderRe, message: `layer rule (docs/design.md §5): ${why}.` });
  for (const [pkg, home] of Object.entries(PACKAGE_HOMES)) {
    if (home !== layer) patterns.push({ regex: `^${escape(pkg)}(/|$)`, message: `only src/${home} imports ${pkg} (docs/design.md §5).` });
  }
  if (PURE.has(layer)) patterns.push({ regex: '^[^.]', message: `${why}; no node: module or package (pure: no I/O).` });
  const dynamic = [folderRe, PURE.has(layer) ? '^[^.]' : undefined].filter(Boolean);
  return {
    files: [`src/${layer}/**/*.ts`],
    rules: {
      'no-restricted-imports': ['error', { patterns }],
      'no-restricted-syntax': ['error', ...literalImportOnly, ...dynamic.map((re) => ({
        selector: `ImportExpression[source.value=/${re.replace(/\//g, '\\/')}/]`,
        message: `layer rule (docs/design.md §5): ${why}.`,
      }))],
    },
  };
}

// Lazy loading names its module literally, so tsc types it and the layer rules see it.
const literalImportOnly = [{
  selector: 'ImportExpression > :not(Literal).source',
  message: 'import() takes a literal path (typed, and visible to the layer rules), not a variable or expression.',
}];

export default tseslint.config(
  { ignores: ['.tmp/**', 'node_modules/**', 'crds/**', 'deploy/**', '**/*.go', 'test/env/go/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test's test()/describe() return promises the runner itself awaits.
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  // src/cli is the composition root: it may import every layer, but still loads lazily by literal path.
  { files: ['src/cli/**/*.ts'], rules: { 'no-restricted-syntax': ['error', ...literalImportOnly] } },
  ...Object.keys(LAYERS).map(layerRules),
  {
    files: ['**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
