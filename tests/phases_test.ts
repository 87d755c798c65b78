/**
 * The notebook-phase scripts run as functions (`main(argv, print)`), with their printed lines checked
 * against what the notebook prints; plus the data CLI and the Python `repr` helper. Phase 01 runs the
 * tiny fixture model on the CPU backend (138,432 parameters, 3 × 30 sampled tokens: well under a second).
 * All checks are exact string or count comparisons: no tolerance.
 */
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main as phase01, TEST_PROMPTS } from "../phases/01_base_model.ts";
import { main as phase02 } from "../phases/02_chatml.ts";
import { main as phase03, pyRepr } from "../phases/03_data.ts";
import { main as phase04 } from "../phases/04_loss_masking.ts";
import { main as dataCli } from "../src/cli/data.ts";
import { readSftRecords } from "../src/data/jsonl.ts";

const FIXTURE = join(import.meta.dirname ?? ".", "fixtures", "tiny-gpt2-zh");

/** Run a `main(argv, print)` and return its exit code and printed lines. */
async function run(
  main: (argv: string[], print: (line: string) => void) => Promise<number>,
  argv: string[],
): Promise<{ code: number; lines: string[] }> {
  const out: string[] = [];
  const code = await main(argv, (l) => out.push(l));
  return { code, lines: out.join("\n").split("\n") };
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "phases-test-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe("pyRepr", () => {
  test("strings, lists and dicts as Python prints them", () => {
    expect(pyRepr(["诉求分类"])).toBe("['诉求分类']");
    expect(pyRepr({ role: "user", content: "a\nb" })).toBe("{'role': 'user', 'content': 'a\\nb'}");
    expect(pyRepr("it's")).toBe(`"it's"`);
    expect(pyRepr(`'"`)).toBe(`'\\'"'`);
    expect(pyRepr("back\\slash\t\x01\u3000é")).toBe("'back\\\\slash\\t\\x01\\u3000é'");
    expect(pyRepr([true, null, 3, 1.5])).toBe("[True, None, 3, 1.5]");
  });
});

describe("phase 02: ChatML", () => {
  test("prints the notebook's example exactly", async () => {
    const { code, lines } = await run(phase02, []);
    expect(code).toBe(0);
    expect(lines[0]).toBe("## Part 2：ChatML 格式");
    expect(lines).toContain("ChatML 是一种用于表示对话的标准格式：");
    const at = lines.indexOf("ChatML Format Example:");
    expect(lines.slice(at)).toEqual([
      "ChatML Format Example:",
      "=".repeat(60),
      "<|im_start|>system",
      "You are a helpful AI assistant.<|im_end|>",
      "<|im_start|>user",
      "What is Python?<|im_end|>",
      "<|im_start|>assistant",
      "Python is a high-level programming language known for its simplicity and readability.<|im_end|>",
      "",
    ]);
  });

  test("--help prints the usage", async () => {
    const { lines } = await run(phase02, ["--help"]);
    expect(lines[0]).toMatch(/^Usage: /);
  });
});

describe("phase 03: data", () => {
  test("regenerates the classification files and prints the notebook's summary", async () => {
    await withTempDir(async (dir) => {
      const { code, lines } = await run(phase03, ["--out", dir, "--train", "12", "--val", "3", "--test", "2"]);
      expect(code).toBe(0);
      expect(lines[0]).toBe("## Part 3：SFT 训练数据");
      expect(lines).toContain("Regenerated gpt2_sft_*.jsonl with classification labels");
      expect(lines).toContain("SFT task: classification");
      expect(lines).toContain("Train: 12 | Val: 3 | Test: 2");
      expect(lines).toContain("Categories: ['诉求分类']");
      const first = (await readSftRecords(join(dir, "gpt2_sft_train.jsonl")))[0]!;
      expect(lines).toContain(
        `Example: [{'role': 'user', 'content': '${first.instruction}'}, {'role': 'assistant', 'content': '${first.response}'}]`,
      );
      // the notebook's first record (seed 42)
      expect(first.response).toBe("退款申请");
    });
  });

  test("json_extraction files are generated when missing, with the counts asked for", async () => {
    await withTempDir(async (dir) => {
      const { lines } = await run(phase03, [
        "--task",
        "json_extraction",
        "--data-dir",
        dir,
        "--train",
        "4",
        "--val",
        "2",
        "--test",
        "1",
      ]);
      expect(lines).toContain("SFT task: json_extraction");
      expect(lines).toContain("Train: 4 | Val: 2 | Test: 1");
      expect(lines).toContain("Categories: ['信息抽取']");
      const example = lines.find((l) => l.startsWith("Example: "))!;
      expect(example).toContain(`{'role': 'assistant', 'content': '{"name":`);
    });
  });
});

describe("phase 04: loss masking", () => {
  test("shows the first example of the fixture tokenizer, without colour", async () => {
    await withTempDir(async (dir) => {
      await run(dataCli, ["--out", dir, "--train", "2", "--val", "1", "--test", "1"]);
      const { code, lines } = await run(phase04, [
        "--model",
        join(FIXTURE, "model-bin"),
        "--data-dir",
        dir,
        "--no-color",
      ]);
      expect(code).toBe(0);
      expect(lines[0]).toBe("## Part 4：Loss Masking");
      expect(lines).toContain("Added 63 total tokens (special + ASCII)");
      expect(lines).toContain("Processed 1/1 examples");
      expect(lines).toContain("Loss Masking Visualization:");
      const masked = lines.find((l) => l.startsWith("Masked tokens: "))!;
      const computed = lines.find((l) => l.startsWith("Loss computed on: "))!;
      const [, m, t] = masked.match(/^Masked tokens: (\d+)\/(\d+) \(\d+\.\d%\)$/)!;
      const [, s, t2] = computed.match(/^Loss computed on: (\d+)\/(\d+) \(\d+\.\d%\)$/)!;
      expect(t2).toBe(t);
      expect(Number(m) + Number(s)).toBe(Number(t));
      // the answer 退款申请: four characters of the fixture vocabulary, supervised
      expect(Number(s)).toBe(4);
      expect(lines.join("\n").includes("\x1b")).toBe(false);
    });
  });
});

describe("phase 01: base model", () => {
  test("loads the fixture model on the CPU and continues the three prompts", async () => {
    const { code, lines } = await run(phase01, ["--model", join(FIXTURE, "model-bin"), "--backend", "cpu"]);
    expect(code).toBe(0);
    // n_layer 2, n_embd 64, n_positions 256, vocab 343, tied lm_head: wte + wpe + 2 blocks + ln_f
    const C = 64, V = 343, P = 256;
    const block = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C);
    const params = V * C + P * C + 2 * block + 2 * C;
    expect(lines).toContain(`Model loaded: ${params.toLocaleString("en-US")} parameters`);
    expect(lines).toContain("## Part 1：理解基础模型与对话模型");
    expect(lines).toContain("BASE MODEL BEHAVIOR (before SFT)");
    const text = lines.join("\n");
    for (const p of TEST_PROMPTS) expect(text).toContain(`\nPrompt: ${p}\nOutput: `);
    expect(lines.filter((l) => l.startsWith("Output: "))).toHaveLength(3);
    expect(lines.filter((l) => l === "-".repeat(40))).toHaveLength(3);
    expect(lines.at(-1)).toBe("如你所见，基础模型并不理解指令格式——它只会沿着输入的风格继续生成文本。");
  });
});

describe("data CLI", () => {
  test("writes the three files and prints their counts and sha256", async () => {
    await withTempDir(async (dir) => {
      const { code, lines } = await run(dataCli, ["--out", dir, "--train", "5", "--val", "2", "--test", "3"]);
      expect(code).toBe(0);
      expect(lines[0]).toBe(`Wrote classification data to ${dir}:`);
      for (const [split, n] of [["train", 5], ["val", 2], ["test", 3]] as const) {
        const path = join(dir, `gpt2_sft_${split}.jsonl`);
        const bytes = await readFile(path);
        const sha = createHash("sha256").update(bytes).digest("hex");
        const line = lines.find((l) => l.includes(path))!;
        expect(line).toMatch(new RegExp(`\\s${n} records\\s`));
        expect(line).toContain(`${bytes.length.toLocaleString("en-US")} bytes`);
        expect(line).toContain(`sha256 ${sha}`);
        expect((await readSftRecords(path)).length).toBe(n);
      }
    });
  });

  test("a bad count is an error naming the flag", async () => {
    await expect(dataCli(["--train", "-1"], () => {})).rejects.toThrow("--train");
  });
});
