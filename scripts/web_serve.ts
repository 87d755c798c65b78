/**
 * `deno task web`: builds the browser page (scripts/web_build.ts) and serves it on 127.0.0.1, with the
 * parity fixtures of tests/fixtures/ under /fixtures/ (`/fixtures/<dir>/index.json` lists a fixture's
 * files, for the page's parity check). Prints the address; Ctrl-C stops it.
 *
 * Usage: `deno task web [--port N]` (default 8000; 0 picks a free port)
 * @module
 */

import { createServer, type Server } from "node:http";
import { readdir, readFile, stat } from "node:fs/promises";
import { extname, join, normalize, relative, sep } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { buildWeb, ROOT, stopBuilds } from "./web_build.ts";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".map": "application/json",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
  ".jsonl": "text/plain; charset=utf-8",
};

const FIXTURES = join(ROOT, "tests/fixtures");

/** Every file under `dir`, as paths relative to it with "/" separators. */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const path = join(dir, name);
    if ((await stat(path)).isDirectory()) out.push(...(await listFiles(path)).map((f) => `${name}/${f}`));
    else out.push(name);
  }
  return out;
}

/** A file under tests/fixtures/ for `/fixtures/…`, or undefined outside it. */
function fixturePath(urlPath: string): string | undefined {
  const path = normalize(join(FIXTURES, decodeURIComponent(urlPath.slice("/fixtures/".length))));
  const rel = relative(FIXTURES, path);
  return rel.startsWith("..") || rel.startsWith(sep) ? undefined : path;
}

/** A running server. */
export interface WebServer {
  /** Its address, "http://127.0.0.1:PORT/". */
  url: string;
  /** Stop serving. */
  close(): Promise<void>;
}

/** Build the page and serve it on `host:port` (port 0: a free one). */
export async function serveWeb(opts: { port?: number; host?: string } = {}): Promise<WebServer> {
  const built = await buildWeb();
  const host = opts.host ?? "127.0.0.1";
  const server: Server = createServer(async (req, res) => {
    const send = (status: number, body: Uint8Array | string, type = "text/plain; charset=utf-8") => {
      res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
      res.end(body);
    };
    try {
      const urlPath = new URL(req.url ?? "/", "http://x").pathname;
      const name = urlPath === "/" ? "index.html" : urlPath.slice(1);
      const file = built.files.get(name);
      if (file) return send(200, file, TYPES[extname(name)] ?? "application/octet-stream");
      if (urlPath.startsWith("/fixtures/")) {
        const path = fixturePath(urlPath);
        if (path === undefined) return send(403, "Outside tests/fixtures/");
        if (urlPath.endsWith("/index.json")) {
          const dir = path.slice(0, -"/index.json".length);
          return send(200, JSON.stringify(await listFiles(dir)), TYPES[".json"]);
        }
        const bytes = new Uint8Array(await readFile(path));
        return send(200, bytes, TYPES[extname(path)] ?? "application/octet-stream");
      }
      send(404, `Not found: ${urlPath}`);
    } catch (e) {
      const code = (e as { code?: string }).code;
      send(code === "ENOENT" || code === "ENOTDIR" ? 404 : 500, e instanceof Error ? e.message : String(e));
    }
  });
  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(opts.port ?? 8000, host, () => ok());
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : opts.port;
  return {
    url: `http://${host}:${port}/`,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { port: { type: "string", default: "8000" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    console.log("Usage: deno task web [--port N]   builds the page and serves it on 127.0.0.1 (0: a free port)");
    process.exit(0);
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`web: invalid --port "${values.port}" (expected a whole number 0–65535)`);
    process.exit(2);
  }
  const server = await serveWeb({ port });
  await stopBuilds();
  console.log(`Serving the page on ${server.url} (?demo=1: the offline demo; Ctrl-C stops)`);
}
