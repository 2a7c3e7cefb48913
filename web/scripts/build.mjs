// Builds the app into dist/: one ES module bundle (esbuild), the page, the stylesheet, the icon.
// config.json is not built: the host serves it (scripts/local-stack locally, Terraform on AWS).
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";

const dist = new URL("../dist/", import.meta.url);
await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
  entryPoints: [new URL("../src/main.ts", import.meta.url).pathname],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: true,
  outfile: new URL("app.js", dist).pathname,
  logLevel: "warning",
});
for (const file of ["index.html", "app.css", "favicon.svg"]) {
  await copyFile(new URL(`../src/${file}`, import.meta.url), new URL(file, dist));
}
console.log("web: built dist/");
