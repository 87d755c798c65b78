/**
 * A local stand-in for the Hugging Face hub, for tests: a real HTTP server on 127.0.0.1 (node:http, which
 * Deno and Bun both provide) serving model directories in the hub's URL layout.
 *
 * - `GET /api/models/{repo}/revision/{rev}`: model info with `sha` and `siblings` (@huggingface/hub modelInfo)
 * - `POST /api/models/{repo}/paths-info/{rev}`: size, git oid, LFS sha256 of the asked paths (pathsInfo)
 * - `GET /api/models/{repo}/tree/{rev}`: the file list (listFiles)
 * - `GET|HEAD /{repo}/resolve/{rev}/{file}`: small files directly (ETag = git blob sha1); LFS files (weights)
 *   with a 302 to `/cdn/{sha256}` carrying `X-Linked-Etag` (the sha256) and `X-Linked-Size`, as the hub
 *   does; all with `X-Repo-Commit`. Errors carry `X-Error-Code` (RepoNotFound, RevisionNotFound,
 *   EntryNotFound, GatedRepo) and a JSON body like the hub's.
 * - `GET /cdn/{sha256}`: the LFS content, with Range support.
 *
 * Faults for tests: drop the connection after N bytes of a file, ignore Range, serve corrupted bytes,
 * answer every request with a status, stall a file after N bytes, never answer, or require a token. A hostile hub (`hostile`) puts chosen values
 * where a client takes paths from: the listing's `path`, `oid` and `lfs.oid`, the model info's `sha`, and
 * the X-Repo-Commit, ETag and X-Linked-Etag headers. Every request is logged; ones that match no
 * route go to `unknown` as well (that is how to find out what the library asks for).
 * @module
 */

import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";

/** One file of a fake repo. */
export interface FakeFile {
  bytes: Uint8Array;
  lfs: boolean;
  /** sha256 of the content: the etag of an LFS file. */
  sha256: string;
  /** git blob sha1 (of the content, or of the LFS pointer for LFS files). */
  gitOid: string;
}

/** A fake repo: one commit, reachable as "main" and as its sha. */
export interface FakeRepo {
  commit: string;
  files: Map<string, FakeFile>;
}

/** Options of {@link startFakeHub}. */
export interface FakeHubOptions {
  /** Repo id → directory whose files make the repo. */
  repos: Record<string, string>;
  /** Which files are stored with LFS (default: *.bin, *.safetensors, *.h5, *.msgpack). */
  isLfs?: (name: string) => boolean;
  /** Drop the connection after `bytes` bytes of `file`'s content, the first `times` times it is sent. */
  drop?: { file: string; bytes: number; times: number };
  /** Send `bytes` bytes of `file`'s content and then nothing more (the connection stays open), `times` times. */
  stall?: { file: string; bytes: number; times: number };
  /** Never answer these requests (the connection stays open until close): /api, /{repo}/resolve, or all. */
  noAnswer?: "api" | "resolve" | "all";
  /**
   * Answer ranged content requests other than the `bytes=0-0` probe with the whole file (200), as a server
   * or proxy that drops Range does. (The probe must work: @huggingface/hub's fileDownloadInfo reads the
   * size from its Content-Range.)
   */
  ignoreRange?: boolean;
  /** Flip one byte of this file's content (same size, wrong hash). */
  corrupt?: string;
  /** Answer every /api and /resolve request (or those whose path has `only` in it) with this status and X-Error-Code. */
  fail?: { status: number; errorCode?: string; only?: string };
  /** Require `Authorization: Bearer <token>` on /api and /resolve, else 401 GatedRepo. */
  requireToken?: string;
  /** Values put in place of the real ones. */
  hostile?: HostileValues;
  /**
   * Answer as the hub does a web page on another origin: `Access-Control-Allow-Origin: *`, the hub's headers
   * exposed to scripts, and preflight (OPTIONS) requests allowed (for the browser page's test).
   */
  cors?: boolean;
}

/** The headers the hub lets a page's script read (its Access-Control-Expose-Headers). */
export const HUB_EXPOSED_HEADERS =
  "X-Repo-Commit,X-Request-Id,X-Error-Code,X-Error-Message,X-Total-Count,ETag,Link,Accept-Ranges,Content-Range," +
  "X-Linked-Size,X-Linked-ETag,X-Xet-Hash";

/**
 * What a hostile hub answers instead of the truth. The file fields apply to `file` (default every file);
 * the headers go on every content answer (resolve and CDN).
 */
export interface HostileValues {
  file?: string;
  /** The listing's `path` of the file. */
  path?: string;
  /** The listing's `oid` (git blob sha1). */
  oid?: string;
  /** The listing's `lfs.oid` (sha256) of an LFS file. */
  lfsOid?: string;
  /** The model info's `sha`. */
  sha?: string;
  repoCommit?: string;
  etag?: string;
  linkedEtag?: string;
}

/** A request the fake hub received. */
export interface LoggedRequest {
  method: string;
  url: string;
  range?: string;
  authorization?: string;
}

/** A running fake hub. */
export interface FakeHub {
  /** Base URL, e.g. http://127.0.0.1:41234 (pass as `endpoint`). */
  url: string;
  repos: Map<string, FakeRepo>;
  requests: LoggedRequest[];
  /** Requests that matched no route. */
  unknown: LoggedRequest[];
  close(): Promise<void>;
}

function sha(algo: "sha1" | "sha256", ...parts: Array<string | Uint8Array>): string {
  const h = createHash(algo);
  for (const p of parts) h.update(p);
  return h.digest("hex");
}

/** git's blob id: sha1("blob <size>\0" + content). */
export function gitBlobOid(bytes: Uint8Array): string {
  return sha("sha1", `blob ${bytes.length}\0`, bytes);
}

/** The commit sha the fake hub gives a repo (deterministic). */
export function fakeCommit(repoId: string): string {
  return sha("sha1", `commit of ${repoId}`);
}

/** Reads a directory into a fake repo. */
export function loadFakeRepo(repoId: string, dir: string, isLfs: (name: string) => boolean): FakeRepo {
  const files = new Map<string, FakeFile>();
  for (const name of readdirSync(dir).sort()) {
    const bytes = new Uint8Array(readFileSync(join(dir, name)));
    const sha256 = sha("sha256", bytes);
    const lfs = isLfs(name);
    const pointer = `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${bytes.length}\n`;
    const gitOid = lfs ? gitBlobOid(new TextEncoder().encode(pointer)) : gitBlobOid(bytes);
    files.set(name, { bytes, lfs, sha256, gitOid });
  }
  return { commit: fakeCommit(repoId), files };
}

const defaultIsLfs = (name: string) => /\.(bin|safetensors|h5|msgpack|ckpt)$/.test(name);

/** Starts a fake hub on 127.0.0.1 with a free port. */
export async function startFakeHub(opts: FakeHubOptions): Promise<FakeHub> {
  const isLfs = opts.isLfs ?? defaultIsLfs;
  const repos = new Map<string, FakeRepo>();
  for (const [id, dir] of Object.entries(opts.repos)) repos.set(id, loadFakeRepo(id, dir, isLfs));
  const requests: LoggedRequest[] = [];
  const unknown: LoggedRequest[] = [];
  let dropsLeft = opts.drop?.times ?? 0;
  let stallsLeft = opts.stall?.times ?? 0;
  let base = "";

  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const entry: LoggedRequest = { method: req.method ?? "GET", url: req.url ?? "/" };
    if (typeof req.headers.range === "string") entry.range = req.headers.range;
    if (typeof req.headers.authorization === "string") entry.authorization = req.headers.authorization;
    requests.push(entry);
    const path = new URL(entry.url, "http://x").pathname;
    const silent = opts.noAnswer === "all" || (opts.noAnswer === "api" && path.startsWith("/api/")) ||
      (opts.noAnswer === "resolve" && path.includes("/resolve/"));
    if (silent) return;

    const sendError = (status: number, code: string | undefined, message: string) => {
      const headers: Record<string, string> = { "Content-Type": "application/json" };
      if (code !== undefined) headers["X-Error-Code"] = code;
      res.writeHead(status, headers);
      res.end(req.method === "HEAD" ? undefined : JSON.stringify({ error: message }));
    };
    const guard = (repoId: string): boolean => {
      if (opts.fail !== undefined && (opts.fail.only === undefined || path.includes(opts.fail.only))) {
        sendError(opts.fail.status, opts.fail.errorCode, `Fake failure for ${repoId}`);
        return false;
      }
      if (opts.requireToken !== undefined && entry.authorization !== `Bearer ${opts.requireToken}`) {
        sendError(
          401,
          "GatedRepo",
          `Access to model ${repoId} is restricted. You must have access to it and be authenticated.`,
        );
        return false;
      }
      return true;
    };
    /** The repo and its commit for a revision, or undefined after answering 404. */
    const lookup = (repoId: string, rev: string): FakeRepo | undefined => {
      const repo = repos.get(repoId);
      if (repo === undefined) {
        sendError(404, "RepoNotFound", `Repository not found: ${repoId}`);
        return undefined;
      }
      if (rev !== "main" && rev !== "HEAD" && rev !== repo.commit) {
        sendError(404, "RevisionNotFound", `Invalid rev id: ${rev}`);
        return undefined;
      }
      return repo;
    };
    const treeEntry = (name: string, f: FakeFile) => {
      const h = opts.hostile !== undefined && (opts.hostile.file ?? name) === name ? opts.hostile : {};
      return {
        type: "file",
        oid: h.oid ?? f.gitOid,
        size: f.bytes.length,
        path: h.path ?? name,
        ...(f.lfs ? { lfs: { oid: h.lfsOid ?? f.sha256, size: f.bytes.length, pointerSize: 134 } } : {}),
      };
    };
    const json = (value: unknown) => {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify(value));
    };

    let m: RegExpMatchArray | null;
    if ((m = path.match(/^\/api\/models\/(.+?)\/(revision|tree|paths-info)\/(.+)$/)) !== null) {
      const [, repoId = "", kind, rest = ""] = m;
      if (!guard(repoId)) return;
      const rev = decodeURIComponent(rest.split("/")[0] ?? "");
      const repo = lookup(repoId, rev);
      if (repo === undefined) return;
      if (kind === "revision" && req.method === "GET") {
        return json({
          _id: `fake-${repoId}`,
          id: repoId,
          sha: opts.hostile?.sha ?? repo.commit,
          private: false,
          gated: false,
          disabled: false,
          downloads: 0,
          likes: 0,
          lastModified: "2024-01-01T00:00:00.000Z",
          pipeline_tag: "text-generation",
          tags: [],
          siblings: [...repo.files.keys()].map((rfilename) => ({ rfilename })),
        });
      }
      if (kind === "tree" && req.method === "GET") {
        return json([...repo.files].map(([name, f]) => treeEntry(name, f)));
      }
      if (kind === "paths-info" && req.method === "POST") {
        const body = JSON.parse(await readBody(req)) as { paths?: string[] };
        const out = [];
        for (const p of body.paths ?? []) {
          const f = repo.files.get(p);
          if (f !== undefined) out.push(treeEntry(p, f));
        }
        return json(out);
      }
    } else if ((m = path.match(/^\/(.+?)\/resolve\/([^/]+)\/(.+)$/)) !== null) {
      const [, repoId = "", revEnc = "", fileEnc = ""] = m;
      if (!guard(repoId)) return;
      const repo = lookup(repoId, decodeURIComponent(revEnc));
      if (repo === undefined) return;
      const name = decodeURIComponent(fileEnc);
      const f = repo.files.get(name);
      if (f === undefined) return sendError(404, "EntryNotFound", `Entry not found: ${name}`);
      const common = { "X-Repo-Commit": repo.commit, "Access-Control-Expose-Headers": "*" };
      if (f.lfs) {
        res.writeHead(302, {
          ...common,
          Location: `${base}/cdn/${f.sha256}?name=${encodeURIComponent(name)}`,
          ETag: `"${f.gitOid}"`,
          "X-Linked-Etag": `"${f.sha256}"`,
          "X-Linked-Size": String(f.bytes.length),
          "Content-Length": "0",
        });
        return res.end();
      }
      return sendContent(req, res, name, f, { ...common, ETag: `"${f.gitOid}"` });
    } else if ((m = path.match(/^\/cdn\/([0-9a-f]{64})$/)) !== null) {
      for (const repo of repos.values()) {
        for (const [name, f] of repo.files) {
          if (f.sha256 === m[1]) return sendContent(req, res, name, f, { ETag: `"${f.sha256}"` });
        }
      }
      return sendError(404, undefined, "No such object");
    }
    unknown.push(entry);
    sendError(404, undefined, `Fake hub: no route for ${entry.method} ${entry.url}`);
  };

  /** Sends the whole file or the asked range, applying the drop / corrupt / ignoreRange faults. */
  const sendContent = (
    req: IncomingMessage,
    res: ServerResponse,
    name: string,
    f: FakeFile,
    headers: Record<string, string>,
  ) => {
    let bytes = f.bytes;
    if (opts.corrupt === name) {
      bytes = bytes.slice();
      bytes[bytes.length >> 1]! ^= 0xff;
    }
    const h = opts.hostile;
    if (h?.repoCommit !== undefined) headers = { ...headers, "X-Repo-Commit": h.repoCommit };
    if (h?.etag !== undefined) headers = { ...headers, ETag: h.etag };
    if (h?.linkedEtag !== undefined) headers = { ...headers, "X-Linked-Etag": h.linkedEtag };
    const size = bytes.length;
    let start = 0;
    let end = size - 1;
    let status = 200;
    const range = req.headers.range;
    const rm = typeof range === "string" ? range.match(/^bytes=(\d+)-(\d*)$/) : null;
    if (rm !== null && !(opts.ignoreRange && range !== "bytes=0-0")) {
      start = Number(rm[1]);
      end = rm[2] ? Math.min(Number(rm[2]), size - 1) : size - 1;
      if (start >= size || start > end) {
        res.writeHead(416, { ...headers, "Content-Range": `bytes */${size}` });
        return res.end();
      }
      status = 206;
      headers = { ...headers, "Content-Range": `bytes ${start}-${end}/${size}` };
    }
    const body = bytes.subarray(start, end + 1);
    res.writeHead(status, {
      ...headers,
      "Content-Type": "application/octet-stream",
      "Content-Length": String(body.length),
      "Accept-Ranges": "bytes",
    });
    if (req.method === "HEAD") return res.end();
    const drop = opts.drop;
    if (drop !== undefined && drop.file === name && dropsLeft > 0 && body.length > drop.bytes) {
      dropsLeft--;
      // Send part of the body, then cut the connection: the client sees a truncated response.
      res.write(body.subarray(0, drop.bytes), () => {
        setTimeout(() => res.socket?.destroy(), 20);
      });
      return;
    }
    const stall = opts.stall;
    if (stall !== undefined && stall.file === name && stallsLeft > 0 && body.length > stall.bytes) {
      stallsLeft--;
      res.write(body.subarray(0, stall.bytes));
      return;
    }
    res.end(body);
  };

  const server: Server = createServer((req, res) => {
    if (opts.cors) {
      res.setHeader("Access-Control-Allow-Origin", "*");
      res.setHeader("Access-Control-Expose-Headers", HUB_EXPOSED_HEADERS);
      if (req.method === "OPTIONS") {
        res.writeHead(204, {
          "Access-Control-Allow-Methods": "GET, HEAD, POST, OPTIONS",
          "Access-Control-Allow-Headers": req.headers["access-control-request-headers"] ?? "*",
          "Access-Control-Max-Age": "86400",
        });
        res.end();
        return;
      }
    }
    handler(req, res).catch((e) => {
      res.writeHead(500);
      res.end(String(e));
    });
  });
  // Held connections (stall, noAnswer) are destroyed on close.
  const sockets = new Set<Socket>();
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
  return {
    url: base,
    repos,
    requests,
    unknown,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as Server & { closeAllConnections?: () => void }).closeAllConnections?.();
        for (const socket of sockets) socket.destroy();
      }),
  };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    req.on("data", (c: Uint8Array) => chunks.push(c));
    req.on("end", () => resolve(new TextDecoder().decode(concat(chunks))));
    req.on("error", reject);
  });
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}
