/**
 * Phase 3 of the notebook, "Part 3：SFT 训练数据": generate (classification, as the notebook's
 * `REGEN_SFT_DATA = True`) or load the SFT data, and print the task, the split sizes, the categories and
 * the first training conversation as the notebook does (Python `repr` of lists and dicts).
 * Run: `deno run -A phases/03_data.ts [--task json_extraction] [--data-dir DIR]`.
 * @module
 */

import { existsSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { choiceFlag, parseFlags, runMain } from "../src/cli/args.ts";
import { splitCountFlags } from "../src/cli/data.ts";
import type { SftRecord } from "../src/data/jsonl.ts";
import { datasetFileNames, type SftTask, toMessages, writeDataset } from "../src/data/synth.ts";
import { loadTaskRecords, TASKS } from "../src/train/run.ts";

const HELP = `Usage: deno run -A phases/03_data.ts [options]

The notebook's Part 3: the SFT data. For classification the files are regenerated each run, as the
notebook does (REGEN_SFT_DATA = True); json_extraction files are loaded, and generated only when missing.

  --task NAME        classification | json_extraction (default classification)
  --plain            json_extraction: the "姓名：…；邮箱：…；订单号：…" form (USE_PLAIN_EXTRACT)
  --data-dir DIR     where the JSONL files are (default data); --out DIR is the same
  --train N          records to generate for train (default 8000), --val N (1000), --test N (1000)
  --no-regen         classification: load existing files instead of regenerating them
  --model, --backend accepted for uniformity with the other phases, ignored
  -h, --help         this text
`;

/** Python's `repr()` of a str: single quotes unless the text has ' and no ", escapes as CPython writes them. */
export function pyReprString(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === quote || ch === "\\") out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (cp < 0x20 || cp === 0x7f) out += "\\x" + cp.toString(16).padStart(2, "0");
    else if (cp < 0x7f) out += ch;
    else if (isPrintable(ch)) out += ch;
    else if (cp <= 0xff) out += "\\x" + cp.toString(16).padStart(2, "0");
    else if (cp <= 0xffff) out += "\\u" + cp.toString(16).padStart(4, "0");
    else out += "\\U" + cp.toString(16).padStart(8, "0");
  }
  return out + quote;
}

/** Python's `str.isprintable()` for one non-ASCII character: not in Unicode categories C* or Z*. */
function isPrintable(ch: string): boolean {
  return !/[\p{C}\p{Z}]/u.test(ch);
}

/**
 * Python's `repr()` of JSON-like values as the notebook prints them: strings (see {@link pyReprString}),
 * `True`/`False`/`None`, numbers, lists `[a, b]` and dicts `{'k': v}` in insertion order.
 */
export function pyRepr(value: unknown): string {
  if (value === null || value === undefined) return "None";
  if (typeof value === "string") return pyReprString(value);
  if (typeof value === "boolean") return value ? "True" : "False";
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value);
    if (Number.isNaN(value)) return "nan";
    if (!Number.isFinite(value)) return value > 0 ? "inf" : "-inf";
    return String(value);
  }
  if (Array.isArray(value)) return "[" + value.map(pyRepr).join(", ") + "]";
  if (typeof value === "object") {
    return "{" + Object.entries(value).map(([k, v]) => `${pyReprString(k)}: ${pyRepr(v)}`).join(", ") + "}";
  }
  return String(value);
}

/** The notebook's four summary lines for loaded records. */
export function dataSummaryLines(
  task: SftTask,
  splits: { train: readonly SftRecord[]; val: readonly SftRecord[]; test: readonly SftRecord[] },
  opts: { plain?: boolean } = {},
): string[] {
  // sorted(set(...)): Python sorts str by code point; JS sort compares UTF-16 units (same inside the BMP)
  const categories = [...new Set(splits.train.map((r) => r.category))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const first = splits.train[0];
  return [
    `SFT task: ${task}`,
    `Train: ${splits.train.length} | Val: ${splits.val.length} | Test: ${splits.test.length}`,
    `Categories: ${pyRepr(categories)}`,
    `Example: ${first ? pyRepr(toMessages(first, { plain: opts.plain })) : "(no training records)"}`,
  ];
}

/** Run the phase; `argv` as `process.argv.slice(2)`. Returns the exit code. */
export async function main(argv: string[], print: (line: string) => void = console.log): Promise<number> {
  const { values: v } = parseFlags({
    args: argv,
    options: {
      task: { type: "string" },
      plain: { type: "boolean", default: false },
      "data-dir": { type: "string" },
      out: { type: "string" },
      train: { type: "string" },
      val: { type: "string" },
      test: { type: "string" },
      "no-regen": { type: "boolean", default: false },
      model: { type: "string" },
      backend: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    print(HELP);
    return 0;
  }
  const task = choiceFlag("task", v.task, TASKS, "classification");
  const dataDir = v["data-dir"] ?? v.out ?? "data";
  const counts = splitCountFlags(v);
  // the notebook's USE_PLAIN_EXTRACT is forced off for classification
  const plain = task === "json_extraction" && v.plain;

  print("## Part 3：SFT 训练数据\n");
  print("默认使用“诉求分类”数据集（gpt2_sft_*.jsonl），也可以切换到 JSON 抽取任务（custom_sft_*.jsonl）。");
  print("JSON 抽取时字段：name / email / order_id（只输出 JSON）。\n");

  const names = datasetFileNames(task);
  if (task === "classification" && !v["no-regen"]) {
    await writeDataset({ task, outDir: dataDir, counts });
    print("Regenerated gpt2_sft_*.jsonl with classification labels");
  } else if (!existsSync(join(dataDir, names.train))) {
    // the notebook expects custom_sft_*.jsonl to exist; we generate them (with the counts asked for)
    await writeDataset({ task, outDir: dataDir, plain, counts });
    print(`Generated ${names.train}, ${names.val}, ${names.test} in ${dataDir}`);
  }
  const load = (split: "train" | "val" | "test") => loadTaskRecords(task, dataDir, split, { plain, print });
  const splits = { train: await load("train"), val: await load("val"), test: await load("test") };
  for (const line of dataSummaryLines(task, splits, { plain })) print(line);
  print(`\n(files: ${[names.train, names.val, names.test].map((n) => join(dataDir, n)).join(", ")})`);
  return 0;
}

if (import.meta.main) runMain("phases/03_data", () => main(process.argv.slice(2)));
