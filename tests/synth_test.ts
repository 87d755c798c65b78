// The synthetic data against the notebook's own generator. The sha256 values were printed by
// `python3 tests/gen_notebook_data.py data OUTDIR`, which execs the notebook's `_generate_records` and
// `_write_jsonl` cut out of ../shared/seed/ch8_sft_notebook.txt (CPython 3.11). Byte-exact comparisons:
// the data is text, so there is no tolerance.
import { describe, expect, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  buildPlainInstruction,
  buildPlainResponse,
  datasetFileNames,
  generateClassificationRecords,
  generateExtractionRecords,
  ISSUE_LABELS,
  NAMES,
  TEMPLATES,
  toMessages,
  writeDataset,
} from "../src/data/synth.ts";
import { readSftRecords, toJsonl } from "../src/data/jsonl.ts";

/** The notebook's files (classification) and the Python mirror of our extraction generator. */
const SHA256: Record<string, string> = {
  "gpt2_sft_train.jsonl": "6983ceb97b8298129cdf66bc1dbc23ec904e5e3b08eb485eb5a66e6bbd825cfa",
  "gpt2_sft_val.jsonl": "2bd5429731c9bb0bbd5088b074bfbf8d0208660d2943a267703b50072bd66c5f",
  "gpt2_sft_test.jsonl": "a8f8ab18992e1ff5c9a46ab76a5011a79739c9b023ccbedf903ab7c0bc1d2ff5",
  "custom_sft_train.jsonl": "b05f96ea5d69c9fd769bb9dcda53e24e96cd5735d2229368e87c2449989599ae",
  "custom_sft_val.jsonl": "fb85c2ed57e5784e1d5a9ecda07f5a5927988aa7b849b6da8e59ae5af5410b23",
  "custom_sft_test.jsonl": "71574c59461dd28fd099932566eb63c6c9d6e2514c630f651334e2a458405493",
  // custom_sft_test.jsonl in the plain form (generateExtractionRecords(1000, 44, { plain: true }))
  "custom_sft_plain_test.jsonl": "b137d7d3be622b90177bbec8d013ab5e8f15d5df2e80d04b5c55c529a2c17b9c",
};

async function sha256(data: string | Uint8Array): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

describe("classification data", () => {
  test("the notebook's constants", () => {
    expect(ISSUE_LABELS).toEqual(["延迟发货", "退款申请", "地址修改", "物流异常", "售后咨询", "发票问题"]);
    expect(NAMES).toHaveLength(12);
    expect(NAMES[2]).toEqual(["张强", "zhang.qiang"]);
    expect(TEMPLATES).toHaveLength(5);
  });

  test("first records, field order and JSONL line", () => {
    const recs = generateClassificationRecords(2, 42);
    expect(Object.keys(recs[0]!)).toEqual(["instruction", "response", "category", "metric", "expected"]);
    expect(recs[0]).toEqual({
      instruction:
        "请判断用户诉求类别，只输出类别（延迟发货/退款申请/地址修改/物流异常/售后咨询/发票问题）。文本：订单OD20240124-5506相关用户郭婷邮箱guo.ting@example.com，问题：退款申请。",
      response: "退款申请",
      category: "诉求分类",
      metric: "text",
      expected: "退款申请",
    });
    expect(toJsonl(recs.slice(0, 1))).toBe(
      '{"instruction": "请判断用户诉求类别，只输出类别（延迟发货/退款申请/地址修改/物流异常/售后咨询/发票问题）。文本：订单OD20240124-5506相关用户郭婷邮箱guo.ting@example.com，问题：退款申请。", "response": "退款申请", "category": "诉求分类", "metric": "text", "expected": "退款申请"}\n',
    );
  });

  for (const [split, n, seed] of [["train", 8000, 42], ["val", 1000, 43], ["test", 1000, 44]] as const) {
    test(`gpt2_sft_${split}.jsonl is the notebook's, byte for byte (${n} records, seed ${seed})`, async () => {
      expect(await sha256(toJsonl(generateClassificationRecords(n, seed)))).toBe(SHA256[`gpt2_sft_${split}.jsonl`]!);
    });
  }
});

describe("JSON extraction data", () => {
  test("same texts as classification, compact JSON answer", () => {
    const cls = generateClassificationRecords(5, 42);
    const ext = generateExtractionRecords(5, 42);
    for (let i = 0; i < 5; i++) {
      expect(ext[i]!.instruction.split("文本：")[1]).toBe(cls[i]!.instruction.split("文本：")[1]!);
    }
    expect(ext[0]).toEqual({
      instruction:
        "请从文本中抽取姓名、邮箱、订单号，只输出JSON（字段：name/email/order_id）。文本：订单OD20240124-5506相关用户郭婷邮箱guo.ting@example.com，问题：退款申请。",
      response: '{"name":"郭婷","email":"guo.ting@example.com","order_id":"OD20240124-5506"}',
      category: "信息抽取",
      metric: "json",
      expected: '{"name":"郭婷","email":"guo.ting@example.com","order_id":"OD20240124-5506"}',
    });
  });

  for (const [split, n, seed] of [["train", 8000, 42], ["val", 1000, 43], ["test", 1000, 44]] as const) {
    test(`custom_sft_${split}.jsonl matches the Python mirror`, async () => {
      expect(await sha256(toJsonl(generateExtractionRecords(n, seed)))).toBe(SHA256[`custom_sft_${split}.jsonl`]!);
    });
  }

  test("plain variant: the notebook's build_plain_instruction/response", async () => {
    const rec = generateExtractionRecords(1, 42)[0]!;
    expect(buildPlainInstruction(rec)).toBe(
      "从文本中抽取姓名、邮箱、订单号，按“姓名：…；邮箱：…；订单号：…”格式回答。文本：订单OD20240124-5506相关用户郭婷邮箱guo.ting@example.com，问题：退款申请。",
    );
    expect(buildPlainResponse(rec)).toBe("姓名：郭婷；邮箱：guo.ting@example.com；订单号：OD20240124-5506");
    // not JSON → unchanged; missing keys → "", as obj.get(key, '')
    expect(buildPlainResponse({ response: "退款申请" })).toBe("退款申请");
    expect(buildPlainResponse({ response: '{"name":"张强"}' })).toBe("姓名：张强；邮箱：；订单号：");
    expect(buildPlainInstruction({ instruction: "没有文本标记" })).toBe(
      "从文本中抽取姓名、邮箱、订单号，按“姓名：…；邮箱：…；订单号：…”格式回答。文本：没有文本标记",
    );
    const plain = generateExtractionRecords(1000, 44, { plain: true });
    expect(await sha256(toJsonl(plain))).toBe(SHA256["custom_sft_plain_test.jsonl"]!);
    // the plain transformation is idempotent, so toMessages(plainRecord, { plain: true }) is harmless
    expect(toMessages(plain[0]!, { plain: true })).toEqual(toMessages(plain[0]!));
  });

  test("toMessages mirrors to_messages", () => {
    const rec = generateExtractionRecords(1, 42)[0]!;
    expect(toMessages(rec)).toEqual([
      { role: "user", content: rec.instruction },
      { role: "assistant", content: rec.response },
    ]);
    expect(toMessages(rec, { plain: true })).toEqual([
      { role: "user", content: buildPlainInstruction(rec) },
      { role: "assistant", content: buildPlainResponse(rec) },
    ]);
  });
});

describe("writeDataset", () => {
  test("writes the three files atomically with the notebook's names and bytes", async () => {
    const dir = await mkdtemp(join(tmpdir(), "synth_test_"));
    try {
      const out = await writeDataset({ task: "classification", outDir: join(dir, "data"), counts: { train: 1000 } });
      expect(out.counts).toEqual({ train: 1000, val: 1000, test: 1000 });
      expect(out.files.test).toBe(join(dir, "data", "gpt2_sft_test.jsonl"));
      expect(await sha256(await readFile(out.files.val))).toBe(SHA256["gpt2_sft_val.jsonl"]!);
      expect(await sha256(await readFile(out.files.test))).toBe(SHA256["gpt2_sft_test.jsonl"]!);
      // the first 1000 train records are a prefix of the notebook's 8000
      expect(await readFile(out.files.train, "utf-8")).toBe(
        toJsonl(generateClassificationRecords(8000, 42).slice(0, 1000)),
      );
      const recs = await readSftRecords(out.files.test);
      expect(recs).toHaveLength(1000);
      expect(recs[0]!.metric).toBe("text");

      const ext = await writeDataset({
        task: "json_extraction",
        outDir: join(dir, "data"),
        counts: { train: 10, val: 10 },
      });
      expect(await sha256(await readFile(ext.files.test))).toBe(SHA256["custom_sft_test.jsonl"]!);
      const plain = await writeDataset({
        task: "json_extraction",
        outDir: join(dir, "data"),
        plain: true,
        counts: { train: 1, val: 1 },
      });
      expect(await sha256(await readFile(plain.files.test))).toBe(SHA256["custom_sft_plain_test.jsonl"]!);
      expect((await readdir(join(dir, "data"))).sort()).toEqual([
        ...Object.values(datasetFileNames("json_extraction")),
        ...Object.values(datasetFileNames("classification")),
      ].sort()); // no temporary files left behind
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("rejects an unknown task and a bad count", async () => {
    const opts = { task: "qa" as "classification", outDir: join(tmpdir(), "never_written") };
    await expect(writeDataset(opts)).rejects.toThrow('unknown task "qa"');
    const dir = await mkdtemp(join(tmpdir(), "synth_test_"));
    try {
      await expect(writeDataset({ task: "classification", outDir: dir, counts: { train: -1 } })).rejects.toThrow(
        "train count must be a whole number",
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
