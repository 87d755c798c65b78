/**
 * Builds the browser page (web/) with esbuild: web/main.ts and the library under it (src/, demo.ts) as
 * one ES module, with the WGSL kernels inlined as text (the same `import … with { type: "text" }` the
 * runtimes read) and the `node:` built-ins replaced by their browser stand-ins in src/platform/browser/
 * (an in-memory file system, POSIX paths, an empty environment, SHA-256, …). The runtime-only packages
 * (`webgpu`, Dawn; `bun:ffi`) become a module that fails to load, as a missing package does, and
 * `@huggingface/hub` is its browser build.
 *
 * Usage: `deno run -A scripts/web_build.ts [--out DIR]` writes index.html and main.js to DIR (default
 * runs/web); `deno task web` builds in memory and serves (scripts/web_serve.ts).
 * @module
 */

import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import process from "node:process";
import { parseArgs } from "node:util";
import * as esbuild from "esbuild";

/** The repository root. */
export const ROOT: string = join(dirname(fileURLToPath(import.meta.url)), "..");

const PLATFORM = join(ROOT, "src/platform/browser");

/** Each module the bundle replaces, and the file that stands in for it. */
export const BROWSER_MODULES: Readonly<Record<string, string>> = {
  "node:fs": "fs.ts",
  "node:fs/promises": "fs_promises.ts",
  "node:path": "path.ts",
  "node:process": "process.ts",
  "node:os": "os.ts",
  "node:crypto": "crypto.ts",
  "node:zlib": "zlib.ts",
  "node:util": "util.ts",
  "node:url": "url.ts",
  "node:worker_threads": "worker_threads.ts",
  "webgpu": "unavailable.ts",
  "bun:ffi": "unavailable.ts",
};

/** The esbuild plugin that points {@link BROWSER_MODULES} at src/platform/browser/. */
const browserPlatform: esbuild.Plugin = {
  name: "browser-platform",
  setup(build) {
    build.onResolve({ filter: /^(node:|webgpu$|bun:)/ }, (args) => {
      const file = BROWSER_MODULES[args.path];
      if (!file) return { errors: [{ text: `${args.path} has no browser stand-in in src/platform/browser/` }] };
      return { path: join(PLATFORM, file) };
    });
    // the hub client's browser build (its package.json names it in "browser", which "exports" hides)
    build.onResolve({ filter: /^@huggingface\/hub$/ }, () => ({
      path: join(ROOT, "node_modules/@huggingface/hub/dist/browser/index.mjs"),
    }));
  },
};

/** The built page: its files by name (index.html, main.js, main.js.map). */
export interface WebBuild {
  files: Map<string, Uint8Array>;
  /** Milliseconds the build took. */
  ms: number;
}

/** Build the page in memory. */
export async function buildWeb(opts: { minify?: boolean } = {}): Promise<WebBuild> {
  const t0 = performance.now();
  const result = await esbuild.build({
    entryPoints: [join(ROOT, "web/main.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    outdir: "/out",
    write: false,
    sourcemap: "linked",
    minify: opts.minify ?? false,
    loader: { ".wgsl": "text" },
    plugins: [browserPlatform],
    logLevel: "silent",
  });
  const files = new Map<string, Uint8Array>();
  for (const f of result.outputFiles) files.set(f.path.replace(/^\/out\//, ""), f.contents);
  files.set("index.html", new Uint8Array(await readFile(join(ROOT, "web/index.html"))));
  return { files, ms: performance.now() - t0 };
}

/** Stop esbuild's service (a build leaves it running). */
export async function stopBuilds(): Promise<void> {
  await esbuild.stop();
}

if (import.meta.main) {
  const { values } = parseArgs({ args: process.argv.slice(2), options: { out: { type: "string" } } });
  const out = values.out ?? join(ROOT, "runs/web");
  const built = await buildWeb({ minify: true });
  await mkdir(out, { recursive: true });
  for (const [name, data] of built.files) await writeFile(join(out, name), data);
  console.log(`Built ${[...built.files.keys()].join(", ")} in ${out} (${built.ms.toFixed(0)} ms)`);
  await stopBuilds();
}
