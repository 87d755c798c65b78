/**
 * The Hugging Face hub cache on disk, in the layout Python's `huggingface_hub` uses, so that a model fetched
 * by either side is reused by the other:
 *
 * ```
 * $HF_HUB_CACHE/                      (default $HF_HOME/hub, $HF_HOME default ~/.cache/huggingface)
 *   models--uer--gpt2-chinese-cluecorpussmall/
 *     refs/main                       the commit sha that "main" pointed to, as text
 *     blobs/<etag>                    file contents; etag = sha256 for LFS files, git blob sha1 otherwise
 *     blobs/<etag>.incomplete         a download in progress (resumed with an HTTP Range request)
 *     snapshots/<commit>/<file>       symlink to ../../blobs/<etag>
 * ```
 *
 * Also here: the settings read from the environment (HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN,
 * HF_HUB_OFFLINE, HF_HUB_ETAG_TIMEOUT, HF_HUB_DOWNLOAD_TIMEOUT) as a pure function of an env object, and the checks a blob passes before it is linked.
 * @module
 */

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, mkdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { pid } from "node:process";

/** The hub's default address. */
export const DEFAULT_ENDPOINT = "https://huggingface.co";

/** Where and how to reach the hub, as read from the environment. */
export interface HubSettings {
  /** The hub cache directory (the folder holding `models--*`). */
  cacheDir: string;
  /** Base URL of the hub, without a trailing slash. */
  endpoint: string;
  /** Access token for gated or private repositories. */
  token?: string;
  /** True when HF_HUB_OFFLINE is set to a true value: no network at all. */
  offline: boolean;
  /** Seconds a metadata request (model info, file list, download URL) may take to answer (HF_HUB_ETAG_TIMEOUT). */
  etagTimeout: number;
  /** Seconds a download may wait for its answer or its next bytes (HF_HUB_DOWNLOAD_TIMEOUT). */
  downloadTimeout: number;
}

/** Python's `huggingface_hub` defaults of HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT, in seconds. */
export const DEFAULT_ETAG_TIMEOUT = 10;
export const DEFAULT_DOWNLOAD_TIMEOUT = 10;

/** A timeout in seconds from a variable: unset or empty gives the default, anything but a number > 0 throws. */
export function envSeconds(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value.trim() === "") return fallback;
  const v = Number(value);
  if (!Number.isFinite(v) || v <= 0) {
    throw new Error(`Invalid ${name}: ${JSON.stringify(value)} (expected a number of seconds > 0)`);
  }
  return v;
}

/** True for the values Python's `huggingface_hub` accepts as "on": 1, true, yes, on (any case). */
export function envFlag(value: string | undefined): boolean {
  return value !== undefined && ["1", "true", "yes", "on"].includes(value.trim().toLowerCase());
}

/**
 * Reads the hub settings from an environment object the way Python's `huggingface_hub` does:
 * cache = HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, where HF_HOME defaults to
 * $XDG_CACHE_HOME/huggingface and that to ~/.cache/huggingface; endpoint = HF_ENDPOINT; token = HF_TOKEN,
 * else HUGGING_FACE_HUB_TOKEN; offline = HF_HUB_OFFLINE; timeouts = HF_HUB_ETAG_TIMEOUT and
 * HF_HUB_DOWNLOAD_TIMEOUT (seconds, default 10 each; a value that is not a number > 0 throws). Pure: pass the
 * variables (`hubEnvironment()` of src/env.ts) and the home directory (or a function giving it, called only when
 * a path needs it).
 */
export function hubSettingsFromEnv(
  env: Readonly<Record<string, string | undefined>>,
  home: string | (() => string),
): HubSettings {
  const nonEmpty = (k: string) => {
    const v = env[k];
    return v !== undefined && v.trim() !== "" ? v.trim() : undefined;
  };
  const homeDir = () => (typeof home === "string" ? home : home());
  const expand = (p: string) => (p === "~" || p.startsWith("~/") ? join(homeDir(), p.slice(1)) : p);
  const cache = nonEmpty("HF_HUB_CACHE") ?? nonEmpty("HUGGINGFACE_HUB_CACHE");
  const hfHome = () =>
    expand(
      nonEmpty("HF_HOME") ?? join(expand(nonEmpty("XDG_CACHE_HOME") ?? join(homeDir(), ".cache")), "huggingface"),
    );
  const token = nonEmpty("HF_TOKEN") ?? nonEmpty("HUGGING_FACE_HUB_TOKEN");
  return {
    cacheDir: cache !== undefined ? expand(cache) : join(hfHome(), "hub"),
    endpoint: (nonEmpty("HF_ENDPOINT") ?? DEFAULT_ENDPOINT).replace(/\/+$/, ""),
    ...(token !== undefined ? { token } : {}),
    offline: envFlag(env["HF_HUB_OFFLINE"]),
    etagTimeout: envSeconds("HF_HUB_ETAG_TIMEOUT", env["HF_HUB_ETAG_TIMEOUT"], DEFAULT_ETAG_TIMEOUT),
    downloadTimeout: envSeconds("HF_HUB_DOWNLOAD_TIMEOUT", env["HF_HUB_DOWNLOAD_TIMEOUT"], DEFAULT_DOWNLOAD_TIMEOUT),
  };
}

/** A full 40-hex-digit commit sha. */
export const COMMIT_SHA = /^[0-9a-f]{40}$/;

/** A blob name: a git blob sha1 (40 lowercase hex digits) or a sha256 (64). */
export const BLOB_HASH = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** An ETag header as `huggingface_hub` reads it: without a weak `W/` prefix and without the quotes. */
export function normalizeEtag(raw: string): string {
  return raw.trim().replace(/^W\//, "").replace(/^"|"$/g, "");
}

/**
 * Why a repo file name cannot be joined under a snapshot directory, or undefined when it can: it must be
 * relative, with no empty, "." or ".." segment, no backslash and no NUL.
 */
export function unsafeFileName(name: string): string | undefined {
  if (name.includes("\0")) return "it contains a NUL character";
  if (name.includes("\\")) return "it contains a backslash";
  if (name.startsWith("/") || /^[A-Za-z]:/.test(name)) return "it is an absolute path";
  const segments = name.split("/");
  if (segments.includes("..")) return `it has a ".." segment`;
  if (segments.some((s) => s === "" || s === ".")) return `it has an empty or "." segment`;
  return undefined;
}

/** The cache folder name of a model repo: `uer/gpt2-x` → `models--uer--gpt2-x`. */
export function repoFolderName(repoId: string): string {
  return ["models", ...repoId.split("/")].join("--");
}

/**
 * Paths of one model repo inside a hub cache. Commits, blob names and file names are checked before they
 * are joined into a path, so that no value can point outside the repo's folder.
 */
export class RepoCache {
  /** The repo's folder, `<cacheDir>/models--org--name`. */
  readonly root: string;

  constructor(readonly cacheDir: string, readonly repoId: string) {
    this.root = join(cacheDir, repoFolderName(repoId));
  }

  /** `refs/<revision>`: holds the commit sha the revision (branch or tag) resolved to. */
  refPath(revision: string): string {
    return join(this.root, "refs", revision);
  }
  /** `snapshots/<commit>`: the directory handed to the model loader. */
  snapshotDir(commit: string): string {
    if (!COMMIT_SHA.test(commit)) {
      throw new Error(`Invalid commit for the hub cache: ${JSON.stringify(commit)} (expected 40 lowercase hex digits)`);
    }
    return join(this.root, "snapshots", commit);
  }
  /** `blobs/<etag>`: the file contents. */
  blobPath(etag: string): string {
    if (!BLOB_HASH.test(etag)) {
      throw new Error(
        `Invalid blob name for the hub cache: ${JSON.stringify(etag)} (expected 40 or 64 lowercase hex digits)`,
      );
    }
    return join(this.root, "blobs", etag);
  }
  /** `blobs/<etag>.incomplete`: a download in progress. */
  incompletePath(etag: string): string {
    return `${this.blobPath(etag)}.incomplete`;
  }

  /** The commit a revision resolves to from the cache alone: a sha as is, else `refs/<revision>`. */
  async readRef(revision: string): Promise<string | undefined> {
    if (COMMIT_SHA.test(revision)) return revision;
    try {
      const sha = (await readFile(this.refPath(revision), "utf8")).trim();
      return COMMIT_SHA.test(sha) ? sha : undefined;
    } catch {
      return undefined;
    }
  }

  /** Records that `revision` points at `commit` (nothing to do when the revision is the commit). */
  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    const path = this.refPath(revision);
    await mkdir(dirname(path), { recursive: true });
    // Write then rename, so a reader never sees a half-written sha.
    const tmp = `${path}.${pid}.tmp`;
    await writeFile(tmp, commit);
    await rename(tmp, path);
  }

  /**
   * Makes `snapshots/<commit>/<file>` a relative symlink to `blobs/<etag>` (Python's layout), replacing
   * what was there. Where symlinks are not allowed, the blob is copied instead, as Python does.
   */
  async link(commit: string, file: string, etag: string): Promise<string> {
    const unsafe = unsafeFileName(file);
    if (unsafe !== undefined) {
      throw new Error(`Invalid file name for the hub cache: ${JSON.stringify(file)}: ${unsafe}`);
    }
    const pointer = join(this.snapshotDir(commit), file);
    const blob = this.blobPath(etag);
    await mkdir(dirname(pointer), { recursive: true });
    await rm(pointer, { force: true });
    try {
      await symlink(relative(dirname(pointer), blob), pointer);
    } catch {
      await copyFile(blob, pointer);
    }
    return pointer;
  }
}

/** Size of a file following symlinks, or undefined when it (or a symlink's target) does not exist. */
export async function fileSize(path: string): Promise<number | undefined> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : undefined;
  } catch {
    return undefined;
  }
}

/** Hex digest of a file, streamed. `gitBlob` hashes it as git does: sha1("blob <size>\0" + content). */
export async function hashFile(path: string, algorithm: "sha256" | "sha1", gitBlob = false): Promise<string> {
  const hash = createHash(algorithm);
  if (gitBlob) hash.update(`blob ${(await stat(path)).size}\0`);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Uint8Array);
  return hash.digest("hex");
}

/** What a blob must be: its size and, where known, its content hash. */
export interface BlobExpectation {
  size: number;
  /** sha256 of the content (the etag of an LFS file). */
  sha256?: string;
  /** git blob sha1 (the etag of a small, non-LFS file). */
  gitOid?: string;
}

/**
 * Checks a downloaded file against what the hub said it is. Returns undefined when it matches, else the
 * reason, e.g. "size 300000, expected 1087633".
 */
export async function checkBlob(path: string, want: BlobExpectation): Promise<string | undefined> {
  const size = await fileSize(path);
  if (size !== want.size) return `size ${size ?? "missing"}, expected ${want.size}`;
  if (want.sha256 !== undefined) {
    const got = await hashFile(path, "sha256");
    if (got !== want.sha256) return `sha256 ${got}, expected ${want.sha256}`;
  }
  if (want.gitOid !== undefined) {
    const got = await hashFile(path, "sha1", true);
    if (got !== want.gitOid) return `git blob sha1 ${got}, expected ${want.gitOid}`;
  }
  return undefined;
}
