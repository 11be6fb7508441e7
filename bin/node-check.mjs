/* global process */
// Plain JavaScript on purpose: it must run on any Node, to say clearly that vmmem needs Node 24
// (older Nodes cannot load TypeScript sources and fail with ERR_UNKNOWN_FILE_EXTENSION).
const REQUIRED_MAJOR = 24;
const major = Number(process.versions.node.split('.')[0]);
if (!(major >= REQUIRED_MAJOR)) {
  process.stderr.write(
    `vmmem: needs Node.js ${REQUIRED_MAJOR} or newer (package.json "engines"); this is Node.js ${process.versions.node} (${process.execPath}).\n` +
      `Install Node.js ${REQUIRED_MAJOR} (https://nodejs.org), or run \`npm ci\` in the repository: it installs Node ${REQUIRED_MAJOR} into node_modules/.bin, which bin/vmmem prefers.\n`,
  );
  process.exit(1);
}
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
