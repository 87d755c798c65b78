/**
 * Resolves `--model` to a local directory: a local model dir as it is, or a Hugging Face hub repo
 * (`uer/gpt2-chinese-cluecorpussmall`, `id@revision`) downloaded into the hub cache that Python shares
 * (layout in ./hf_cache.ts). The spec, the wanted files, the settings and the errors are in ./hub_spec.ts.
 *
 * The hub is spoken to through `@huggingface/hub`: `modelInfo` resolves the revision to a commit,
 * `pathsInfo` says which of the wanted files exist (with size, git oid and LFS sha256), `downloadFile`
 * gives the file as a ranged web blob. The cache layout, resume, checks and progress are done here: the
 * library's `snapshotDownload` fetches every file of the repo, and `downloadFileToCacheDir` (2.17.5) files a
 * branch download under the file's last commit instead of the branch's commit, writes no `refs/`, does not
 * resume its `.incomplete` file, checks neither size nor hash, and has no progress callback.
 *
 * A download goes to `blobs/<etag>.incomplete`, resumes from there with an HTTP Range request after an
 * interruption (retrying a few times, then on the next run), is checked (size; sha256 for LFS files, git
 * blob sha1 for small ones), renamed to `blobs/<etag>` and only then linked into `snapshots/<commit>/`: a
 * snapshot never holds a partial file.
 *
 * What the server says is checked before it becomes a path, so that a hostile or broken endpoint cannot
 * write outside the cache: the listing's file names must be relative names (no "..", no backslash, no
 * absolute path, no NUL), its `oid` / `lfs.oid`, the model info's `sha` and the X-Repo-Commit, X-Linked-Etag
 * and ETag headers (without `W/` and quotes, as `huggingface_hub` reads them) must be 40 or 64 lowercase hex
 * digits; anything else is a {@link HubError} of kind "bad-response" naming the URL and the field.
 *
 * Time-outs, in seconds as in Python: HF_HUB_ETAG_TIMEOUT (default 10) bounds each metadata request (model
 * info, file list, download URL) until its whole answer is in; HF_HUB_DOWNLOAD_TIMEOUT (default 10) bounds
 * the wait for a download's answer and for each next chunk, and a stalled download is retried from where it
 * stopped like a dropped one. A value that is not a number > 0 is an error naming the variable; the
 * `etagTimeout` / `downloadTimeout` options replace them. When the hub cannot be reached, does not answer
 * in time, or answers 5xx (or 429, 408) while the revision and its files are looked up, a model complete in
 * the cache is used, with a one-line notice; without one the error names the URL and the status.
 * @module
 */

import { downloadFile, fileDownloadInfo, HubApiError, modelInfo, pathsInfo } from "@huggingface/hub";
import type { FileDownloadInfoOutput, PathInfo } from "@huggingface/hub";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { stderr } from "node:process";
import {
  BLOB_HASH,
  type BlobExpectation,
  checkBlob,
  COMMIT_SHA,
  fileSize,
  type HubSettings,
  normalizeEtag,
  RepoCache,
  unsafeFileName,
} from "./hf_cache.ts";
import { ProgressBar } from "./progress.ts";
import {
  candidateFiles,
  describeChoices,
  type FileChoice,
  GPT2_MODEL_FILES,
  HubError,
  localModelDir,
  optionalFiles,
  parseModelSpec,
  type ResolveModelOptions,
  resolveSettings,
  selectFiles,
  toChoice,
} from "./hub_spec.ts";

export {
  DEFAULT_MODEL,
  type DownloadProgress,
  type FileChoice,
  type FileSpec,
  GPT2_MODEL_FILES,
  HubError,
  type HubErrorKind,
  type ModelSpec,
  parseModelSpec,
  PEFT_ADAPTER_FILES,
  type ResolveModelOptions,
  resolveSettings,
} from "./hub_spec.ts";

/**
 * Returns a local directory holding the model's files.
 *
 * - An existing directory is returned as it is.
 * - A hub id (`org/name`, `org/name@revision`) is looked up on the hub (unless offline), the wanted files
 *   missing from the cache are downloaded, and `<cache>/models--org--name/snapshots/<commit>` is returned.
 * - Offline (option or HF_HUB_OFFLINE=1), or when the hub cannot be reached, times out or answers 5xx, the
 *   revision is resolved from the cache (`refs/<revision>`); with nothing cached it throws a
 *   {@link HubError} of kind "not-cached" naming the files, the cache path and what the hub did.
 *
 * @example
 * ```ts
 * const dir = await resolveModel("uer/gpt2-chinese-cluecorpussmall");
 * // dir = ~/.cache/huggingface/hub/models--uer--gpt2-chinese-cluecorpussmall/snapshots/<sha>
 * ```
 */
export async function resolveModel(spec: string, opts: ResolveModelOptions = {}): Promise<string> {
  const local = await localModelDir(spec);
  if (local !== undefined) return local;
  const { repoId, revision } = parseModelSpec(spec);
  const settings = resolveSettings(opts);
  const choices = (opts.files ?? GPT2_MODEL_FILES).map(toChoice);
  for (const name of candidateFiles(choices)) {
    const unsafe = unsafeFileName(name);
    if (unsafe !== undefined) {
      throw new HubError(`Invalid file to fetch: ${JSON.stringify(name)}: ${unsafe}`, "bad-spec");
    }
  }
  const cache = new RepoCache(settings.cacheDir, repoId);
  const log = opts.log ?? (opts.quiet ? () => {} : (m: string) => void stderr.write(`${m}\n`));

  if (settings.offline) {
    const cached = await resolveFromCache(cache, revision, choices);
    if (typeof cached === "string") return cached;
    throw notCachedError({ repoId, revision, cache, choices, why: "offline mode is on (HF_HUB_OFFLINE)", cached });
  }
  // A commit never changes: when its snapshot is complete there is nothing to ask the hub.
  if (COMMIT_SHA.test(revision)) {
    const cached = await resolveFromCache(cache, revision, choices);
    if (typeof cached === "string") return cached;
  }

  const session = new HubSession({ settings, repoId, revision, cache, log, opts });
  let commit: string;
  let listing: Listing;
  try {
    commit = await session.resolveCommit();
    listing = await session.listFiles(commit, choices);
  } catch (e) {
    // A hub that cannot be reached, does not answer in time or answers 5xx: the cache, when it has the model.
    const outage = session.outage(e);
    if (outage === undefined) throw session.explain(e);
    const cached = await resolveFromCache(cache, revision, choices);
    if (typeof cached === "string") {
      log(`${outage.notice}: using the cached snapshot ${cached}`);
      return cached;
    }
    throw notCachedError({ repoId, revision, cache, choices, why: outage.why, cached, cause: e });
  }
  return await session.fetchSnapshot(commit, listing, choices);
}

/** The hub's file list at a commit, and where it came from. */
interface Listing {
  infos: PathInfo[];
  url: string;
}

/** The snapshot dir when the cache alone satisfies the choices, else the reason it does not. */
async function resolveFromCache(
  cache: RepoCache,
  revision: string,
  choices: readonly FileChoice[],
): Promise<string | { reason: string }> {
  const commit = await cache.readRef(revision);
  if (commit === undefined) return { reason: `no ${join("refs", revision)} in the cache` };
  const dir = cache.snapshotDir(commit);
  const present = new Set<string>();
  for (const name of candidateFiles(choices)) {
    if ((await fileSize(join(dir, name))) !== undefined) present.add(name);
  }
  const { missing } = selectFiles(choices, (n) => present.has(n));
  if (missing.length > 0) {
    return { reason: `snapshot ${commit} lacks ${missing.map((c) => c.what).join(", ")}` };
  }
  return dir;
}

function notCachedError(a: {
  repoId: string;
  revision: string;
  cache: RepoCache;
  choices: readonly FileChoice[];
  why: string;
  cached: { reason: string };
  cause?: unknown;
}): HubError {
  const optional = optionalFiles(a.choices);
  return new HubError(
    `Cannot load model ${a.repoId}@${a.revision}: ${a.why} and the model is not in the cache ` +
      `(${a.cached.reason}).\n` +
      `  Needed files: ${describeChoices(a.choices)}` +
      (optional.length > 0 ? ` (optional: ${optional.join(", ")})` : "") + `.\n` +
      `  Cache: ${a.cache.root}\n` +
      `  Download it once with network access (HF_HUB_OFFLINE unset), pass a local model directory to ` +
      `--model, or run \`deno task demo\`, which needs no network.`,
    "not-cached",
    a.cause !== undefined ? { cause: a.cause } : undefined,
  );
}

/** A fetch that failed before any response: the hub is unreachable (DNS, refused, reset), or too slow. */
class Unreachable extends Error {
  override name = "Unreachable";
}

/** A request that got no answer, or no next bytes, within its timeout. */
class TimedOut extends Unreachable {
  override name = "TimedOut";
  constructor(readonly url: string, readonly seconds: number, readonly variable: string, stalled: boolean) {
    super(
      stalled
        ? `no data from ${url} for ${seconds} s (${variable})`
        : `no answer from ${url} within ${seconds} s (${variable})`,
    );
  }
}

/** What the wrapped fetch saw of the last response. */
interface Observed {
  /** The URL asked for. */
  url?: string;
  status?: number;
  errorCode?: string;
  /** A header that failed its check (the error is also thrown to the library, which may lose it). */
  bad?: HubError;
  /** The time-out that ended the request (the library may keep only its message). */
  timedOut?: TimedOut;
}

const HASH_EXPECTED = "40 or 64 lowercase hex digits";

/** The error for a value of the server's that is not what it must be; such a value is never used. */
function badAnswer(url: string, what: string, value: unknown, expected: string): HubError {
  return new HubError(
    `Cannot use the answer of ${url}: ${what} is ${JSON.stringify(value)} (expected ${expected})`,
    "bad-response",
  );
}

interface SessionInit {
  settings: HubSettings;
  repoId: string;
  revision: string;
  cache: RepoCache;
  log: (m: string) => void;
  opts: ResolveModelOptions;
}

/** One resolve against the hub: API calls, downloads, and turning failures into clear errors. */
class HubSession {
  #s: SessionInit;
  #lastError: Observed = {};

  constructor(init: SessionInit) {
    this.#s = init;
    const token = init.settings.token;
    if (token !== undefined && !token.startsWith("hf_")) {
      throw new HubError(`Invalid HF_TOKEN: a Hugging Face access token starts with "hf_"`, "bad-spec");
    }
  }

  get #repo() {
    return { type: "model" as const, name: this.#s.repoId };
  }

  get #common() {
    const { endpoint, token } = this.#s.settings;
    return { hubUrl: endpoint, ...(token !== undefined ? { accessToken: token } : {}) };
  }

  /**
   * A fetch that records error codes, marks failures to connect as {@link Unreachable}, and checks the
   * headers that name a commit or blob ({@link checkHeaders}). Time-outs: a metadata request ("meta") must
   * answer and send its whole body within HF_HUB_ETAG_TIMEOUT each; a download must answer, and then send
   * each next chunk, within HF_HUB_DOWNLOAD_TIMEOUT. Either ends in a {@link TimedOut}.
   */
  #fetch(observed?: Observed, kind: "meta" | "download" = "meta"): typeof fetch {
    const { etagTimeout, downloadTimeout } = this.#s.settings;
    const seconds = kind === "meta" ? etagTimeout : downloadTimeout;
    const variable = kind === "meta" ? "HF_HUB_ETAG_TIMEOUT" : "HF_HUB_DOWNLOAD_TIMEOUT";
    const wrapped = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
      const url = input instanceof Request ? input.url : String(input);
      if (observed !== undefined) observed.url = url;
      const abort = new AbortController();
      let timedOut: TimedOut | undefined;
      /** Runs `work`, aborting the request when it takes longer than the timeout. */
      const timed = async <T>(work: Promise<T>, stalled: boolean): Promise<T> => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const expired = new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            timedOut = new TimedOut(url, seconds, variable, stalled);
            if (observed !== undefined) observed.timedOut = timedOut;
            abort.abort(timedOut);
            reject(timedOut);
          }, seconds * 1000);
        });
        try {
          return await Promise.race([work, expired]);
        } catch (e) {
          throw timedOut ?? e;
        } finally {
          clearTimeout(timer);
        }
      };
      const signal = init?.signal ? AbortSignal.any([init.signal, abort.signal]) : abort.signal;
      let res: Response;
      try {
        res = await timed(fetch(input, { ...init, signal }), false);
      } catch (e) {
        if (e instanceof TimedOut) throw e;
        throw new Unreachable(e instanceof Error ? e.message : String(e), { cause: e });
      }
      const seen: Observed = { url, status: res.status };
      const code = res.headers.get("x-error-code");
      if (code !== null) seen.errorCode = code;
      if (!res.ok) this.#lastError = seen;
      if (observed !== undefined) Object.assign(observed, seen);
      if (res.ok) {
        const bad = this.#checkHeaders(url, res);
        if (bad !== undefined) {
          await res.body?.cancel();
          if (observed !== undefined) observed.bad = bad;
          throw bad;
        }
      }
      const copy = (body: BodyInit | null) => {
        const out = new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
        Object.defineProperty(out, "url", { value: res.url });
        return out;
      };
      if (kind === "meta") {
        // The answer is read here, within the time; a size probe (`Range: bytes=0-0`) needs no body.
        const probe = new Headers(init?.headers).get("range") === "bytes=0-0" && res.ok;
        try {
          if (probe) {
            await res.body?.cancel();
            return copy(null);
          }
          return copy(await timed(res.arrayBuffer(), true));
        } catch (e) {
          if (e instanceof TimedOut) throw e;
          throw new Unreachable(`reading the answer of ${url}: ${errorText(e)}`, { cause: e });
        }
      }
      if (res.body === null) return res;
      const reader = res.body.getReader();
      return copy(
        new ReadableStream<Uint8Array>({
          async pull(controller) {
            try {
              const chunk = await timed(reader.read(), true);
              if (chunk.done) controller.close();
              else controller.enqueue(chunk.value);
            } catch (e) {
              controller.error(e);
              reader.cancel(e).catch(() => {});
            }
          },
          cancel: (reason) => reader.cancel(reason),
        }),
      );
    };
    return wrapped as typeof fetch;
  }

  /**
   * The hub's headers that name a commit or a blob (X-Repo-Commit, X-Linked-Etag, and the ETag of a
   * resolve answer from the hub itself, not from a CDN it redirected to) must be hashes.
   */
  #checkHeaders(url: string, res: Response): HubError | undefined {
    const at = res.url !== "" ? res.url : url;
    const commit = res.headers.get("x-repo-commit");
    if (commit !== null && !COMMIT_SHA.test(commit.trim())) {
      return badAnswer(at, "header X-Repo-Commit", commit, "a commit sha: 40 lowercase hex digits");
    }
    const linked = res.headers.get("x-linked-etag");
    if (linked !== null && !BLOB_HASH.test(normalizeEtag(linked))) {
      return badAnswer(at, "header X-Linked-Etag", linked, HASH_EXPECTED);
    }
    const etag = res.headers.get("etag");
    if (etag !== null && linked === null && new URL(url).pathname.includes("/resolve/")) {
      const fromHub = new URL(at).origin === new URL(this.#s.settings.endpoint).origin;
      if (fromHub && !BLOB_HASH.test(normalizeEtag(etag))) return badAnswer(at, "header ETag", etag, HASH_EXPECTED);
    }
    return undefined;
  }

  /** The commit sha the revision points at now. */
  async resolveCommit(): Promise<string> {
    const observed: Observed = {};
    const info = await modelInfo({
      ...this.#common,
      name: this.#s.repoId,
      revision: this.#s.revision,
      additionalFields: ["sha"],
      fetch: this.#fetch(observed),
    });
    const sha: unknown = info.sha;
    if (typeof sha !== "string" || !COMMIT_SHA.test(sha)) {
      throw badAnswer(observed.url ?? this.#s.settings.endpoint, `"sha"`, sha, "a commit sha: 40 lowercase hex digits");
    }
    return sha;
  }

  /** Size, oid and LFS sha256 of the files the choices may take, at the commit. */
  async listFiles(commit: string, choices: readonly FileChoice[]): Promise<Listing> {
    const observed: Observed = {};
    const infos = await pathsInfo({
      ...this.#common,
      repo: this.#repo,
      paths: candidateFiles(choices),
      revision: commit,
      fetch: this.#fetch(observed),
    });
    return { infos, url: observed.url ?? this.#s.settings.endpoint };
  }

  /**
   * What to tell the user when `e` means the hub is out of service (cannot be reached, did not answer in
   * time, answered 5xx, 429 or 408): a notice when the cache serves instead, the reason when it cannot.
   */
  outage(e: unknown): { notice: string; why: string } | undefined {
    const { endpoint } = this.#s.settings;
    if (e instanceof TimedOut) {
      const what = `${e.url} within ${e.seconds} s (${e.variable})`;
      return { notice: `No answer from ${what}`, why: `the hub did not answer ${what}` };
    }
    if (e instanceof Unreachable) {
      return {
        notice: `Cannot reach ${endpoint} (${e.message})`,
        why: `the hub at ${endpoint} cannot be reached (${e.message})`,
      };
    }
    if (e instanceof HubApiError && (e.statusCode >= 500 || e.statusCode === 429 || e.statusCode === 408)) {
      const url = this.#lastError.status === e.statusCode && this.#lastError.url ? this.#lastError.url : e.url;
      const what = `HTTP ${e.statusCode} for ${url}`;
      return { notice: `The hub answered ${what}`, why: `the hub answered ${what}` };
    }
    return undefined;
  }

  /** Makes `snapshots/<commit>` hold the chosen files (downloading what is missing) and returns it. */
  async fetchSnapshot(commit: string, listing: Listing, choices: readonly FileChoice[]): Promise<string> {
    const { repoId, revision, cache } = this.#s;
    const { infos, url: listUrl } = listing;
    // Names and hashes of the listing become paths: all are checked before anything is written.
    for (const info of infos) {
      const unsafe = typeof info.path === "string" ? unsafeFileName(info.path) : "it is not a string";
      if (unsafe !== undefined) {
        throw badAnswer(listUrl, `"path"`, info.path, `a relative file name in the repository, but ${unsafe}`);
      }
    }
    const byName = new Map(infos.filter((i) => i.type === "file").map((i) => [i.path, i]));
    const { files, missing } = selectFiles(choices, (n) => byName.has(n));
    if (missing.length > 0) {
      const what = missing.map((c) => `${c.what} (${describeChoices([c])})`).join(", ");
      throw new HubError(
        `Cannot use ${repoId}@${revision}: the repository has no ${what} at commit ${commit}`,
        "missing-files",
      );
    }
    // What each file must be, and which ones are not in the snapshot yet.
    const plan: Array<{ file: string; etag: string; want: BlobExpectation; download?: FileDownloadInfoOutput }> = [];
    for (const file of files) {
      const info = byName.get(file)!;
      if (info.lfs !== undefined && !/^[0-9a-f]{64}$/.test(String(info.lfs.oid))) {
        throw badAnswer(listUrl, `"lfs.oid" of ${file}`, info.lfs.oid, "a sha256: 64 lowercase hex digits");
      }
      if (info.lfs === undefined && !BLOB_HASH.test(String(info.oid))) {
        throw badAnswer(listUrl, `"oid" of ${file}`, info.oid, HASH_EXPECTED);
      }
      const etag = info.lfs?.oid ?? info.oid!;
      const size = info.lfs?.size ?? info.size;
      if (!Number.isSafeInteger(size) || size < 0) {
        throw badAnswer(listUrl, `"size" of ${file}`, size, "a byte count");
      }
      const want: BlobExpectation = info.lfs !== undefined ? { size, sha256: etag } : { size, gitOid: etag };
      const pointer = join(cache.snapshotDir(commit), file);
      if ((await fileSize(pointer)) === want.size) continue;
      plan.push({ file, etag, want });
    }
    // The download URLs and their headers are asked for (and checked) before anything is written.
    for (const p of plan) {
      if ((await fileSize(cache.blobPath(p.etag))) !== p.want.size) p.download = await this.#downloadInfo(commit, p);
    }
    await cache.writeRef(revision, commit);

    const progress = new Progress(this.#s, plan.map((p) => p.want.size));
    try {
      for (const { file, etag, want, download } of plan) {
        if (download !== undefined) {
          await this.#downloadBlob(commit, file, etag, want, download, progress);
        } else {
          progress.skip(file, want.size);
        }
        await cache.link(commit, file, etag);
      }
    } finally {
      progress.finish();
    }
    return cache.snapshotDir(commit);
  }

  /** Where the file is downloaded from, and its size there (which must be the listing's). */
  async #downloadInfo(commit: string, p: { file: string; want: BlobExpectation }): Promise<FileDownloadInfoOutput> {
    let info: FileDownloadInfoOutput | null;
    try {
      info = await fileDownloadInfo({
        ...this.#common,
        repo: this.#repo,
        path: p.file,
        revision: commit,
        fetch: this.#fetch(),
      });
    } catch (e) {
      throw this.explain(e, p.file);
    }
    if (info === null) {
      throw new HubError(`Cannot download ${p.file} from ${this.#s.repoId}: file not found (HTTP 404)`, "not-found");
    }
    if (info.size !== p.want.size) {
      throw new HubError(
        `Cannot download ${p.file} from ${this.#s.repoId}: the hub reports ${info.size} bytes, its file list ` +
          `${p.want.size}`,
        "integrity",
      );
    }
    return info;
  }

  /** Downloads one file into `blobs/<etag>`, resuming and retrying, and checks it. */
  async #downloadBlob(
    commit: string,
    file: string,
    etag: string,
    want: BlobExpectation,
    download: FileDownloadInfoOutput,
    progress: Progress,
  ): Promise<void> {
    const { cache, opts, log } = this.#s;
    const retries = opts.retries ?? 3;
    const incomplete = cache.incompletePath(etag);
    await mkdir(join(cache.root, "blobs"), { recursive: true });
    for (let attempt = 0;; attempt++) {
      let offset = (await fileSize(incomplete)) ?? 0;
      if (offset > want.size) {
        await rm(incomplete, { force: true });
        offset = 0;
      }
      try {
        if (offset < want.size || offset === 0) {
          await this.#fetchInto({ commit, file, path: incomplete, offset, size: want.size, download, progress });
        } else {
          progress.skip(file, want.size);
        }
        const bad = await checkBlob(incomplete, want);
        if (bad !== undefined) {
          throw new HubError(
            `Downloaded ${file} of ${this.#s.repoId} does not match the hub: ${bad}; ` +
              `the download was removed`,
            "integrity",
          );
        }
        await rename(incomplete, cache.blobPath(etag));
        return;
      } catch (e) {
        const err = this.explain(e, file);
        const retryable = !(err instanceof HubError) || err.kind === "network" || err.kind === "integrity";
        // A file that failed its checks is not resumed: the next try starts from zero.
        if (err instanceof HubError && err.kind === "integrity") await rm(incomplete, { force: true });
        if (!retryable || attempt >= retries) {
          if (retryable && err instanceof HubError && err.kind === "network") {
            const kept = (await fileSize(incomplete)) ?? 0;
            err.message += kept > 0 ? `; ${kept} bytes kept in ${incomplete}, the next run resumes there` : "";
          }
          throw err;
        }
        log(`Download of ${file} interrupted (${err.message}); retrying (${attempt + 1}/${retries})`);
        progress.restart(file, (await fileSize(incomplete)) ?? 0);
        await new Promise((r) => setTimeout(r, (opts.retryDelayMs ?? 1000) * (attempt + 1)));
      }
    }
  }

  /** Streams the file (from `offset`, with a Range request) onto the end of `path`. */
  async #fetchInto(a: {
    commit: string;
    file: string;
    path: string;
    offset: number;
    size: number;
    download: FileDownloadInfoOutput;
    progress: Progress;
  }): Promise<void> {
    const observed: Observed = {};
    const blob = await downloadFile({
      ...this.#common,
      repo: this.#repo,
      path: a.file,
      revision: a.commit,
      fetch: this.#fetch(observed, "download"),
      downloadInfo: a.download,
      // Plain HTTP (with Range) from the resolve URL; the hub serves Xet-backed files that way too.
      xet: false,
    });
    if (blob === null) {
      throw new HubError(`Cannot download ${a.file} from ${this.#s.repoId}: file not found (HTTP 404)`, "not-found");
    }
    let offset = a.offset;
    const reader = (offset > 0 ? blob.slice(offset) : blob).stream().getReader();
    // "a": every write goes to the end of the file, also after the truncate below.
    const handle = await open(a.path, offset > 0 ? "a" : "w");
    let first = true;
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (e) {
          // The web blob turns HTTP errors into a bare message: recover the status seen by our fetch.
          if (observed.bad !== undefined) throw observed.bad;
          if (observed.timedOut !== undefined) {
            throw new HubError(`Timed out downloading ${a.file}: ${observed.timedOut.message}`, "network", {
              cause: e,
            });
          }
          if (observed.status === 416) {
            throw new HubError(`Cannot resume ${a.file}: the server refused the range (HTTP 416)`, "integrity");
          }
          if (observed.status !== undefined && observed.status >= 400) {
            throw this.#httpError(observed.status, observed.errorCode, a.file);
          }
          throw new HubError(`Connection lost while downloading ${a.file}: ${errorText(e)}`, "network", {
            cause: e,
          });
        }
        if (first) {
          first = false;
          if (offset > 0 && observed.status === 200) {
            // The server ignored the Range header and sent the whole file: start over.
            await handle.truncate(0);
            a.progress.restart(a.file, 0);
            offset = 0;
          }
        }
        if (chunk.done) break;
        await handle.write(chunk.value);
        offset += chunk.value.byteLength;
        a.progress.advance(a.file, offset, a.size);
      }
    } finally {
      await handle.close();
      reader.releaseLock();
    }
  }

  /** Turns a failure into a {@link HubError} with a message for the user. */
  explain(e: unknown, file?: string): Error {
    if (e instanceof HubError) return e;
    if (e instanceof Unreachable) {
      return new HubError(`Cannot reach the hub at ${this.#s.settings.endpoint}: ${e.message}`, "network", {
        cause: e,
      });
    }
    if (e instanceof HubApiError) {
      const code = this.#lastError.status === e.statusCode ? this.#lastError.errorCode : undefined;
      return this.#httpError(e.statusCode, code, file, e);
    }
    if (e instanceof Error) return new HubError(`Download failed: ${e.message}`, "network", { cause: e });
    return new HubError(`Download failed: ${String(e)}`, "network");
  }

  #httpError(status: number, code: string | undefined, file?: string, cause?: unknown): HubError {
    const { repoId, revision, settings } = this.#s;
    const opts = cause !== undefined ? { cause } : undefined;
    const where = `${repoId}@${revision}`;
    const tokenHint = settings.token === undefined
      ? "set HF_TOKEN to an access token that can read it"
      : "the token in HF_TOKEN was refused or cannot read it";
    if (code === "EntryNotFound" && file !== undefined) {
      return new HubError(`Cannot download ${file} from ${where}: file not found (HTTP ${status})`, "not-found", opts);
    }
    if (code === "GatedRepo" || ((status === 401 || status === 403) && code !== "RepoNotFound")) {
      return new HubError(
        `Cannot download ${repoId}: access denied (HTTP ${status}): the repository is gated or private; ` +
          `accept its conditions at ${settings.endpoint}/${repoId} and ${tokenHint}`,
        "access-denied",
        opts,
      );
    }
    if (code === "RepoNotFound" || code === "RevisionNotFound" || status === 404) {
      return new HubError(
        `Cannot download ${where}: repository or revision not found (HTTP ${status}${code ? `, ${code}` : ""}) ` +
          `at ${settings.endpoint}: check the model id and revision` +
          (settings.token === undefined ? "; if the repository is private, set HF_TOKEN" : ""),
        "not-found",
        opts,
      );
    }
    const retryable = status >= 500 || status === 429 || status === 408;
    return new HubError(
      `Cannot download ${file ?? where}: the hub answered HTTP ${status}` +
        (cause instanceof Error ? `: ${cause.message}` : ""),
      retryable ? "network" : "http",
      opts,
    );
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Bytes over all files of one resolve, shown as a bar or passed to `onProgress`. */
class Progress {
  #init: SessionInit;
  #total: number;
  /** Bytes on disk per file of this resolve. */
  #perFile = new Map<string, number>();
  #bar: ProgressBar | undefined;

  constructor(init: SessionInit, sizes: number[]) {
    this.#init = init;
    this.#total = sizes.reduce((a, b) => a + b, 0);
  }

  /** `fileDone` bytes of `file` (of `fileSize`) are on disk. */
  advance(file: string, fileDone: number, fileSize: number): void {
    this.#perFile.set(file, fileDone);
    let done = 0;
    for (const n of this.#perFile.values()) done += n;
    const { opts, repoId } = this.#init;
    if (opts.onProgress !== undefined) {
      opts.onProgress({ repoId, file, fileDone, fileSize, done, total: this.#total });
    } else if (opts.quiet !== true) {
      this.#bar ??= new ProgressBar({ total: this.#total, unit: "bytes", label: repoId });
      this.#bar.update(done, file);
    }
  }

  /** The file was already complete in the cache. */
  skip(file: string, size: number): void {
    this.advance(file, size, size);
  }

  /** A retry of `file` starts with `kept` bytes on disk. */
  restart(file: string, kept: number): void {
    this.#perFile.set(file, kept);
  }

  finish(): void {
    this.#bar?.finish();
  }
}
