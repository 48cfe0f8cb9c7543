// Bundles the console (src/main.js and the official TypeScript SDK it imports) into one
// ES module the gateway embeds. `node build.mjs [OUTFILE]` (default dist/console.js);
// the end-to-end test builds into a temporary file and compares it with the committed one.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/main.js'],
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  legalComments: 'eof',
  outfile: process.argv[2] ?? 'dist/console.js',
  logLevel: 'warning',
});
