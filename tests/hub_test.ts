/**
 * Tests of the hub download layer (src/io/hub.ts, hf_cache.ts) against a fake hub on 127.0.0.1
 * (tests/helpers/fake_hub.ts) serving the tiny fixture model, and of the progress bar (src/io/progress.ts).
 * No tolerances here: every file comparison is byte-exact.
 */
import { loadTokenizer } from "../src/tokenizer/load.ts";
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { copyFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DownloadProgress, HubError, parseModelSpec, resolveModel, resolveSettings } from "../src/io/hub.ts";
import type { ResolveModelOptions } from "../src/io/hub.ts";
import { hubSettingsFromEnv, normalizeEtag, RepoCache, repoFolderName, unsafeFileName } from "../src/io/hf_cache.ts";
import { formatBytes, formatDuration, ProgressBar } from "../src/io/progress.ts";
import { fakeCommit, gitBlobOid, type HostileValues, startFakeHub } from "./helpers/fake_hub.ts";

const FIXTURES = join(import.meta.dirname ?? ".", "fixtures", "tiny-gpt2-zh");
const MODEL_BIN = join(FIXTURES, "model-bin");
const MODEL_ST = join(FIXTURES, "model");
const REPO = "uer/gpt2-chinese-cluecorpussmall";
const WEIGHTS = "pytorch_model.bin";
const WEIGHTS_SIZE = readFileSync(join(MODEL_BIN, WEIGHTS)).length;

function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `hub-test-${prefix}-`));
}

/** Options for a quiet run against a fake hub, without reading the real environment. */
function options(cacheDir: string, endpoint: string, extra: ResolveModelOptions = {}): ResolveModelOptions {
  return { cacheDir, endpoint, env: {}, quiet: true, retryDelayMs: 5, ...extra };
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Every file of `dir` (through symlinks) equals the same-named file of `fixture`, byte for byte. */
function expectSameFiles(dir: string, fixture: string, names: string[]): void {
  expect(readdirSync(dir).sort()).toEqual([...names].sort());
  for (const name of names) {
    const got = new Uint8Array(readFileSync(join(dir, name)));
    const want = new Uint8Array(readFileSync(join(fixture, name)));
    expect(got.length).toBe(want.length);
    expect(sha256(got)).toBe(sha256(want));
  }
}

async function caught(p: Promise<unknown>): Promise<HubError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof HubError) return e;
    throw e;
  }
  throw new Error("Expected the promise to reject");
}

const BIN_FILES = readdirSync(MODEL_BIN);

/** A URL on 127.0.0.1 where nothing listens (a server's port, after it closed). */
const DEAD = await (async () => {
  const hub = await startFakeHub({ repos: {} });
  await hub.close();
  return hub.url;
})();

describe("resolveModel against a fake hub", () => {
  test("downloads the files into Python's cache layout, byte-identical to the repo", async () => {
    const hub = await startFakeHub({ repos: { [REPO]: MODEL_BIN } });
    const cacheDir = tempDir("layout");
    const events: DownloadProgress[] = [];
    try {
      const dir = await resolveModel(REPO, options(cacheDir, hub.url, { onProgress: (p) => events.push(p) }));
      const commit = fakeCommit(REPO);
      const root = join(cacheDir, "models--uer--gpt2-chinese-cluecorpussmall");
      expect(dir).toBe(join(root, "snapshots", commit));
      expectSameFiles(dir, MODEL_BIN, BIN_FILES);
      expect(readFileSync(join(root, "refs", "main"), "utf8")).toBe(commit);
      // Each snapshot entry is a relative symlink to blobs/<etag>: sha256 for LFS, git blob sha1 otherwise.
      for (const name of BIN_FILES) {
        const bytes = new Uint8Array(readFileSync(join(MODEL_BIN, name)));
        const etag = name === WEIGHTS ? sha256(bytes) : gitBlobOid(bytes);
        expect(lstatSync(join(dir, name)).isSymbolicLink()).toBe(true);
        expect(readlinkSync(join(dir, name))).toBe(`../../blobs/${etag}`);
      }
      expect(readdirSync(join(root, "blobs")).filter((f) => f.endsWith(".incomplete"))).toEqual([]);
      const total = BIN_FILES.reduce((n, f) => n + readFileSync(join(MODEL_BIN, f)).length, 0);
      expect(events.at(-1)?.done).toBe(total);
      expect(events.at(-1)?.total).toBe(total);
      expect(hub.unknown).toEqual([]);
      // The weights came through the LFS redirect to the "CDN".
      expect(hub.requests.some((r) => r.url.startsWith("/cdn/") && r.range === undefined)).toBe(true);

      // A second resolve asks the API only: nothing is downloaded again.
      const before = hub.requests.length;
      expect(await resolveModel(REPO, options(cacheDir, hub.url))).toBe(dir);
      const again = hub.requests.slice(before).map((r) => r.url);
      expect(again.length).toBe(2);
      expect(again.every((u) => u.startsWith("/api/"))).toBe(true);

      // A commit sha that is complete in the cache needs no network (the hub is closed below).
      await hub.close();
      expect(await resolveModel(`${REPO}@${commit}`, options(cacheDir, hub.url))).toBe(dir);
    } finally {
      await hub.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test("prefers model.safetensors and tokenizer.json when the repo has them", async () => {
    const hub = await startFakeHub({ repos: { "org/st": MODEL_ST } });
    const cacheDir = tempDir("st");
    try {
      const dir = await resolveModel("org/st@main", options(cacheDir, hub.url));
      // vocab.txt exists in the repo but is not needed next to tokenizer.json.
      expectSameFiles(dir, MODEL_ST, [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
      ]);
    } finally {
      await hub.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test("a byte-level BPE repository without tokenizer.json gets vocab.json + merges.txt, and loads", async () => {
    const bpe = join(import.meta.dirname ?? ".", "fixtures", "tiny-gpt2-bpe");
    const repoDir = tempDir("bpe");
    const cacheDir = tempDir("bpecache");
    copyFileSync(join(bpe, "model", "model.safetensors"), join(repoDir, "model.safetensors"));
    for (const f of ["config.json", "vocab.json", "merges.txt", "tokenizer_config.json"]) {
      copyFileSync(join(bpe, "model-vocab", f), join(repoDir, f));
    }
    // a chat template kept in a file of its own comes along (optional, as the configs)
    writeFileSync(join(repoDir, "chat_template.jinja"), "{% for m in messages %}{{ m.content }}{% endfor %}");
    const hub = await startFakeHub({ repos: { "org/gpt2-tiny": repoDir } });
    try {
      const dir = await resolveModel("org/gpt2-tiny", options(cacheDir, hub.url));
      expect(readdirSync(dir).sort()).toEqual(
        [
          "chat_template.jinja",
          "config.json",
          "merges.txt",
          "model.safetensors",
          "tokenizer_config.json",
          "vocab.json",
        ],
      );
      const tok = await loadTokenizer(dir);
      expect(tok.encode("Hello world").ids).toEqual(
        (await loadTokenizer(join(bpe, "model"))).encode("Hello world").ids,
      );
    } finally {
      await hub.close();
      for (const d of [repoDir, cacheDir]) rmSync(d, { recursive: true, force: true });
    }
  });

  test("skips absent optional files and names a missing required one", async () => {
    const repoDir = tempDir("repo");
    const cacheDir = tempDir("opt");
    for (const f of ["config.json", WEIGHTS, "vocab.txt"]) copyFileSync(join(MODEL_BIN, f), join(repoDir, f));
    const noTok = tempDir("notok");
    for (const f of ["config.json", WEIGHTS]) copyFileSync(join(MODEL_BIN, f), join(noTok, f));
    const hub = await startFakeHub({ repos: { "org/minimal": repoDir, "org/notok": noTok } });
    try {
      const dir = await resolveModel("org/minimal", options(cacheDir, hub.url));
      expectSameFiles(dir, MODEL_BIN, ["config.json", WEIGHTS, "vocab.txt"]);
      const err = await caught(resolveModel("org/notok", options(cacheDir, hub.url)));
      expect(err.kind).toBe("missing-files");
      expect(err.message).toMatch(/no tokenizer \(tokenizer\.json or vocab\.txt or vocab\.json \+ merges\.txt\)/);
      // An explicit list of files works too.
      const only = await resolveModel("org/notok", options(cacheDir, hub.url, { files: ["config.json"] }));
      expect(readdirSync(only)).toEqual(["config.json"]);
    } finally {
      await hub.close();
      for (const d of [repoDir, noTok, cacheDir]) rmSync(d, { recursive: true, force: true });
    }
  });

  test("resumes a dropped connection within the call with an HTTP Range request", async () => {
    const hub = await startFakeHub({
      repos: { [REPO]: MODEL_BIN },
      drop: { file: WEIGHTS, bytes: 300_000, times: 2 },
    });
    const cacheDir = tempDir("drop");
    const notices: string[] = [];
    try {
      const dir = await resolveModel(REPO, options(cacheDir, hub.url, { log: (m) => notices.push(m) }));
      expectSameFiles(dir, MODEL_BIN, BIN_FILES);
      expect(notices.filter((m) => m.includes("interrupted")).length).toBe(2);
      const resumed = hub.requests.filter((r) => r.url.startsWith("/cdn/") && r.range?.match(/^bytes=[1-9]/));
      expect(resumed.length).toBe(2);
      expect(resumed[0]?.range).toBe(`bytes=300000-${WEIGHTS_SIZE - 1}`);
      expect(resumed[1]?.range).toBe(`bytes=600000-${WEIGHTS_SIZE - 1}`);
    } finally {
      await hub.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test("an interrupted run leaves no partial file in the snapshot, and the next run resumes", async () => {
    const hub = await startFakeHub({
      repos: { [REPO]: MODEL_BIN },
      drop: { file: WEIGHTS, bytes: 400_000, times: 1 },
    });
    const cacheDir = tempDir("interrupt");
    const root = join(cacheDir, repoFolderName(REPO));
    const snapshot = join(root, "snapshots", fakeCommit(REPO));
    const weightsSha = sha256(new Uint8Array(readFileSync(join(MODEL_BIN, WEIGHTS))));
    try {
      const err = await caught(resolveModel(REPO, options(cacheDir, hub.url, { retries: 0 })));
      expect(err.kind).toBe("network");
      expect(err.message).toMatch(/Connection lost while downloading pytorch_model\.bin/);
      expect(err.message).toMatch(/the next run resumes there/);
      // The part is in blobs/<sha256>.incomplete; the snapshot has no weights file and no blob exists.
      const partial = join(root, "blobs", `${weightsSha}.incomplete`);
      const kept = lstatSync(partial).size;
      expect(kept).toBeGreaterThan(0);
      expect(kept).toBeLessThan(WEIGHTS_SIZE);
      expect(existsSync(join(snapshot, WEIGHTS))).toBe(false);
      expect(existsSync(join(root, "blobs", weightsSha))).toBe(false);
      // So the cache alone does not count as holding the model.
      const offline = await caught(resolveModel(REPO, options(cacheDir, hub.url, { offline: true })));
      expect(offline.kind).toBe("not-cached");
      expect(offline.message).toMatch(/lacks weights/);

      const dir = await resolveModel(REPO, options(cacheDir, hub.url));
      expectSameFiles(dir, MODEL_BIN, BIN_FILES);
      const ranged = hub.requests.filter((r) => r.url.startsWith("/cdn/") && r.range?.match(/^bytes=[1-9]/));
      expect(ranged.map((r) => r.range)).toEqual([`bytes=${kept}-${WEIGHTS_SIZE - 1}`]);
      expect(existsSync(partial)).toBe(false);
    } finally {
      await hub.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test("restarts cleanly when the server ignores Range or the partial file is bad", async () => {
    const weights = new Uint8Array(readFileSync(join(MODEL_BIN, WEIGHTS)));
    const weightsSha = sha256(weights);
    for (const ignoreRange of [true, false]) {
      const hub = await startFakeHub({ repos: { [REPO]: MODEL_BIN }, ignoreRange });
      const cacheDir = tempDir("restart");
      const blobs = join(cacheDir, repoFolderName(REPO), "blobs");
      mkdirSync(blobs, { recursive: true });
      // 1000 bytes of garbage where a partial download would be.
      writeFileSync(join(blobs, `${weightsSha}.incomplete`), new Uint8Array(1000).fill(7));
      const notices: string[] = [];
      try {
        const dir = await resolveModel(REPO, options(cacheDir, hub.url, { log: (m) => notices.push(m) }));
        expectSameFiles(dir, MODEL_BIN, BIN_FILES);
        expect(readdirSync(blobs).filter((f) => f.endsWith(".incomplete"))).toEqual([]);
        // The resume was asked for in both cases.
        expect(hub.requests.some((r) => r.range === `bytes=1000-${WEIGHTS_SIZE - 1}`)).toBe(true);
        if (ignoreRange) {
          // The whole file came back (200) and replaced the garbage at once.
          expect(notices).toEqual([]);
        } else {
          // The garbage prefix failed the sha256 check and the file was fetched again from byte 0.
          expect(notices.length).toBe(1);
          expect(notices[0]).toMatch(/does not match the hub: sha256/);
        }
      } finally {
        await hub.close();
        rmSync(cacheDir, { recursive: true, force: true });
      }
    }
  });

  test("rejects content that does not match its sha256 and links nothing", async () => {
    const hub = await startFakeHub({ repos: { [REPO]: MODEL_BIN }, corrupt: WEIGHTS });
    const cacheDir = tempDir("corrupt");
    const root = join(cacheDir, repoFolderName(REPO));
    try {
      const err = await caught(resolveModel(REPO, options(cacheDir, hub.url, { retries: 1 })));
      expect(err.kind).toBe("integrity");
      expect(err.message).toMatch(/pytorch_model\.bin .*does not match the hub: sha256/);
      expect(readdirSync(join(root, "blobs")).filter((f) => f.length === 64 || f.endsWith(".incomplete")))
        .toEqual([]);
      expect(existsSync(join(root, "snapshots", fakeCommit(REPO), WEIGHTS))).toBe(false);
    } finally {
      await hub.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test("404: repository or revision not found, naming the id", async () => {
    const hub = await startFakeHub({ repos: { [REPO]: MODEL_BIN } });
    const cacheDir = tempDir("404");
    try {
      const repoErr = await caught(resolveModel("nobody/nothing", options(cacheDir, hub.url)));
      expect(repoErr.kind).toBe("not-found");
      expect(repoErr.message).toMatch(/nobody\/nothing@main: repository or revision not found/);
      const revErr = await caught(resolveModel(`${REPO}@no-such-branch`, options(cacheDir, hub.url)));
      expect(revErr.message).toMatch(/gpt2-chinese-cluecorpussmall@no-such-branch: repository or revision not found/);
      // Python's cache is not touched by a failed lookup.
      expect(existsSync(join(cacheDir, "models--nobody--nothing"))).toBe(false);
    } finally {
      await hub.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test("401/403: gated or private, set HF_TOKEN; the token is sent when set", async () => {
    const gated = await startFakeHub({ repos: { [REPO]: MODEL_BIN }, requireToken: "hf_test_token" });
    const forbidden = await startFakeHub({ repos: { [REPO]: MODEL_BIN }, fail: { status: 403 } });
    const cacheDir = tempDir("401");
    try {
      const e401 = await caught(resolveModel(REPO, options(cacheDir, gated.url)));
      expect(e401.kind).toBe("access-denied");
      expect(e401.message).toMatch(/HTTP 401\): the repository is gated or private.*set HF_TOKEN/);
      const e403 = await caught(resolveModel(REPO, options(cacheDir, forbidden.url)));
      expect(e403.message).toMatch(/HTTP 403\): the repository is gated or private.*set HF_TOKEN/);
      // The token from the environment object reaches every hub request (the CDN URLs need none).
      const dir = await resolveModel(REPO, options(cacheDir, gated.url, { env: { HF_TOKEN: "hf_test_token" } }));
      expectSameFiles(dir, MODEL_BIN, BIN_FILES);
      const hubCalls = gated.requests.filter((r) => !r.url.startsWith("/cdn/")).slice(1);
      expect(hubCalls.every((r) => r.authorization === "Bearer hf_test_token")).toBe(true);
    } finally {
      await gated.close();
      await forbidden.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });
});

/** Every path under `dir`, relative, sorted. */
function listTree(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).map(String).sort();
}

describe("resolveModel against a hostile hub", () => {
  const commit = fakeCommit(REPO);
  const cases: Array<[string, HostileValues, RegExp]> = [
    ["oid", { file: "config.json", oid: "../../../escaped" }, /"oid" of config\.json is "\.\.\/\.\.\/\.\.\/escaped"/],
    ["lfs.oid", { file: WEIGHTS, lfsOid: "../../../escaped" }, /"lfs\.oid" of pytorch_model\.bin is "\.\.\//],
    ["absolute oid", { file: "config.json", oid: "/tmp/escaped" }, /"oid" of config\.json is "\/tmp\/escaped"/],
    ["upper-case oid", { file: "config.json", oid: "A".repeat(40) }, /"oid" of config\.json is "A{40}"/],
    ["path", { file: "config.json", path: "../config.json" }, /"path" is "\.\.\/config\.json" .*"\.\." segment/],
    ["path with a backslash", { file: "config.json", path: "..\\config.json" }, /"path" is .*backslash/],
    ["sha", { sha: "../../../escaped" }, /"sha" is "\.\.\/.*40 lowercase hex digits/],
    ["X-Repo-Commit", { repoCommit: "../../../escaped" }, /header X-Repo-Commit is "\.\.\/.*40 lowercase hex digits/],
    ["ETag", { file: "config.json", etag: `"../../../escaped"` }, /header ETag is .*40 or 64 lowercase hex digits/],
    ["X-Linked-Etag", { linkedEtag: `"../../../escaped"` }, /header X-Linked-Etag is .*40 or 64 lowercase hex/],
  ];
  for (const [what, hostile, message] of cases) {
    test(`a bad ${what} is refused, naming the URL, and nothing is written`, async () => {
      // A dropped download (retries 0) keeps its .incomplete file: were the oid used, it would stay outside.
      const hub = await startFakeHub({
        repos: { [REPO]: MODEL_BIN },
        hostile,
        drop: { file: hostile.file ?? WEIGHTS, bytes: 100, times: 1 },
      });
      const outer = tempDir("hostile");
      const cacheDir = join(outer, "cache");
      mkdirSync(cacheDir);
      const seen = new Set<string>();
      const onProgress = () => listTree(outer).forEach((p) => seen.add(p));
      try {
        const err = await caught(resolveModel(REPO, options(cacheDir, hub.url, { retries: 0, onProgress })));
        expect(err.kind).toBe("bad-response");
        expect(err.message).toMatch(message);
        expect(err.message).toContain(`Cannot use the answer of ${hub.url}/`);
        // Nothing at all was created: no ref, no blob, no snapshot, inside the cache or outside it.
        expect(listTree(outer)).toEqual(["cache"]);
        expect([...seen].filter((p) => p !== "cache")).toEqual([]);
      } finally {
        await hub.close();
        rmSync(outer, { recursive: true, force: true });
      }
    });
  }

  test("ETags are read as huggingface_hub reads them: W/ and quotes stripped", async () => {
    const config = new Uint8Array(readFileSync(join(MODEL_BIN, "config.json")));
    const hub = await startFakeHub({
      repos: { [REPO]: MODEL_BIN },
      hostile: { etag: `W/"${gitBlobOid(config)}"`, repoCommit: commit },
    });
    const cacheDir = tempDir("weak-etag");
    try {
      expectSameFiles(await resolveModel(REPO, options(cacheDir, hub.url)), MODEL_BIN, BIN_FILES);
    } finally {
      await hub.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test("the cache itself refuses names that would leave it", () => {
    const cache = new RepoCache("/c", REPO);
    for (const bad of ["../../x", "A".repeat(40), "", "0".repeat(41)]) {
      expect(() => cache.blobPath(bad)).toThrow(`Invalid blob name for the hub cache: ${JSON.stringify(bad)}`);
      expect(() => cache.snapshotDir(bad)).toThrow(`Invalid commit for the hub cache: ${JSON.stringify(bad)}`);
    }
    expect(cache.blobPath("0".repeat(64))).toBe(join(cache.root, "blobs", "0".repeat(64)));
    expect(unsafeFileName("sub/model.safetensors")).toBeUndefined();
    expect(unsafeFileName("a/../b")).toBe(`it has a ".." segment`);
    expect(unsafeFileName("C:x")).toBe("it is an absolute path");
    expect(normalizeEtag(`W/"abc"`)).toBe("abc");
  });

  test("a file name to fetch must be a relative name inside the repository", async () => {
    const cacheDir = tempDir("bad-name");
    try {
      for (const bad of ["../x.json", "/etc/passwd", "a\\b", "a\0b", "a//b"]) {
        const err = await caught(resolveModel(REPO, options(cacheDir, DEAD, { files: [bad] })));
        expect(err.kind).toBe("bad-spec");
        expect(err.message).toContain(`Invalid file to fetch: ${JSON.stringify(bad)}`);
      }
      expect(listTree(cacheDir)).toEqual([]);
    } finally {
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });
});

describe("resolveModel against a slow hub", () => {
  const API_URL = /http:\/\/127\.0\.0\.1:\d+\/api\/models\/uer\/gpt2-chinese-cluecorpussmall\/revision\/main\S*/;

  test("a hub that never answers fails after HF_HUB_ETAG_TIMEOUT, naming the URL", async () => {
    const hub = await startFakeHub({ repos: { [REPO]: MODEL_BIN }, noAnswer: "api" });
    const cacheDir = tempDir("no-answer");
    try {
      const t0 = Date.now();
      const err = await caught(resolveModel(REPO, options(cacheDir, hub.url, { env: { HF_HUB_ETAG_TIMEOUT: "0.3" } })));
      const elapsed = Date.now() - t0;
      expect(err.kind).toBe("not-cached");
      expect(err.message).toMatch(/the hub did not answer http:\/\/127\.0\.0\.1:\d+\/api\/models\/uer\//);
      expect(err.message).toContain("within 0.3 s (HF_HUB_ETAG_TIMEOUT)");
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(3000);
    } finally {
      await hub.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test("a download URL that never answers fails after HF_HUB_ETAG_TIMEOUT, naming it", async () => {
    const hub = await startFakeHub({ repos: { [REPO]: MODEL_BIN }, noAnswer: "resolve" });
    const cacheDir = tempDir("no-answer-resolve");
    try {
      const t0 = Date.now();
      const err = await caught(resolveModel(REPO, options(cacheDir, hub.url, { etagTimeout: 0.3 })));
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(err.kind).toBe("network");
      expect(err.message).toMatch(
        /no answer from http:\/\/127\.0\.0\.1:\d+\/uer\/gpt2-chinese-cluecorpussmall\/resolve\/[0-9a-f]{40}\/\S+ within 0\.3 s \(HF_HUB_ETAG_TIMEOUT\)/,
      );
    } finally {
      await hub.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test("a download that stalls mid-file is resumed with Range after HF_HUB_DOWNLOAD_TIMEOUT", async () => {
    const hub = await startFakeHub({
      repos: { [REPO]: MODEL_BIN },
      stall: { file: WEIGHTS, bytes: 300_000, times: 1 },
    });
    const cacheDir = tempDir("stall");
    const notices: string[] = [];
    try {
      const t0 = Date.now();
      const dir = await resolveModel(
        REPO,
        options(cacheDir, hub.url, { env: { HF_HUB_DOWNLOAD_TIMEOUT: "0.3" }, log: (m) => notices.push(m) }),
      );
      expect(Date.now() - t0).toBeLessThan(3000);
      expectSameFiles(dir, MODEL_BIN, BIN_FILES);
      expect(notices.length).toBe(1);
      expect(notices[0]).toMatch(
        /Download of pytorch_model\.bin interrupted \(Timed out downloading pytorch_model\.bin: no data from http:\/\/127\.0\.0\.1:\d+\/cdn\/[0-9a-f]{64}\S* for 0\.3 s \(HF_HUB_DOWNLOAD_TIMEOUT\)\); retrying \(1\/3\)/,
      );
      const resumed = hub.requests.filter((r) => r.url.startsWith("/cdn/") && r.range?.match(/^bytes=[1-9]/));
      expect(resumed.map((r) => r.range)).toEqual([`bytes=300000-${WEIGHTS_SIZE - 1}`]);
    } finally {
      await hub.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test("a download that keeps stalling fails in bounded time, naming the URL and the bytes kept", async () => {
    const hub = await startFakeHub({
      repos: { [REPO]: MODEL_BIN },
      stall: { file: WEIGHTS, bytes: 200_000, times: 9 },
    });
    const cacheDir = tempDir("stall-fail");
    try {
      const t0 = Date.now();
      const err = await caught(resolveModel(REPO, options(cacheDir, hub.url, { downloadTimeout: 0.2, retries: 1 })));
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(err.kind).toBe("network");
      expect(err.message).toMatch(
        /Timed out downloading pytorch_model\.bin: no data from http:\/\/127\.0\.0\.1:\d+\/cdn\/[0-9a-f]{64}\S* for 0\.2 s/,
      );
      expect(err.message).toMatch(/400000 bytes kept in .*\.incomplete, the next run resumes there/);
    } finally {
      await hub.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test("with the model cached, a 503 or a hub that does not answer falls back to the cache", async () => {
    const good = await startFakeHub({ repos: { [REPO]: MODEL_BIN } });
    const down = await startFakeHub({ repos: { [REPO]: MODEL_BIN }, fail: { status: 503 } });
    const silent = await startFakeHub({ repos: { [REPO]: MODEL_BIN }, noAnswer: "api" });
    const cacheDir = tempDir("fallback");
    const notices: string[] = [];
    const log = (m: string) => notices.push(m);
    try {
      const snapshot = await resolveModel(REPO, options(cacheDir, good.url));
      expect(await resolveModel(REPO, options(cacheDir, down.url, { log }))).toBe(snapshot);
      expect(notices.length).toBe(1);
      expect(notices[0]).toMatch(/^The hub answered HTTP 503 for /);
      expect(notices[0]).toMatch(API_URL);
      expect(notices[0]).toContain(`: using the cached snapshot ${snapshot}`);

      const t0 = Date.now();
      expect(await resolveModel(REPO, options(cacheDir, silent.url, { log, etagTimeout: 0.3 }))).toBe(snapshot);
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(notices.length).toBe(2);
      expect(notices[1]).toMatch(/^No answer from /);
      expect(notices[1]).toMatch(API_URL);
      expect(notices[1]).toContain(`within 0.3 s (HF_HUB_ETAG_TIMEOUT): using the cached snapshot ${snapshot}`);
      expectSameFiles(snapshot, MODEL_BIN, BIN_FILES);
    } finally {
      for (const hub of [good, down, silent]) await hub.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test("with the model cached, a 502 on the file list falls back to the cache too", async () => {
    const good = await startFakeHub({ repos: { [REPO]: MODEL_BIN } });
    const down = await startFakeHub({ repos: { [REPO]: MODEL_BIN }, fail: { status: 502, only: "/paths-info/" } });
    const cacheDir = tempDir("fallback-paths");
    const notices: string[] = [];
    try {
      const snapshot = await resolveModel(REPO, options(cacheDir, good.url));
      expect(await resolveModel(REPO, options(cacheDir, down.url, { log: (m) => notices.push(m) }))).toBe(snapshot);
      expect(notices).toEqual([
        `The hub answered HTTP 502 for ${down.url}/api/models/${REPO}/paths-info/${fakeCommit(REPO)}: ` +
        `using the cached snapshot ${snapshot}`,
      ]);
    } finally {
      await good.close();
      await down.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test("without a cache, a 503 is one error naming the URL and the status", async () => {
    const down = await startFakeHub({ repos: { [REPO]: MODEL_BIN }, fail: { status: 503 } });
    const cacheDir = tempDir("503");
    try {
      const err = await caught(resolveModel(REPO, options(cacheDir, down.url)));
      expect(err.kind).toBe("not-cached");
      expect(err.message).toMatch(/the hub answered HTTP 503 for http:\/\/127\.0\.0\.1:\d+\/api\/models\/uer\//);
      expect(err.message).toContain(join(cacheDir, "models--uer--gpt2-chinese-cluecorpussmall"));
    } finally {
      await down.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });
});

/** Builds the cache the way Python's huggingface_hub leaves it, by hand. */
function writePythonCache(cacheDir: string, commit: string): string {
  const root = join(cacheDir, "models--uer--gpt2-chinese-cluecorpussmall");
  const snapshot = join(root, "snapshots", commit);
  mkdirSync(join(root, "blobs"), { recursive: true });
  mkdirSync(join(root, "refs"), { recursive: true });
  mkdirSync(snapshot, { recursive: true });
  writeFileSync(join(root, "refs", "main"), commit);
  for (const name of BIN_FILES) {
    const bytes = new Uint8Array(readFileSync(join(MODEL_BIN, name)));
    const etag = name === WEIGHTS ? sha256(bytes) : gitBlobOid(bytes);
    writeFileSync(join(root, "blobs", etag), bytes);
    symlinkSync(`../../blobs/${etag}`, join(snapshot, name));
  }
  return snapshot;
}

describe("resolveModel with a cache written by Python", () => {
  test("HF_HUB_OFFLINE=1 resolves refs/main from the cache, with no network", async () => {
    const cacheDir = tempDir("python");
    try {
      const commit = "0123456789abcdef0123456789abcdef01234567";
      const snapshot = writePythonCache(cacheDir, commit);
      // Nothing listens at the endpoint: any request would fail.
      const opts = { cacheDir, endpoint: DEAD, env: { HF_HUB_OFFLINE: "1" }, quiet: true };
      const dir = await resolveModel(REPO, opts);
      expect(dir).toBe(snapshot);
      expectSameFiles(dir, MODEL_BIN, BIN_FILES);
      expect(await resolveModel(`${REPO}@${commit}`, opts)).toBe(snapshot);
    } finally {
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test("online, the blobs Python fetched are reused, not downloaded again", async () => {
    const hub = await startFakeHub({ repos: { [REPO]: MODEL_BIN } });
    const cacheDir = tempDir("reuse");
    try {
      const snapshot = writePythonCache(cacheDir, fakeCommit(REPO));
      expect(await resolveModel(REPO, options(cacheDir, hub.url))).toBe(snapshot);
      expect(hub.requests.map((r) => r.url.split("?")[0]!.split("/").slice(0, 4).join("/"))).toEqual([
        "/api/models/uer",
        "/api/models/uer",
      ]);
    } finally {
      await hub.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  test("an unreachable hub falls back to the cached snapshot", async () => {
    const cacheDir = tempDir("unreachable-cached");
    const notices: string[] = [];
    try {
      const snapshot = writePythonCache(cacheDir, fakeCommit(REPO));
      const dir = await resolveModel(REPO, options(cacheDir, DEAD, { log: (m) => notices.push(m) }));
      expect(dir).toBe(snapshot);
      expect(notices.join("\n")).toMatch(/Cannot reach http:\/\/127\.0\.0\.1:\d+ .*using the cached snapshot/);
    } finally {
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });
});

describe("resolveModel with nothing cached and no hub", () => {
  for (
    const [what, extra, why] of [
      ["offline", { offline: true }, /offline mode is on/],
      ["unreachable", {}, /the hub at http:\/\/127\.0\.0\.1:\d+ cannot be reached/],
    ] as const
  ) {
    test(`${what}: one clear error naming the files, the cache and the demo`, async () => {
      const cacheDir = tempDir(what);
      try {
        const err = await caught(resolveModel(REPO, options(cacheDir, DEAD, extra)));
        expect(err.kind).toBe("not-cached");
        expect(err.message).toMatch(why);
        expect(err.message).toContain(
          "config.json; model.safetensors or pytorch_model.bin; tokenizer.json or vocab.txt or vocab.json + merges.txt",
        );
        expect(err.message).toContain(join(cacheDir, "models--uer--gpt2-chinese-cluecorpussmall"));
        expect(err.message).toContain("`deno task demo`");
      } finally {
        rmSync(cacheDir, { recursive: true, force: true });
      }
    });
  }
});

describe("model specs and settings", () => {
  test("parseModelSpec: id, id@revision, malformed ids", () => {
    expect(parseModelSpec(REPO)).toEqual({ repoId: REPO, revision: "main" });
    expect(parseModelSpec("gpt2@v1.0")).toEqual({ repoId: "gpt2", revision: "v1.0" });
    expect(parseModelSpec(`${REPO}@refs/pr/1`)).toEqual({ repoId: REPO, revision: "refs/pr/1" });
    for (const bad of ["", "a b", "org/na--me", "org/name@", "-x/y"]) {
      expect(() => parseModelSpec(bad)).toThrow(/Invalid model/);
    }
  });

  test("a local directory is returned as is; a missing path is an error", async () => {
    expect(await resolveModel(MODEL_BIN, { env: {}, quiet: true })).toBe(MODEL_BIN);
    await expect(resolveModel("./no/such/model", { env: {} })).rejects.toThrow(
      "Model directory not found: ./no/such/model",
    );
    // and how to get one
    await expect(resolveModel("./no/such/model", { env: {} })).rejects.toThrow(
      "`npm run demo` writes runs/demo/base_model",
    );
  });

  test("hubSettingsFromEnv reads the variables Python reads, in Python's order", () => {
    const home = "/home/u";
    expect(hubSettingsFromEnv({}, home)).toEqual({
      cacheDir: "/home/u/.cache/huggingface/hub",
      endpoint: "https://huggingface.co",
      offline: false,
      etagTimeout: 10,
      downloadTimeout: 10,
    });
    expect(hubSettingsFromEnv({ XDG_CACHE_HOME: "/x" }, home).cacheDir).toBe("/x/huggingface/hub");
    expect(hubSettingsFromEnv({ XDG_CACHE_HOME: "/x", HF_HOME: "~/hf" }, home).cacheDir).toBe("/home/u/hf/hub");
    expect(hubSettingsFromEnv({ HF_HOME: "/hf", HUGGINGFACE_HUB_CACHE: "/old" }, home).cacheDir).toBe("/old");
    expect(hubSettingsFromEnv({ HF_HOME: "/hf", HUGGINGFACE_HUB_CACHE: "/old", HF_HUB_CACHE: "/new" }, home).cacheDir)
      .toBe("/new");
    const s = hubSettingsFromEnv(
      { HF_ENDPOINT: "https://hf-mirror.com/", HF_TOKEN: "hf_abc", HF_HUB_OFFLINE: "1" },
      home,
    );
    expect(s).toEqual({
      cacheDir: "/home/u/.cache/huggingface/hub",
      endpoint: "https://hf-mirror.com",
      token: "hf_abc",
      offline: true,
      etagTimeout: 10,
      downloadTimeout: 10,
    });
    expect(hubSettingsFromEnv({ HUGGING_FACE_HUB_TOKEN: "hf_old" }, home).token).toBe("hf_old");
    // The home directory is asked for only when a path needs it.
    const noHome = () => {
      throw new Error("home directory not needed");
    };
    expect(hubSettingsFromEnv({ HF_HUB_CACHE: "/c" }, noHome).cacheDir).toBe("/c");
    expect(() => hubSettingsFromEnv({}, noHome)).toThrow("home directory not needed");
    for (const [v, on] of [["1", true], ["TRUE", true], ["yes", true], ["0", false], ["", false]] as const) {
      expect(hubSettingsFromEnv({ HF_HUB_OFFLINE: v }, home).offline).toBe(on);
    }
    // The timeouts are seconds, as in Python; a value that is not a number > 0 names the variable.
    const t = hubSettingsFromEnv({ HF_HUB_ETAG_TIMEOUT: "0.5", HF_HUB_DOWNLOAD_TIMEOUT: " 30 " }, home);
    expect([t.etagTimeout, t.downloadTimeout]).toEqual([0.5, 30]);
    expect(hubSettingsFromEnv({ HF_HUB_ETAG_TIMEOUT: "" }, home).etagTimeout).toBe(10);
    for (const v of ["ten", "0", "-1", "1s", "Infinity"]) {
      expect(() => hubSettingsFromEnv({ HF_HUB_ETAG_TIMEOUT: v }, home)).toThrow(
        `Invalid HF_HUB_ETAG_TIMEOUT: ${JSON.stringify(v)} (expected a number of seconds > 0)`,
      );
      expect(() => hubSettingsFromEnv({ HF_HUB_DOWNLOAD_TIMEOUT: v }, home)).toThrow(/Invalid HF_HUB_DOWNLOAD_TIMEOUT/);
    }
    // An option replaces its variable, which is then not read.
    const o = resolveSettings({ env: { HF_HUB_ETAG_TIMEOUT: "ten", HF_HUB_DOWNLOAD_TIMEOUT: "2" }, etagTimeout: 0.3 });
    expect([o.etagTimeout, o.downloadTimeout]).toEqual([0.3, 2]);
    expect(() => resolveSettings({ env: {}, downloadTimeout: 0 })).toThrow(/Invalid downloadTimeout: 0/);
    // Options win over the environment.
    const r = resolveSettings({
      env: { HF_HUB_OFFLINE: "1", HF_ENDPOINT: "http://a" },
      offline: false,
      endpoint: "http://b/",
    });
    expect(r.offline).toBe(false);
    expect(r.endpoint).toBe("http://b");
  });
});

/** A stream that records what is written, for the progress bar. */
function recorder(isTTY: boolean) {
  const out: string[] = [];
  return { out, stream: { isTTY, columns: 100, write: (s: string) => out.push(s) } };
}

describe("ProgressBar", () => {
  test("formats bytes and durations", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.50 KiB");
    expect(formatBytes(401.2 * 1024 * 1024)).toBe("401.2 MiB");
    expect(formatDuration(45)).toBe("45s");
    expect(formatDuration(185)).toBe("3m05s");
    expect(formatDuration(7380)).toBe("2h03m");
    expect(formatDuration(Infinity)).toBe("?");
  });

  test("on a TTY: redraws one line with bytes, rate and ETA, throttled", () => {
    let now = 0;
    const { out, stream } = recorder(true);
    const MiB = 1024 * 1024;
    const bar = new ProgressBar({ total: 10 * MiB, unit: "bytes", label: "weights", stream, now: () => now });
    now = 1000;
    bar.update(2 * MiB, "pytorch_model.bin");
    now = 1050; // within the 100 ms throttle: not drawn
    bar.update(2.1 * MiB);
    now = 2000;
    bar.update(4 * MiB);
    expect(out.length).toBe(2);
    expect(out.every((s) => s.startsWith("\r"))).toBe(true);
    const line = out[1]!;
    expect(line).toContain("weights   40%");
    expect(line).toContain("4.00 MiB/10.0 MiB");
    expect(line).toContain("2.00 MiB/s"); // 4 MiB in 2 s
    expect(line).toContain("ETA 3s"); // 6 MiB left at 2 MiB/s
    expect(line).toContain("pytorch_model.bin");
    // A log line wipes the bar, goes above it, and the bar is drawn again.
    bar.log("step 10: loss 2.5");
    expect(out.at(-2)).toMatch(/^\r +\rstep 10: loss 2\.5\n$/);
    expect(out.at(-1)).toContain("4.00 MiB/10.0 MiB");
    // a message printed elsewhere (the training's lines go to stdout): the bar line is wiped first, then
    // drawn again, so the message never runs into it
    const printed: string[] = [];
    bar.log("Reached MAX_STEPS=60, stopping early.", (l) => printed.push(l));
    expect(printed).toEqual(["Reached MAX_STEPS=60, stopping early."]);
    expect(out.at(-2)).toMatch(/^\r +\r$/);
    expect(out.at(-1)).toContain("4.00 MiB/10.0 MiB");
    now = 3000;
    bar.update(10 * MiB);
    bar.finish();
    expect(out.at(-1)).toBe("\n");
    expect(out.at(-2)).toContain("100%");
  });

  test("without a TTY: plain lines every few seconds, steps as items", () => {
    let now = 0;
    const { out, stream } = recorder(false);
    const bar = new ProgressBar({
      total: 100,
      unit: "items",
      itemName: "steps",
      label: "train",
      stream,
      now: () => now,
      plainEveryMs: 5000,
    });
    for (let step = 1; step <= 100; step++) {
      now = step * 200; // 5 steps/s
      bar.update(step, `loss ${(1 / step).toFixed(3)}`);
    }
    bar.finish();
    bar.log("done");
    expect(out.pop()).toBe("done\n");
    // First update, then every 5 s (25 steps), and the final step; finish adds nothing new.
    expect(out.length).toBe(5);
    expect(out.every((s) => s.endsWith("\n") && !s.includes("\r"))).toBe(true);
    expect(out[0]).toContain("1/100 steps");
    expect(out.at(-1)).toContain("100/100 steps");
    expect(out.at(-1)).toContain("5.00 steps/s");
    expect(out.at(-1)).toContain("loss 0.010");
  });
});
