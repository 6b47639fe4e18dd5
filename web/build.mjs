// Build the browser assets that disco-server serves under /app/ (and a built wheel ships).
//
// Output (src/disco/web/static/, not committed):
//   disco.js                      the engine's stable URL: re-exports assets/disco-<hash>.js
//   index.html, <page>.html       pages, their scripts and styles referenced by hashed names
//   assets/<name>-<hash>.{js,css,wasm}   content-hashed, served as immutable
//   *.gz                          gzip variants the server sends to clients that accept them
//   build.json                    what was built from which sources (the bootstrap's stamp)
//
// The pages import the engine through its served URL ("../disco.js" from assets/), so one copy
// of the engine and of TF.js runs in a page, and pages use exactly the public API.
//
// usage: node build.mjs [--stamp HASH]

import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "disco", "web", "static");
const assets = join(out, "assets");
const stampIndex = process.argv.indexOf("--stamp");
const stamp = stampIndex > 0 ? process.argv[stampIndex + 1] : "";

const version = /__version__\s*=\s*"([^"]+)"/.exec(
  readFileSync(join(here, "..", "src", "disco", "__init__.py"), "utf8"),
)?.[1];
if (!version) throw new Error("cannot read __version__ from src/disco/__init__.py");

const shortHash = (bytes) => createHash("sha256").update(bytes).digest("hex").slice(0, 12);

rmSync(out, { recursive: true, force: true });
mkdirSync(assets, { recursive: true });

// 1. tfjs-backend-wasm binaries, content-hashed, beside the engine module.
const wasmDir = join(here, "node_modules", "@tensorflow", "tfjs-backend-wasm", "dist");
const wasmFiles = {};
for (const name of readdirSync(wasmDir).filter((n) => n.endsWith(".wasm")).sort()) {
  const bytes = readFileSync(join(wasmDir, name));
  const hashed = `${basename(name, ".wasm")}-${shortHash(bytes)}.wasm`;
  copyFileSync(join(wasmDir, name), join(assets, hashed));
  wasmFiles[name] = `./${hashed}`;
}

const common = {
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  minify: true,
  legalComments: "none",
  metafile: true,
  logLevel: "warning",
  define: {
    __DISCO_WASM_FILES__: JSON.stringify(wasmFiles),
    __DISCO_VERSION__: JSON.stringify(version),
  },
};

// 2. The engine.
const engine = await esbuild.build({
  ...common,
  entryPoints: { disco: join(here, "src", "engine", "index.ts") },
  outdir: assets,
  entryNames: "[name]-[hash]",
});
const engineFile = Object.keys(engine.metafile.outputs).find((p) => p.endsWith(".js"));
writeFileSync(
  join(out, "disco.js"),
  `// DISCO browser engine ${version}: see docs/web-engine.md\n` +
    `export * from "./assets/${basename(engineFile)}";\n`,
);

// 3. Pages: every src/app/<page>.html; its {{name.js}} / {{name.css}} are src/app/<name>.ts|css.
const appDir = join(here, "src", "app");
const templates = readdirSync(appDir).filter((n) => n.endsWith(".html")).sort();
const entries = new Set();
for (const template of templates) {
  for (const [, name] of readFileSync(join(appDir, template), "utf8").matchAll(/\{\{([\w.-]+)\}\}/g)) {
    entries.add(name);
  }
}
const entryPoints = {};
for (const name of entries) {
  const [stem, ext] = [name.slice(0, name.lastIndexOf(".")), name.slice(name.lastIndexOf(".") + 1)];
  entryPoints[`${stem}.${ext}`] = join(appDir, ext === "js" ? `${stem}.ts` : name);
}
const engineIsExternal = {
  name: "engine-is-external",
  setup(build) {
    build.onResolve({ filter: /(^|\/)engine\/index(\.js)?$/ }, () => ({
      path: "../disco.js",
      external: true,
    }));
  },
};
const pages = await esbuild.build({
  ...common,
  entryPoints: Object.entries(entryPoints).map(([name, path]) => ({
    in: path,
    out: name.slice(0, name.lastIndexOf(".")),
  })),
  outdir: assets,
  entryNames: "[name]-[hash]",
  chunkNames: "chunk-[hash]",
  splitting: true,
  plugins: [engineIsExternal],
});
const served = {};
for (const [path, meta] of Object.entries(pages.metafile.outputs)) {
  if (!meta.entryPoint) continue;
  const source = relative(appDir, meta.entryPoint);
  const key = source.endsWith(".ts") ? source.replace(/\.ts$/, ".js") : source;
  served[key] = `/app/assets/${basename(path)}`;
}
for (const template of templates) {
  const html = readFileSync(join(appDir, template), "utf8").replace(
    /\{\{([\w.-]+)\}\}/g,
    (_, name) => {
      if (!(name in served)) throw new Error(`${template}: no asset built for {{${name}}}`);
      return served[name];
    },
  );
  writeFileSync(join(out, template), html);
}

// 4. gzip variants, and the manifest.
const files = [];
const walk = (dir) => {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walk(path);
    else files.push(path);
  }
};
walk(out);
for (const path of files) {
  if (/\.(js|css|html|wasm|json)$/.test(path)) {
    writeFileSync(`${path}.gz`, gzipSync(readFileSync(path), { level: 9 }));
  }
}
writeFileSync(
  join(out, "build.json"),
  JSON.stringify(
    {
      version,
      sources: stamp,
      engine: `assets/${basename(engineFile)}`,
      wasm: wasmFiles,
      pages: templates,
      files: files.map((p) => relative(out, p)).sort(),
    },
    null,
    2,
  ) + "\n",
);
console.error(`[web] built ${files.length} files into ${relative(join(here, ".."), out)}`);
