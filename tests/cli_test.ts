// The front doors end to end on the fixture's tiny base model (model-bin: vocab.txt only, SFT tokens added at
// load): `deno task train` then `bun run eval.ts`, and the notebook's phases 5 and 6, which frame the same code.
import { describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { evalMain } from "../src/cli/eval.ts";
import { listFlag } from "../src/cli/args.ts";
import { trainMain } from "../src/cli/train.ts";
import { loadTokenizer } from "../src/tokenizer/load.ts";
import { main as phase5 } from "../phases/05_train.ts";
import { main as phase6 } from "../phases/06_evaluate.ts";

const BASE = new URL("./fixtures/tiny-gpt2-zh/model-bin", import.meta.url).pathname;

describe("train and eval command lines", () => {
  test("train saves a model that eval then scores against the base model", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sft-cli-"));
    try {
      const data = join(dir, "data"), out = join(dir, "model"), run = join(dir, "run");
      const common = ["--model", BASE, "--backend", "cpu", "--data-dir", data];
      const lines: string[] = [];
      const small = ["--limit-train", "8", "--limit-val", "4", "--max-steps", "2", "--max-length", "160"];
      const code = await trainMain(
        [...common, ...small, "--out", out, "--run-dir", run, "--quiet"],
        (l) => lines.push(l),
      );
      expect(code).toBe(0);
      expect(lines).toContain("Processed 8/8 examples");
      expect(lines.some((l) => l.startsWith("Saved SFT model to"))).toBe(true);
      expect(await readdir(out)).toContain("sft_task.json");

      const evalLines: string[] = [];
      const args = ["--sft", out, "--backend", "cpu", "--data-dir", data, "--max-samples", "4", "--no-report"];
      expect(await evalMain([...args, "--json", "--quiet"], (l) => evalLines.push(l))).toBe(0);
      const summary = JSON.parse(evalLines[evalLines.length - 1]!);
      expect(summary.task).toBe("classification");
      expect(summary.sft.overall).toBeGreaterThanOrEqual(0);
      expect(summary.base.overall).toBeGreaterThanOrEqual(0);

      // the phases print the notebook's headings around the same work
      const p5: string[] = [];
      // the run dir holds the first run's checkpoint: a new run there says --overwrite
      const again = [...common, ...small, "--out", out, "--run-dir", run, "--quiet", "--overwrite"];
      expect(await phase5(again, (l) => p5.push(l))).toBe(0);
      expect(p5[0]).toContain("Part 5");
      const p6: string[] = [];
      expect(await phase6([...args], (l) => p6.push(l))).toBe(0);
      expect(p6[0]).toContain("Part 6");
      expect(p6.some((l) => l.includes("总结"))).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("a byte-level BPE GPT-2 (the original GPT-2's tokenizer family)", () => {
  test("trains and saves a directory with the pad and ChatML tokens added, ids as Python's", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sft-bpe-"));
    try {
      const data = join(dir, "data"), out = join(dir, "model"), run = join(dir, "run");
      const bpe = new URL("./fixtures/tiny-gpt2-bpe/model", import.meta.url).pathname;
      const lines: string[] = [];
      const code = await trainMain([
        ...["--model", bpe, "--backend", "cpu", "--data-dir", data, "--limit-train", "8", "--limit-val", "4"],
        ...["--max-steps", "2", "--max-length", "120", "--out", out, "--run-dir", run, "--quiet"],
      ], (l) => lines.push(l));
      expect(code).toBe(0);
      expect(lines).toContain("Added 3 total tokens (special + ASCII)");
      const config = JSON.parse(await readFile(join(out, "config.json"), "utf8"));
      // 600 + <|pad|> <|im_start|> <|im_end|> (tests/fixtures/tiny-gpt2-bpe/tokenization.json: Python's ids)
      expect([config.vocab_size, config.pad_token_id, config.eos_token_id, config.bos_token_id]).toEqual([
        603,
        600,
        602,
        0,
      ]);
      const tc = JSON.parse(await readFile(join(out, "tokenizer_config.json"), "utf8"));
      expect([tc.tokenizer_class, tc.pad_token]).toEqual(["GPT2Tokenizer", "<|pad|>"]);
      const tok = await loadTokenizer(out);
      expect(tok.encode("<|im_start|>user\n你好<|im_end|>").ids).toEqual([601, 368, 309, 199, 411, 602]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("npm scripts (the way in without sh, e.g. on Windows)", () => {
  const root = new URL("..", import.meta.url).pathname;
  const scripts = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).scripts as Record<string, string>;

  test("each starts its program directly (no deno task, no sh) and passes flags after --", () => {
    const names = Object.keys(scripts).filter((n) => n !== "test");
    expect(names.sort()).toEqual(["bench", "chat", "data", "demo", "eval", "parity", "show-masking", "train", "web"]);
    for (const name of names) {
      expect(scripts[name]).toMatch(/^(deno run -A|bun run) [\w/]+\.ts$/);
      const r = spawnSync("npm", ["run", "-s", name, "--", "--help"], { cwd: root, encoding: "utf8", timeout: 60_000 });
      expect({ name, status: r.status }).toEqual({ name, status: 0 });
      expect(r.stdout.toLowerCase()).toContain("usage:");
    }
  }, 300_000);
});

describe("your own classification data (--labels)", () => {
  test("listFlag: commas (also full-width), trimmed; empty items and repeats are errors naming the flag", () => {
    expect(listFlag("labels", undefined)).toBeUndefined();
    expect(listFlag("labels", "好评, 差评，中评")).toEqual(["好评", "差评", "中评"]);
    expect(() => listFlag("labels", "好评,,差评")).toThrow('Invalid --labels: "好评,,差评" has an empty item');
    expect(() => listFlag("labels", "好评,差评,好评")).toThrow('Invalid --labels: "好评" appears twice');
  });

  test(
    "--labels on your own files; eval reads them from sft_task.json; clear errors",
    async () => {
      const dir = await mkdtemp(join(tmpdir(), "sft-labels-"));
      try {
        const data = join(dir, "data"), out = join(dir, "model"), run = join(dir, "run");
        await mkdir(data, { recursive: true });
        const rows = (n: number) =>
          Array.from({ length: n }, (_, i) => {
            const label = i % 2 ? "差评" : "好评";
            const text = i % 2 ? "东西坏了，很失望" : "很好用，物流也快";
            return JSON.stringify({
              instruction: `判断评价是好评还是差评，只输出类别。文本：${text}${i}`,
              response: label,
              category: "评价分类",
              metric: "text",
              expected: label,
            });
          }).join("\n") + "\n";
        for (const [split, n] of [["train", 8], ["val", 4], ["test", 4]] as const) {
          await writeFile(join(data, `gpt2_sft_${split}.jsonl`), rows(n));
        }
        const common = ["--model", BASE, "--backend", "cpu", "--data-dir", data, "--out", out, "--run-dir", run];
        const args = [...common, "--max-steps", "1", "--max-length", "160", "--quiet", "--overwrite"];
        await expect(trainMain(args, () => {})).rejects.toThrow("pass them with --labels 好评,差评");
        await expect(trainMain([...args, "--task", "json_extraction", "--labels", "a,b"], () => {})).rejects.toThrow(
          "Invalid --labels: only the classification task has labels",
        );
        expect(await trainMain([...args, "--labels", "好评,差评"], () => {})).toBe(0);
        expect(JSON.parse(await readFile(join(out, "sft_task.json"), "utf8")).labels).toEqual(["好评", "差评"]);

        const lines: string[] = [];
        const evalArgs = ["--sft", out, "--backend", "cpu", "--data-dir", data, "--no-base", "--no-color"];
        expect(await evalMain([...evalArgs, "--report", join(dir, "report")], (l) => lines.push(l))).toBe(0);
        const report = JSON.parse(await readFile(join(dir, "report.json"), "utf8"));
        expect(report.settings.labels).toEqual(["好评", "差评"]);
        expect(report.confusion.sft.classes).toEqual(["好评", "差评"]);
        expect(report.sft.overall.total).toBe(4);
        await expect(evalMain([...evalArgs, "--no-report", "--task", "json_extraction", "--labels", "a"], () => {}))
          .rejects.toThrow("labels were given, but the json_extraction task has none");

        // files missing beside your own: the notebook's generator fills them in, with its labels — refused, named
        await rm(join(data, "gpt2_sft_val.jsonl"));
        await expect(trainMain([...args, "--labels", "好评,差评"], () => {})).rejects.toThrow(
          `occurs as an answer in ${join(data, "gpt2_sft_val.jsonl")}; if the notebook's generator wrote it`,
        );
        await rm(join(data, "gpt2_sft_test.jsonl"));
        await expect(evalMain([...evalArgs, "--no-report"], () => {})).rejects.toThrow(
          `is the expected answer of a record in ${join(data, "gpt2_sft_test.jsonl")}; if the notebook's generator`,
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
