/**
 * The browser bundle's stand-ins for `node:` built-ins (src/platform/browser/) against the real ones:
 * SHA-256, POSIX paths, parseArgs, the stored-block deflate, and the in-memory file system's semantics
 * that the atomic writes rely on.
 */

import { describe, expect, test } from "bun:test";
import * as nodeCrypto from "node:crypto";
import * as nodePath from "node:path";
import * as nodeUtil from "node:util";
import * as nodeZlib from "node:zlib";
import { createHash } from "../src/platform/browser/crypto.ts";
import * as path from "../src/platform/browser/path.ts";
import { parseArgs } from "../src/platform/browser/util.ts";
import { deflateSync } from "../src/platform/browser/zlib.ts";
import { MemFs, memfs } from "../src/platform/browser/memfs.ts";
import { readFile, symlink } from "../src/platform/browser/fs_promises.ts";
import browserProcess from "../src/platform/browser/process.ts";

describe("browser platform", () => {
  test("sha256 and sha1 equal node:crypto's at block boundaries and in pieces", () => {
    for (const algo of ["sha256", "sha1"]) {
      for (const n of [0, 1, 55, 56, 63, 64, 65, 1000]) {
        const data = new Uint8Array(n).map((_, i) => (i * 31 + 7) & 0xff);
        const want = nodeCrypto.createHash(algo).update(data).digest("hex");
        expect(createHash(algo).update(data).digest("hex")).toBe(want);
        expect(createHash(algo).update(data.subarray(0, n >> 1)).update(data.subarray(n >> 1)).digest("hex"))
          .toBe(want);
      }
      expect(createHash(algo).update("中文").digest("hex")).toBe(
        nodeCrypto.createHash(algo).update("中文").digest("hex"),
      );
    }
    expect(() => createHash("md5")).toThrow('"md5" is not available in the browser');
  });

  test("paths equal node:path's (posix)", () => {
    // (without a trailing slash, which node:path keeps and the stand-in drops)
    const cases = ["a/b/../c", "/a//b/./c", "../x", "a", "/", ".", "runs/demo/model"];
    for (const c of cases) {
      expect(path.normalize(c)).toBe(nodePath.posix.normalize(c));
      expect(path.dirname(c)).toBe(nodePath.posix.dirname(nodePath.posix.normalize(c)));
      expect(path.basename(c)).toBe(nodePath.posix.basename(c));
    }
    expect(path.join("runs", "demo", "../x", "m.json")).toBe(nodePath.posix.join("runs", "demo", "../x", "m.json"));
    expect(path.relative("/a/b/c", "/a/d")).toBe(nodePath.posix.relative("/a/b/c", "/a/d"));
    expect(path.resolve("x", "y")).toBe("/x/y");
  });

  test("parseArgs equals node:util's on the front doors' forms, and fails with its codes", () => {
    const options = {
      out: { type: "string" as const, default: "runs/demo" },
      steps: { type: "string" as const },
      json: { type: "boolean" as const, default: false },
      help: { type: "boolean" as const, short: "h", default: false },
    };
    for (const args of [["--json", "--steps", "3"], ["--out=x", "-h"], []]) {
      const want = nodeUtil.parseArgs({ args, options });
      expect({ ...parseArgs({ args, options }).values }).toEqual({ ...want.values });
    }
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as { code?: string }).code;
      }
    };
    expect(code(() => parseArgs({ args: ["--stepz", "3"], options }))).toBe("ERR_PARSE_ARGS_UNKNOWN_OPTION");
    expect(code(() => parseArgs({ args: ["--steps"], options }))).toBe("ERR_PARSE_ARGS_INVALID_OPTION_VALUE");
    expect(code(() => parseArgs({ args: ["x"], options }))).toBe("ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL");
  });

  test("deflateSync's stored blocks inflate to the input", () => {
    for (const n of [0, 10, 65535, 65536, 200000]) {
      const data = new Uint8Array(n).map((_, i) => i % 251);
      expect(new Uint8Array(nodeZlib.inflateSync(deflateSync(data)))).toEqual(data);
    }
  });

  test("memfs: exclusive create, appends, rename over a file, refusing a non-empty directory", () => {
    const fs = new MemFs();
    fs.mkdir("runs/a", { recursive: true });
    const fd = fs.open("runs/a/log.jsonl", "wx");
    fs.write(fd, "one\n");
    fs.write(fd, "two\n");
    fs.close(fd);
    expect(() => fs.open("runs/a/log.jsonl", "wx")).toThrow("EEXIST");
    const app = fs.open("runs/a/log.jsonl", "a");
    fs.write(app, "three\n");
    fs.close(app);
    expect(new TextDecoder().decode(fs.readFile("/runs/a/log.jsonl"))).toBe("one\ntwo\nthree\n");
    fs.writeFile("runs/a/new.tmp", "x");
    fs.rename("runs/a/new.tmp", "runs/a/log.jsonl");
    expect(fs.list("runs/a")).toEqual(["log.jsonl"]);
    fs.mkdir("runs/b");
    expect(() => fs.rename("runs/b", "runs/a")).toThrow("ENOTEMPTY");
    expect(() => fs.readFile("runs/none")).toThrow("ENOENT");
    fs.rm("runs", { recursive: true });
    expect(fs.exists("runs/a/log.jsonl")).toBe(false);
  });

  test("symlink: the hub cache's relative link names the blob's file, sharing its bytes", async () => {
    memfs.mkdir("/hf/models--a--b/blobs", { recursive: true });
    memfs.mkdir("/hf/models--a--b/snapshots/c1", { recursive: true });
    memfs.writeFile("/hf/models--a--b/blobs/e1", "weights");
    await symlink("../../blobs/e1", "/hf/models--a--b/snapshots/c1/model.safetensors");
    expect(await readFile("/hf/models--a--b/snapshots/c1/model.safetensors", "utf8")).toBe("weights");
    // one file under two names: an append through one shows through the other
    const fd = memfs.open("/hf/models--a--b/blobs/e1", "a");
    memfs.write(fd, "!");
    memfs.close(fd);
    expect(await readFile("/hf/models--a--b/snapshots/c1/model.safetensors", "utf8")).toBe("weights!");
    await expect(symlink("../../blobs/none", "/hf/models--a--b/snapshots/c1/x")).rejects.toThrow("ENOENT");
    await expect(symlink("../../blobs/e1", "/hf/models--a--b/snapshots/c1/model.safetensors")).rejects.toThrow(
      "EEXIST",
    );
    memfs.rm("/hf", { recursive: true });
  });

  test("process: the page's signals reach on/once listeners until off", () => {
    const got: string[] = [];
    const a = () => got.push("a");
    browserProcess.on("SIGINT", a);
    browserProcess.once("SIGINT", () => got.push("once"));
    expect(browserProcess.emit("SIGINT")).toBe(true);
    expect(browserProcess.emit("SIGINT")).toBe(true);
    browserProcess.off("SIGINT", a);
    expect(browserProcess.emit("SIGINT")).toBe(false);
    expect(got).toEqual(["a", "once", "a"]);
  });
});
