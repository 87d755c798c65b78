// The browser page's kept models (web/storage.ts): what a source.json read back from the browser's storage
// may hold before it becomes paths in the in-memory hub cache, and the folder names.
import { describe, expect, test } from "bun:test";
import { parseSource, storedFolder } from "../web/storage.ts";

const good = {
  id: "uer/gpt2-chinese-cluecorpussmall@main",
  repoId: "uer/gpt2-chinese-cluecorpussmall",
  revision: "main",
  folder: "models--uer--gpt2-chinese-cluecorpussmall",
  commit: "0123456789abcdef0123456789abcdef01234567",
  files: { "config.json": 855, "model.safetensors": 421_000_000 },
  storedAt: "2026-12-03T18:00:00.000Z",
};

describe("kept models: source.json", () => {
  test("a valid record reads back as it was written", () => {
    expect(parseSource(JSON.stringify(good), good.folder)).toEqual(good);
    expect(storedFolder("uer/gpt2-chinese-cluecorpussmall")).toBe(good.folder);
  });

  test("anything that would become a bad path or size is refused, naming the folder", () => {
    const bad: [Record<string, unknown>, string][] = [
      [{ files: { "../x": 1 } }, "invalid file entry"],
      [{ files: { "..": 1 } }, "invalid file entry"],
      [{ files: { "a/b": 1 } }, "invalid file entry"],
      [{ files: { "source.json": 1 } }, "invalid file entry"],
      [{ files: { "config.json": -1 } }, "invalid file entry"],
      [{ files: { "config.json": 1.5 } }, "invalid file entry"],
      [{ commit: "../../etc" }, "invalid commit"],
      [{ revision: "../main" }, "invalid revision"],
      [{ revision: "a//b" }, "invalid revision"],
      [{ repoId: "other/model" }, "which is not kept in"],
      [{ folder: "models--other" }, "lacks id/folder/storedAt"],
      [{ repoId: undefined }, "lacks repoId/revision/commit"],
    ];
    for (const [change, message] of bad) {
      expect(() => parseSource(JSON.stringify({ ...good, ...change }), good.folder)).toThrow(message);
    }
    expect(() => parseSource("{", good.folder)).toThrow(`The kept model ${good.folder}: source.json is not JSON`);
    expect(() => storedFolder("../x")).toThrow("not a model id");
  });
});
