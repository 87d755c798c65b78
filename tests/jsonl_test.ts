// JSONL reading (the notebook's load_jsonl: utf-8-sig, blank lines skipped) and writing (json.dumps with
// ensure_ascii=False). Exact comparisons throughout: text and parsed values, no tolerance needed.
import { describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  parseJsonl,
  pythonJsonDumps,
  readJsonlEntries,
  readSftRecords,
  toJsonl,
  validateRecords,
} from "../src/data/jsonl.ts";
import { readJsonl } from "./helpers/read_jsonl.ts";

async function withFile(content: string | Uint8Array, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "jsonl_test_"));
  try {
    const path = join(dir, "x.jsonl");
    await writeFile(path, content);
    await fn(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const REC = { instruction: "问", response: "答", category: "诉求分类", metric: "text", expected: "答" };

describe("readJsonl", () => {
  test("BOM, blank lines, CRLF and lone CR", async () => {
    await withFile('\uFEFF{"a": 1}\r\n\r\n   \n{"a": 2}\r{"a": "三"}\n\n', async (path) => {
      expect(await readJsonl(path)).toEqual([{ a: 1 }, { a: 2 }, { a: "三" }]);
      expect((await readJsonlEntries(path)).map((e) => e.line)).toEqual([1, 4, 5]);
    });
  });

  test("a bad line names file and line and what was wrong", async () => {
    await withFile('{"a": 1}\n\n{"a": 2,}\n', async (path) => {
      await expect(readJsonl(path)).rejects.toThrow(`${path}:3: invalid JSON`);
      await expect(readJsonl(path)).rejects.toThrow('{\\"a\\": 2,}');
    });
  });

  test("an empty file is a clear error, unless allowed", async () => {
    await withFile("\n  \n", async (path) => {
      await expect(readJsonl(path)).rejects.toThrow(`${path}: no records: the file is empty or has only blank lines`);
      expect(await readJsonl(path, { allowEmpty: true })).toEqual([]);
    });
    await withFile("", async (path) => {
      await expect(readJsonl(path)).rejects.toThrow("no records");
    });
  });

  test("a missing file and invalid UTF-8", async () => {
    await expect(readJsonl(join(tmpdir(), "does_not_exist_4711.jsonl"))).rejects.toThrow("Cannot read JSONL file");
    await withFile(new Uint8Array([0x7b, 0x7d, 0x0a, 0x22, 0xff, 0x22]), async (path) => {
      await expect(readJsonl(path)).rejects.toThrow(`${path}:2:2: not valid UTF-8 (byte 0xff at line 2, column 2`);
    });
    // the column counts characters, not bytes: 中 and 文 are 3 bytes each; a BOM and \r\n line ends
    const bytes = [0xef, 0xbb, 0xbf, 0x7b, 0x7d, 0x0d, 0x0a, 0x7b, 0x7d, 0x0d, 0x0a, 0x22];
    bytes.push(...new TextEncoder().encode("中文"), 0xc3, 0x28, 0x22);
    await withFile(new Uint8Array(bytes), async (path) => {
      await expect(readJsonl(path)).rejects.toThrow(`${path}:3:4: not valid UTF-8 (byte 0xc3 at line 3, column 4`);
    });
  });
});

describe("validateRecords", () => {
  test("missing field, wrong type, non-object", () => {
    const entries = parseJsonl('{"instruction": "a", "response": "b"}\n\n{"instruction": "a"}\n', "f.jsonl");
    expect(validateRecords(entries.slice(0, 1), "f.jsonl", ["instruction", "response"])).toEqual([
      { instruction: "a", response: "b" },
    ]);
    expect(() => validateRecords(entries, "f.jsonl", ["instruction", "response"])).toThrow(
      'f.jsonl:3: missing field "response" (fields present: instruction)',
    );
    expect(() => validateRecords(parseJsonl('{"instruction": 3}', "g"), "g", ["instruction"])).toThrow(
      'g:1: field "instruction" must be a string, got number 3',
    );
    expect(() => validateRecords(parseJsonl("[1]\n", "h"), "h", [])).toThrow(
      "h:1: expected a JSON object, got an array",
    );
  });
});

describe("readSftRecords", () => {
  test("reads the notebook's records", async () => {
    await withFile(toJsonl([REC, { ...REC, metric: "json", extra: 1 }]), async (path) => {
      const recs = await readSftRecords(path);
      expect(recs).toEqual([REC, { ...REC, metric: "json" }]);
    });
  });

  test("requires every field by default, fewer per purpose, and a known metric", async () => {
    await withFile(toJsonl([{ instruction: "问", response: "答" }]), async (path) => {
      await expect(readSftRecords(path)).rejects.toThrow(`${path}:1: missing field "category"`);
      expect(await readSftRecords(path, { purpose: "train" })).toEqual([
        { instruction: "问", response: "答", category: "general", metric: "text", expected: "答" },
      ]);
      await expect(readSftRecords(path, { purpose: "eval" })).rejects.toThrow('missing field "category"');
    });
    await withFile(toJsonl([{ instruction: "问", category: "c", metric: "numeric", expected: "3" }]), async (path) => {
      expect(await readSftRecords(path, { purpose: "eval" })).toEqual([
        { instruction: "问", response: "3", category: "c", metric: "numeric", expected: "3" },
      ]);
    });
    await withFile(toJsonl([REC, { ...REC, metric: "bleu" }]), async (path) => {
      await expect(readSftRecords(path)).rejects.toThrow(
        `${path}:2: field "metric" must be one of text, json, numeric, got "bleu"`,
      );
    });
    await withFile(toJsonl([{ instruction: "问", response: "答", expected: 3 }]), async (path) => {
      await expect(readSftRecords(path, { purpose: "train" })).rejects.toThrow('field "expected" must be a string');
    });
  });
});

describe("pythonJsonDumps", () => {
  test("equals json.dumps(v, ensure_ascii=False)", () => {
    const v = { a: 'q"b\\c\nd\te\x01\x1f\x7f 中文 \u2028 😀', n: [1, 2.5, true, null, {}], e: [], k: { x: -3 } };
    // printed by python3 -c 'import json; print(json.dumps(v, ensure_ascii=False))' (the 0x7f, U+2028 and
    // the emoji are raw characters there, written as escapes here)
    expect(pythonJsonDumps(v)).toBe(
      '{"a": "q\\"b\\\\c\\nd\\te\\u0001\\u001f\x7f 中文 \u2028 😀", "n": [1, 2.5, true, null, {}], "e": [], "k": {"x": -3}}',
    );
    expect(toJsonl([{ a: 1 }, "s"])).toBe('{"a": 1}\n"s"\n');
  });

  test("round-trips through parseJsonl", () => {
    const recs = [REC, { ...REC, instruction: '多行\n文本 "引号" \\ 反斜杠' }];
    expect(parseJsonl(toJsonl(recs), "mem").map((e) => e.value)).toEqual(recs);
  });
});
