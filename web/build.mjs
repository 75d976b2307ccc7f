// Bundles the UI into <outdir> (default dist/): index.html, app.js, app.css. Offline once the
// npm packages are installed; runtime/build.rs calls it and embeds the result in the binary.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const outdir = process.argv[2] ?? "dist";
mkdirSync(join(outdir, "assets"), { recursive: true });
await build({
  entryPoints: ["src/main.jsx"],
  bundle: true,
  minify: true,
  sourcemap: false,
  format: "esm",
  target: ["chrome110", "firefox110", "safari16"],
  jsx: "automatic",
  jsxImportSource: "preact",
  outfile: join(outdir, "assets", "app.js"),
  logLevel: "warning",
});
copyFileSync("src/index.html", join(outdir, "index.html"));
copyFileSync("src/app.css", join(outdir, "assets", "app.css"));
