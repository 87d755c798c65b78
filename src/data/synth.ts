/**
 * The notebook's synthetic SFT data (Part 3). Customer-service texts are built from 12 names, 5
 * templates, random order ids and 6 issue labels, drawn with {@link PyRandom} in the notebook's order, so
 * `generateClassificationRecords(8000, 42)` written with {@link toJsonl} is byte for byte the notebook's
 * `gpt2_sft_train.jsonl` (and seeds 43/44 with 1000 records its val/test files).
 *
 * The JSON-extraction task (`custom_sft_*.jsonl`, which the notebook loads but does not generate) draws the
 * very same texts and asks for `{"name","email","order_id"}` as compact JSON; the notebook's "plain"
 * variant (`USE_PLAIN_EXTRACT`) rewrites it as `姓名：…；邮箱：…；订单号：…` in {@link toMessages}.
 *
 * @example
 * ```ts
 * const records = generateClassificationRecords(3, 42);
 * records[0]!.response; // "退款申请"
 * await writeDataset({ task: "classification", outDir: "data" });
 * ```
 * @module
 */

import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { atomicWriteFile } from "../io/atomic.ts";
import type { Message } from "./chatml.ts";
import { type SftRecord, toJsonl } from "./jsonl.ts";
import { PyRandom } from "./random.ts";

/** The six complaint categories, in the notebook's order (also the label classifier's candidates). */
export const ISSUE_LABELS: readonly string[] = ["延迟发货", "退款申请", "地址修改", "物流异常", "售后咨询", "发票问题"];

/** Customer names with the user part of their e-mail address, in the notebook's order. */
export const NAMES: readonly (readonly [name: string, emailUser: string])[] = [
  ["陈洁", "chen.jie"],
  ["孙悦", "sun.yue"],
  ["张强", "zhang.qiang"],
  ["周凯", "zhou.kai"],
  ["刘洋", "liu.yang"],
  ["王伟", "wang.wei"],
  ["吴磊", "wu.lei"],
  ["李娜", "li.na"],
  ["赵敏", "zhao.min"],
  ["黄涛", "huang.tao"],
  ["郭婷", "guo.ting"],
  ["马超", "ma.chao"],
];

/** Text templates with `{name}`, `{email}`, `{order_id}` and `{issue}` fields, in the notebook's order. */
export const TEMPLATES: readonly string[] = [
  "客户{name}（{email}）反馈订单{order_id}{issue}。",
  "订单{order_id}相关用户{name}邮箱{email}，问题：{issue}。",
  "请处理：姓名{name}，邮箱{email}，订单号{order_id}，原因：{issue}。",
  "用户{name}邮箱{email}，订单{order_id}需要处理：{issue}。",
  "{name}反馈订单{order_id}{issue}，联系邮箱{email}。",
];

/** The category of the classification records. */
export const CLASSIFICATION_CATEGORY = "诉求分类";
/** The category of the JSON-extraction records. */
export const EXTRACTION_CATEGORY = "信息抽取";

/** The classification instruction before the text: `请判断用户诉求类别，只输出类别（延迟发货/…/发票问题）。` */
export const CLASSIFICATION_PREFIX = "请判断用户诉求类别，只输出类别（" + ISSUE_LABELS.join("/") + "）。";
/** The JSON-extraction instruction before the text. */
export const EXTRACTION_PREFIX = "请从文本中抽取姓名、邮箱、订单号，只输出JSON（字段：name/email/order_id）。";
/** The notebook's plain-extraction instruction (`build_plain_instruction`) before the text. */
export const PLAIN_EXTRACTION_PREFIX = "从文本中抽取姓名、邮箱、订单号，按“姓名：…；邮箱：…；订单号：…”格式回答。";

/** The fields drawn for one synthetic text. */
export interface SynthFields {
  name: string;
  email: string;
  order_id: string;
  issue: string;
  text: string;
}

/** The notebook's `_rand_order_id`: `OD{year}{month:02}{day:02}-{1000..9999}`. */
export function randOrderId(rng: PyRandom): string {
  const year = rng.choice([2024, 2025]);
  const month = rng.randint(1, 12);
  const day = rng.randint(1, 28);
  return `OD${pad(year, 4)}${pad(month, 2)}${pad(day, 2)}-${rng.randint(1000, 9999)}`;
}

/** Draw one text as the notebook's `_generate_records` loop body does (name, order id, issue, template). */
export function drawFields(rng: PyRandom): SynthFields {
  const [name, emailUser] = rng.choice(NAMES);
  const email = `${emailUser}@example.com`;
  const order_id = randOrderId(rng);
  const issue = rng.choice(ISSUE_LABELS);
  const text = formatTemplate(rng.choice(TEMPLATES), { name, email, order_id, issue });
  return { name, email, order_id, issue, text };
}

/** The notebook's `_generate_records(count, seed)`: the complaint-classification records. */
export function generateClassificationRecords(count: number, seed: number): SftRecord[] {
  const rng = new PyRandom(seed);
  const records: SftRecord[] = [];
  for (let i = 0; i < count; i++) {
    const f = drawFields(rng);
    records.push({
      instruction: CLASSIFICATION_PREFIX + `文本：${f.text}`,
      response: f.issue,
      category: CLASSIFICATION_CATEGORY,
      metric: "text",
      expected: f.issue,
    });
  }
  return records;
}

/**
 * JSON-extraction records over the same texts as {@link generateClassificationRecords} (same seed, same
 * texts): the response and expected value are compact JSON `{"name":…,"email":…,"order_id":…}`, as in the
 * notebook's tokenizer sanity samples; metric "json". With `plain`, the records are stored in the notebook's
 * plain form ({@link buildPlainInstruction} / {@link buildPlainResponse}) while `expected` stays JSON, which
 * is what the notebook's `score_prediction` compares plain answers against.
 */
export function generateExtractionRecords(count: number, seed: number, opts: { plain?: boolean } = {}): SftRecord[] {
  const rng = new PyRandom(seed);
  const records: SftRecord[] = [];
  for (let i = 0; i < count; i++) {
    const f = drawFields(rng);
    const json = JSON.stringify({ name: f.name, email: f.email, order_id: f.order_id });
    const rec: SftRecord = {
      instruction: EXTRACTION_PREFIX + `文本：${f.text}`,
      response: json,
      category: EXTRACTION_CATEGORY,
      metric: "json",
      expected: json,
    };
    if (opts.plain) {
      rec.instruction = buildPlainInstruction(rec);
      rec.response = buildPlainResponse(rec);
    }
    records.push(rec);
  }
  return records;
}

/** The notebook's `build_plain_instruction`: the plain-format request over the text after `文本：`. */
export function buildPlainInstruction(record: { instruction: string }): string {
  const at = record.instruction.indexOf("文本：");
  const text = at >= 0 ? record.instruction.slice(at + "文本：".length) : record.instruction;
  return PLAIN_EXTRACTION_PREFIX + `文本：${text}`;
}

/**
 * The notebook's `build_plain_response`: `姓名：X；邮箱：Y；订单号：Z` from a JSON response; a response
 * that is not a JSON object is returned unchanged (so applying it twice is harmless).
 */
export function buildPlainResponse(record: { response: string }): string {
  let obj: unknown;
  try {
    obj = JSON.parse(record.response);
  } catch {
    return record.response;
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) return record.response;
  const o = obj as Record<string, unknown>;
  return `姓名：${pyStr(o.name)}；邮箱：${pyStr(o.email)}；订单号：${pyStr(o.order_id)}`;
}

/**
 * The notebook's `to_messages`: a user turn with the instruction and an assistant turn with the
 * response; with `plain` (the notebook's `USE_PLAIN_EXTRACT`) both in the plain extraction form.
 */
export function toMessages(
  record: { instruction: string; response: string },
  opts: { plain?: boolean } = {},
): Message[] {
  return [
    { role: "user", content: opts.plain ? buildPlainInstruction(record) : record.instruction },
    { role: "assistant", content: opts.plain ? buildPlainResponse(record) : record.response },
  ];
}

/** The two tasks of the notebook. */
export type SftTask = "classification" | "json_extraction";

/** Options of {@link writeDataset}. */
export interface WriteDatasetOptions {
  task: SftTask;
  /** Directory for the three files (created if missing). */
  outDir: string;
  /** json_extraction only: store the plain form (ignored for classification, as the notebook does). */
  plain?: boolean;
  /** Records per split; default the notebook's 8000 / 1000 / 1000. */
  counts?: { train?: number; val?: number; test?: number };
  /** Seeds per split; default the notebook's 42 / 43 / 44. */
  seeds?: { train?: number; val?: number; test?: number };
  /** Write only these splits (default all three). */
  splits?: readonly ("train" | "val" | "test")[];
}

/** The notebook's record counts per split. */
export const SPLIT_COUNTS = { train: 8000, val: 1000, test: 1000 } as const;
/** The notebook's seeds per split. */
export const SPLIT_SEEDS = { train: 42, val: 43, test: 44 } as const;

/**
 * The path of one split of a task in `dataDir`; when the file is missing, that split alone is generated as
 * the notebook does (its seed and count), so an existing file — perhaps the user's own data — is never
 * overwritten. `generated` says whether it was written now.
 */
export async function ensureSplitFile(
  task: SftTask,
  dataDir: string,
  split: "train" | "val" | "test",
  opts: { plain?: boolean } = {},
): Promise<{ path: string; generated: boolean }> {
  const path = join(dataDir, datasetFileNames(task)[split]);
  if (existsSync(path)) return { path, generated: false };
  await writeDataset({ task, outDir: dataDir, plain: opts.plain, splits: [split] });
  return { path, generated: true };
}

/**
 * What to tell a user whose split has none of the labels as answers: {@link ensureSplitFile} may have
 * generated it (the notebook's data, the notebook's labels) beside their own files.
 */
export function generatedSplitHint(what: "validation" | "test"): string {
  return `if the notebook's generator wrote it because it was missing, put your own ${what} records there`;
}

/** The data file names of a task: `gpt2_sft_{split}.jsonl` or `custom_sft_{split}.jsonl`. */
export function datasetFileNames(task: SftTask): { train: string; val: string; test: string } {
  const stem = task === "classification" ? "gpt2_sft" : "custom_sft";
  return { train: `${stem}_train.jsonl`, val: `${stem}_val.jsonl`, test: `${stem}_test.jsonl` };
}

/**
 * Generate and write the three splits, each atomically (src/io/atomic.ts: a temporary file in the same
 * directory, fsynced, then renamed over the target). Returns the paths written and the record counts.
 */
export async function writeDataset(
  opts: WriteDatasetOptions,
): Promise<
  { files: { train: string; val: string; test: string }; counts: { train: number; val: number; test: number } }
> {
  if (opts.task !== "classification" && opts.task !== "json_extraction") {
    throw new Error(`Cannot write dataset: unknown task "${opts.task}" (expected classification or json_extraction)`);
  }
  const counts = { ...SPLIT_COUNTS, ...opts.counts };
  const seeds = { ...SPLIT_SEEDS, ...opts.seeds };
  const names = datasetFileNames(opts.task);
  await mkdir(opts.outDir, { recursive: true });
  const files = { train: "", val: "", test: "" };
  for (const split of opts.splits ?? (["train", "val", "test"] as const)) {
    const n = counts[split];
    if (!Number.isInteger(n) || n < 0) {
      throw new Error(`Cannot write dataset: ${split} count must be a whole number, got ${n}`);
    }
    const records = opts.task === "classification"
      ? generateClassificationRecords(n, seeds[split])
      : generateExtractionRecords(n, seeds[split], { plain: opts.plain });
    const path = join(opts.outDir, names[split]);
    try {
      await atomicWriteFile(path, toJsonl(records));
    } catch (e) {
      throw new Error(`Cannot write dataset file ${path}: ${e instanceof Error ? e.message : String(e)}`);
    }
    files[split] = path;
  }
  return { files, counts };
}

/** Python's `str.format` for plain `{field}` placeholders (the only kind the templates use). */
function formatTemplate(template: string, fields: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (_, key: string) => {
    const v = fields[key];
    if (v === undefined) throw new Error(`Cannot format template: no value for field "${key}"`);
    return v;
  });
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

/** Python's `str()` of a JSON value as an f-string shows it (None, True/False, numbers, strings). */
function pyStr(v: unknown): string {
  if (v === undefined) return "";
  if (v === null) return "None";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (typeof v === "string") return v;
  if (typeof v === "number") return String(v);
  return JSON.stringify(v);
}
