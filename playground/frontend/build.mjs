// Bundle the playground's sources into playground/static/playground/playground.js with esbuild:
// React and the JS SDK from node_modules (package-lock.json), nothing from a CDN at run time.
//   node playground/frontend/build.mjs           write the bundle (commit it with the sources)
//   node playground/frontend/build.mjs --check   exit 1 if the committed bundle is not the build's
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const outfile = join(here, "..", "static", "playground", "playground.js");

const result = await build({
  entryPoints: [join(here, "src", "main.jsx")],
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2020",
  jsx: "automatic",
  legalComments: "eof",
  charset: "utf8",
  define: { "process.env.NODE_ENV": '"production"' },
  write: false,
  absWorkingDir: join(here, "..", ".."),
  logLevel: "warning",
});
const bundle = result.outputFiles[0].contents;

if (process.argv.includes("--check")) {
  const committed = await readFile(outfile).catch(() => Buffer.alloc(0));
  if (!Buffer.from(bundle).equals(committed)) {
    console.error(`${outfile} is not the build of playground/frontend/src: run npm run build:playground`);
    process.exit(1);
  }
  console.log("the committed playground bundle matches its sources");
} else {
  await writeFile(outfile, bundle);
  console.log(`wrote ${outfile} (${bundle.length} bytes)`);
}
