/**
 * The notebook's held-out evaluation (Part 6): the base model and the SFT model on the first
 * `EVAL_MAX_SAMPLES` test records, per-category and overall accuracy, three samples, and the side-by-side
 * comparison of the first five test items, written as a Markdown and a JSON report. `eval.ts` and the
 * demo call {@link runEvaluation}.
 *
 * How each model answers (the notebook's `run_model`):
 * - classification (`USE_LM_CLASSIFIER`: the task has labels): every label is scored by the mean
 *   log-probability of its tokens after the prompt (src/eval/classify.ts, one shared prompt pass per item);
 *   the base model gets the raw instruction with the base tokenizer, the SFT model the ChatML prompt with
 *   the SFT tokenizer; prompt and labels are tokenized without special tokens.
 * - other tasks: generation with the notebook's settings (greedy, repetition penalty 1.1, no-repeat
 *   3-gram, 120 new tokens). The base model runs `generate_text` (the raw instruction framed as
 *   `[CLS] … [SEP]`, decoded without special tokens); the SFT model runs `generate_response` (the ChatML
 *   prompt framed as `[CLS] … [SEP]`, stopping at `<|im_end|>`, decoded with special tokens, `[CLS]`/`[SEP]`
 *   removed and the text cut at `<|im_end|>`).
 * The answer is scored by the notebook's `score_prediction` (src/eval/metrics.ts).
 *
 * One difference from the notebook: with `use_plain_extract` the user turn is the plain-extraction
 * instruction the model was trained on (`buildPlainInstruction`, as `to_messages`); the notebook passes the raw JSON instruction.
 * For data files written in the plain form (`writeDataset({plain: true})`) the two are the same.
 *
 * @example
 * ```ts
 * const be = await createBackend("auto");
 * const { report } = await runEvaluation({ sftDir: "models/ch8_sft_gpt2", backend: be, reportBase: "runs/eval/report" });
 * console.log(renderConsole(report));
 * ```
 * @module
 */

import { existsSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { stderr } from "node:process";
import type { Backend } from "../backend/backend.ts";
import { runtimeName } from "../cli/args.ts";
import { IM_END, promptFor } from "../data/chatml.ts";
import { readSftRecords, type SftRecord } from "../data/jsonl.ts";
import {
  buildPlainInstruction,
  ensureSplitFile,
  generatedSplitHint,
  ISSUE_LABELS,
  type SftTask,
  SPLIT_COUNTS,
  SPLIT_SEEDS,
} from "../data/synth.ts";
import { DEFAULT_MODEL, type ResolveModelOptions } from "../io/hub.ts";
import { ProgressBar } from "../io/progress.ts";
import { generate, generateBatch } from "../model/generate.ts";
import type { GPT2 } from "../model/gpt2.ts";
import { loadModelAndTokenizer } from "../model/load.ts";
import type { BertTokenizer } from "../tokenizer/tokenizer.ts";
import { classify, classifyBatch } from "./classify.ts";
import { pyStrip, scorePrediction, summarize, type Summary } from "./metrics.ts";
import { confusionMatrix } from "./confusion.ts";
import { fieldScores } from "./fields.ts";
import { type ComparisonRow, type EvalReport, type EvalSample, type EvalSettings, writeReport } from "./report.ts";

/** The tasks the evaluation knows. */
export const EVAL_TASKS: readonly SftTask[] = ["classification", "json_extraction"];

/** The notebook's EVAL_* settings and `generate_text`/`generate_response` constants. */
export const NOTEBOOK_EVAL = {
  /** EVAL_MAX_SAMPLES. */
  maxSamples: 200,
  /** EVAL_PROGRESS_EVERY. */
  progressEvery: 50,
  /** EVAL_MAX_NEW_TOKENS. */
  maxNewTokens: 120,
  /** EVAL_DO_SAMPLE. */
  doSample: false,
  /** EVAL_TEMPERATURE (unused while greedy). */
  temperature: 0,
  /** EVAL_TOP_P. */
  topP: 1,
  /** repetition_penalty of generate_text / generate_response. */
  repetitionPenalty: 1.1,
  /** no_repeat_ngram_size of generate_text / generate_response. */
  noRepeatNgramSize: 3,
  /** Items of the side-by-side comparison (`TEST_RECORDS[:5]`). */
  comparisonItems: 5,
  /** Samples printed (`len(samples) < 3`). */
  samples: 3,
} as const;

/** Decoding settings of the generation path. */
export interface DecodingOptions {
  /** EVAL_MAX_NEW_TOKENS (default 120). */
  maxNewTokens?: number;
  /** EVAL_DO_SAMPLE (default false: greedy). */
  doSample?: boolean;
  /** Sampling temperature (default 0.7 when sampling, as generate_response; ignored when greedy). */
  temperature?: number;
  /** Nucleus sampling (default 0.9 when sampling, as generate_response; 1 when greedy). */
  topP?: number;
  /** Sampling seed (item i uses seed + i; default 0). */
  seed?: number;
  /** Default 1.1. */
  repetitionPenalty?: number;
  /** Default 3. */
  noRepeatNgramSize?: number;
  /**
   * Prompts generated at once (default 16): rows decoded in lockstep by `generateBatch`, each computing
   * what it computes alone; 1 generates one prompt at a time, as the notebook does.
   */
  batchSize?: number;
}

/** The `sft_task.json` the training run writes beside the SFT model (the notebook's `meta`). */
export interface SftTaskMeta {
  task?: string;
  use_plain_extract?: boolean;
  labels?: string[] | null;
  model_name?: string;
  mask?: string;
}

/** How progress is shown: a bar on a TTY, the notebook's `  evaluated 50/200` lines, or nothing. */
export type ProgressMode = "auto" | "bar" | "lines" | "none";

/** Options of {@link runEvaluation}. */
export interface EvalRunOptions {
  /** The SFT model directory (with sft_task.json as the training run writes it). */
  sftDir: string;
  /** The base model: hub id, id@revision or directory (default sft_task.json's model_name, else the notebook's). */
  model?: string;
  /** The task (default sft_task.json's task, else classification). */
  task?: string;
  /** Classification labels (default sft_task.json's labels, else the notebook's six). */
  labels?: readonly string[];
  /** json_extraction: score the plain `姓名：…；邮箱：…；订单号：…` form (default sft_task.json's use_plain_extract). */
  plain?: boolean;
  /** Directory of the task's JSONL files (default "data"); a missing test file is generated as the notebook does. */
  dataDir?: string;
  /** A test file to use instead of `<dataDir>/<task's test file>` (it must exist). */
  testFile?: string;
  /** EVAL_MAX_SAMPLES: the first N test records (default 200); null or 0: all of them. */
  maxSamples?: number | null;
  /** EVAL_RUN_BASE (default true). */
  runBase?: boolean;
  /** The compute backend; the models are loaded onto it. */
  backend: Backend;
  decoding?: DecodingOptions;
  /** Write `<reportBase>.md`, `<reportBase>.json` and, classifying, `<reportBase>.confusion.svg` (default: none). */
  reportBase?: string;
  /** Hub options for the base model (offline, cache, …). */
  hub?: ResolveModelOptions;
  /** Progress display (default "auto": a bar when stderr is a TTY, else the notebook's lines). */
  progress?: ProgressMode;
  /** EVAL_PROGRESS_EVERY for the progress lines (default 50). */
  progressEvery?: number;
  /** Lines of the run (loading, progress lines); default console.log. */
  print?: (line: string) => void;
  /** Warnings (model config oddities); default stderr. */
  warn?: (message: string) => void;
  /** The result of {@link planEvaluation} for these same options, when the caller checked them already. */
  plan?: EvalPlan;
}

/** What {@link runEvaluation} returns. */
export interface EvalRunResult {
  report: EvalReport;
  /** The files written, when `reportBase` was given. */
  paths?: { md: string; json: string; svg?: string };
}

/** Everything checked and read before any model is loaded. */
export interface EvalPlan {
  sftDir: string;
  meta: SftTaskMeta | null;
  task: SftTask;
  model: string;
  labels: string[] | null;
  plain: boolean;
  testFile: string;
  /** The whole test set (the comparison uses its first five items). */
  records: SftRecord[];
  /** The records scored: the first `maxSamples`. */
  evaluated: SftRecord[];
  maxSamples: number | null;
  runBase: boolean;
  decoding: Required<DecodingOptions>;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Read and check `sft_task.json` of an SFT dir; null when the file is absent. */
export async function readSftTaskMeta(sftDir: string): Promise<SftTaskMeta | null> {
  const path = join(sftDir, "sft_task.json");
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return null;
    throw new Error(`Cannot read ${path}: ${message(e)}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`Cannot read ${path}: invalid JSON (${message(e)})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new Error(`Cannot read ${path}: not a JSON object`);
  }
  const m = v as Record<string, unknown>;
  const check = (field: string, ok: boolean, what: string) => {
    if (field in m && m[field] !== null && !ok) {
      throw new Error(`Cannot read ${path}: field "${field}" must be ${what}, got ${JSON.stringify(m[field])}`);
    }
  };
  check("task", typeof m.task === "string", "a string");
  check("model_name", typeof m.model_name === "string", "a string");
  check("use_plain_extract", typeof m.use_plain_extract === "boolean", "true or false");
  check(
    "labels",
    Array.isArray(m.labels) && m.labels.length > 0 && m.labels.every((l) => typeof l === "string" && l !== ""),
    "a non-empty list of non-empty strings",
  );
  return m as SftTaskMeta;
}

function parseTask(value: string, from: string): SftTask {
  if (!(EVAL_TASKS as readonly string[]).includes(value)) {
    throw new Error(`Unknown task: "${value}"${from} (expected one of ${EVAL_TASKS.join(", ")})`);
  }
  return value as SftTask;
}

/** The notebook's test split, written beside the other files when missing (seed 44, 1000 records). */
async function ensureTestFile(task: SftTask, dataDir: string, plain: boolean, print: (l: string) => void) {
  const { path, generated } = await ensureSplitFile(task, dataDir, "test", { plain });
  if (generated) print(`Generated ${path} (${SPLIT_COUNTS.test} test records, seed ${SPLIT_SEEDS.test})`);
  return path;
}

/**
 * Check the options and read the test data, before any model is loaded: the SFT dir must exist and hold a
 * config.json, sft_task.json (when present) must be well formed, the task known, the test file readable
 * with at least one record, and the numbers sane.
 */
export async function planEvaluation(
  opts: Omit<EvalRunOptions, "backend" | "plan">,
  print: (line: string) => void = () => {},
): Promise<EvalPlan> {
  const sftDir = opts.sftDir;
  let isDir = false;
  try {
    isDir = (await stat(sftDir)).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) {
    throw new Error(
      `Cannot evaluate: the SFT model directory ${sftDir} does not exist; train one first with ` +
        "`deno task train` (it saves to models/ch8_sft_gpt2) or name another with --sft DIR",
    );
  }
  if (!existsSync(join(sftDir, "config.json"))) {
    throw new Error(`Cannot evaluate: ${sftDir} is not a model directory (no config.json)`);
  }
  const meta = await readSftTaskMeta(sftDir);
  const task = opts.task !== undefined
    ? parseTask(opts.task, "")
    : parseTask(meta?.task ?? "classification", meta?.task ? ` in ${join(sftDir, "sft_task.json")}` : "");
  let labels: string[] | null = null;
  if (opts.labels && task !== "classification") {
    throw new Error(`Cannot evaluate: labels were given, but the ${task} task has none (only classification does)`);
  }
  if (task === "classification") {
    labels = [...(opts.labels ?? meta?.labels ?? ISSUE_LABELS)];
    if (labels.length === 0) throw new Error("Cannot evaluate: the classification task needs at least one label");
  }
  const plain = task === "json_extraction" && (opts.plain ?? meta?.use_plain_extract ?? false);
  const model = opts.model ?? meta?.model_name ?? DEFAULT_MODEL;

  const maxSamples = opts.maxSamples === undefined ? NOTEBOOK_EVAL.maxSamples : opts.maxSamples;
  if (maxSamples !== null && (!Number.isInteger(maxSamples) || maxSamples < 0)) {
    throw new Error(`Invalid max samples: ${maxSamples} (expected a whole number ≥ 0; 0 means all)`);
  }
  const d = opts.decoding ?? {};
  const doSample = d.doSample ?? NOTEBOOK_EVAL.doSample;
  const decoding: Required<DecodingOptions> = {
    maxNewTokens: d.maxNewTokens ?? NOTEBOOK_EVAL.maxNewTokens,
    doSample,
    temperature: d.temperature ?? (doSample ? 0.7 : NOTEBOOK_EVAL.temperature),
    topP: d.topP ?? (doSample ? 0.9 : NOTEBOOK_EVAL.topP),
    seed: d.seed ?? 0,
    repetitionPenalty: d.repetitionPenalty ?? NOTEBOOK_EVAL.repetitionPenalty,
    noRepeatNgramSize: d.noRepeatNgramSize ?? NOTEBOOK_EVAL.noRepeatNgramSize,
    batchSize: d.batchSize ?? GENERATION_BATCH,
  };
  if (!Number.isInteger(decoding.batchSize) || decoding.batchSize < 1) {
    throw new Error(`Invalid generation batch size: ${decoding.batchSize} (expected a whole number ≥ 1)`);
  }
  if (!Number.isInteger(decoding.maxNewTokens) || decoding.maxNewTokens < 1) {
    throw new Error(`Invalid max new tokens: ${decoding.maxNewTokens} (expected a whole number ≥ 1)`);
  }
  if (doSample && !(decoding.temperature > 0)) {
    throw new Error(`Invalid temperature: ${decoding.temperature} (sampling needs a temperature > 0)`);
  }
  if (!(decoding.topP > 0 && decoding.topP <= 1)) {
    throw new Error(`Invalid top-p: ${decoding.topP} (expected 0 < p ≤ 1)`);
  }

  let testFile: string;
  if (opts.testFile !== undefined) {
    if (!existsSync(opts.testFile)) throw new Error(`Cannot evaluate: test file ${opts.testFile} does not exist`);
    testFile = opts.testFile;
  } else {
    testFile = await ensureTestFile(task, opts.dataDir ?? "data", plain, print);
  }
  const records = await readSftRecords(testFile, { purpose: "eval" });
  if (labels && !records.some((r) => labels!.includes(r.expected))) {
    throw new Error(
      `Cannot evaluate: none of the labels (${labels.join(", ")}) is the expected answer of a record in ${testFile}` +
        `; ${generatedSplitHint("test")} (or pass --labels)`,
    );
  }
  const evaluated = maxSamples === null || maxSamples === 0 ? records : records.slice(0, maxSamples);
  return {
    sftDir,
    meta,
    task,
    model,
    labels,
    plain,
    testFile,
    records,
    evaluated,
    maxSamples: maxSamples === 0 ? null : maxSamples,
    runBase: opts.runBase ?? true,
    decoding,
  };
}

/**
 * A model with its tokenizer, answering one instruction. `prefetch`, where present, answers a whole chunk
 * of upcoming instructions at once (batched on the device); the calls that follow return those answers.
 */
type Predictor = ((instruction: string, index: number) => Promise<string>) & {
  /** Answer `instructions`, the test items `first`, `first + 1`, …, ahead of their calls. */
  prefetch?: (instructions: readonly string[], first: number) => Promise<void>;
  /** How many items one prefetch takes (default {@link PREFETCH}): the progress display moves by this much. */
  prefetchSize?: number;
  /** The label classifier: the labels' scores behind the last answer (mean log-probability per token). */
  lastScores?: () => number[] | undefined;
};

/** How many test items a batched predictor answers at once. */
const PREFETCH = 32;
/** Prompts generated at once by default (see `DecodingOptions.batchSize`). */
const GENERATION_BATCH = 16;

/**
 * The notebook's `_lm_classify`, with every label scored from one shared prompt pass and the test items
 * batched (`classifyBatch`; the same scores as one item at a time).
 */
export function labelClassifier(
  model: GPT2,
  tokenizer: BertTokenizer,
  opts: { labels: readonly string[]; chatml: boolean },
): Predictor {
  const labels = opts.labels.map((label) => ({ label, ids: tokenizer.encode(label, { addSpecialTokens: false }).ids }));
  const promptIds = (instruction: string) =>
    tokenizer.encode(opts.chatml ? promptFor(instruction) : instruction, { addSpecialTokens: false }).ids;
  const ready = new Map<string, { label: string; scores?: number[] }>();
  let last: number[] | undefined;
  const predict: Predictor = async (instruction) => {
    let done = ready.get(instruction);
    if (!done) {
      const ids = promptIds(instruction);
      // `if not prompt_ids: return labels[0]` (no scores then)
      done = ids.length === 0 ? { label: labels[0]!.label } : await classify(model, ids, labels);
    }
    last = done.scores;
    return done.label;
  };
  predict.lastScores = () => last;
  predict.prefetch = async (instructions) => {
    ready.clear();
    const todo = [...new Set(instructions)].map((text) => ({ text, ids: promptIds(text) })).filter((x) => x.ids.length);
    const results = await classifyBatch(model, todo.map((x) => x.ids), labels);
    for (const [i, x] of todo.entries()) ready.set(x.text, results[i]!);
  };
  return predict;
}

/**
 * The notebook's `generate_text` (base model: `chatml` false) or `generate_response` (SFT model: `chatml`
 * true), with the decoding settings given.
 */
export function generator(
  model: GPT2,
  tokenizer: BertTokenizer,
  opts: { chatml: boolean; decoding: Required<DecodingOptions> },
): Predictor {
  const d = opts.decoding;
  let eos: number | undefined;
  if (opts.chatml) {
    // eos_id = convert_tokens_to_ids('<|im_end|>'), falling back to the tokenizer's eos (BERT has none)
    const id = tokenizer.tokenToId(IM_END);
    eos = id !== undefined && id !== tokenizer.unkTokenId ? id : model.config.eosTokenId;
  } else {
    eos = model.config.eosTokenId; // generation_config.eos_token_id
  }
  const { seed: _seed, batchSize: _batchSize, ...decoding } = d; // the seed goes per item, the batch size to prefetch
  const settings = { ...decoding, eosTokenId: eos };
  // tok(prompt): [CLS] … [SEP]
  const promptIds = (instruction: string) => tokenizer.encode(opts.chatml ? promptFor(instruction) : instruction).ids;
  const text = (ids: number[]) =>
    opts.chatml
      ? cleanResponse(tokenizer.decode(ids, { skipSpecialTokens: false }))
      : pyStrip(tokenizer.decode(ids, { skipSpecialTokens: true }));
  // answers generated ahead by `prefetch`, by item index (the seed depends on it)
  const ready = new Map<number, { instruction: string; answer: string }>();
  const predict: Predictor = async (instruction, index) => {
    const done = ready.get(index);
    if (done?.instruction === instruction) return done.answer;
    return text(await generate(model, promptIds(instruction), { ...settings, seed: d.seed + index }));
  };
  if (d.batchSize > 1) {
    predict.prefetchSize = d.batchSize; // one batch at a time, so that the progress moves batch by batch
    predict.prefetch = async (instructions, first) => {
      ready.clear();
      const prompts = instructions.map((x, k) => ({ ids: promptIds(x), seed: d.seed + first + k }));
      const outs = await generateBatch(model, prompts, { ...settings, batchSize: d.batchSize });
      instructions.forEach((instruction, k) => ready.set(first + k, { instruction, answer: text(outs[k]!) }));
    };
  }
  return predict;
}

/** generate_response's clean-up: drop `[CLS]`/`[SEP]`, strip, cut at `<|im_end|>`, strip. */
export function cleanResponse(text: string): string {
  let t = pyStrip(text.replaceAll("[CLS]", "").replaceAll("[SEP]", ""));
  const end = t.indexOf(IM_END);
  if (end >= 0) t = t.slice(0, end);
  return pyStrip(t);
}

/** The user turn for a record: the training form (plain extraction when `plain`). */
function userText(record: SftRecord, plain: boolean): string {
  return plain ? buildPlainInstruction(record) : record.instruction;
}

interface ModelRun {
  summary: Summary;
  preds: string[];
  correct: boolean[];
  /** The label classifier's scores of each evaluated item (empty for generation). */
  scores: (number[] | undefined)[];
  /** Predictions of the comparison items beyond the evaluated ones. */
  extra: Map<number, { pred: string; correct: boolean }>;
}

/** `evaluate_model` for one model, plus the comparison items it did not evaluate. */
async function evaluateModel(
  predict: Predictor,
  plan: EvalPlan,
  args: { name: string; progress: Exclude<ProgressMode, "auto">; every: number; print: (l: string) => void },
): Promise<ModelRun> {
  const items = plan.evaluated, total = items.length;
  const preds: string[] = [], correct: boolean[] = [], scores: (number[] | undefined)[] = [];
  const bar = args.progress === "bar"
    ? new ProgressBar({ total, unit: "items", itemName: "items", label: `eval ${args.name}` })
    : undefined;
  try {
    for (let i = 0; i < total; i++) {
      const r = items[i]!;
      const chunk = predict.prefetchSize ?? PREFETCH;
      if (predict.prefetch && i % chunk === 0) {
        await predict.prefetch(items.slice(i, i + chunk).map((x) => userText(x, plan.plain)), i);
      }
      let pred: string;
      try {
        pred = await predict(userText(r, plan.plain), i);
      } catch (e) {
        throw new Error(
          `Cannot evaluate the ${args.name} model on test item ${i + 1} of ${plan.testFile}: ${message(e)}`,
        );
      }
      preds.push(pred);
      if (predict.lastScores) scores.push(predict.lastScores());
      correct.push(scorePrediction(pred, r, { plain: plan.plain }));
      const idx = i + 1;
      bar?.update(idx);
      if (args.progress === "lines" && args.every > 0 && (idx % args.every === 0 || idx === total)) {
        args.print(`  evaluated ${idx}/${total}`);
      }
    }
  } finally {
    bar?.finish();
  }
  const extra = new Map<number, { pred: string; correct: boolean }>();
  const wanted = Math.min(NOTEBOOK_EVAL.comparisonItems, plan.records.length);
  for (let i = total; i < wanted; i++) {
    const r = plan.records[i]!;
    const pred = await predict(userText(r, plan.plain), i);
    extra.set(i, { pred, correct: scorePrediction(pred, r, { plain: plan.plain }) });
  }
  const summary = summarize(items.map((r, i) => ({ category: r.category, correct: correct[i]! })));
  return { summary, preds, correct, scores, extra };
}

function predictionAt(run: ModelRun, i: number): { pred: string; correct: boolean } {
  if (i < run.preds.length) return { pred: run.preds[i]!, correct: run.correct[i]! };
  return run.extra.get(i)!;
}

/**
 * Run the notebook's evaluation: base model (unless `runBase` is false), then the SFT model, each loaded
 * once and released after its pass; the comparison reuses the predictions of the first five items.
 */
export async function runEvaluation(opts: EvalRunOptions): Promise<EvalRunResult> {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const print = opts.print ?? ((l: string) => console.log(l));
  const warn = opts.warn ?? ((m: string) => void stderr.write(`warning: ${m}\n`));
  const plan = opts.plan ?? await planEvaluation(opts, print);
  let progress = opts.progress ?? "auto";
  if (progress === "auto") progress = stderr.isTTY ? "bar" : "lines";
  const every = opts.progressEvery ?? NOTEBOOK_EVAL.progressEvery;
  const be = opts.backend;

  const mode = plan.labels ? `label classifier over ${plan.labels.length} labels` : "generation";
  print(`Task: ${plan.task} (${mode})`);
  print(`Test file: ${plan.testFile} (${plan.evaluated.length} of ${plan.records.length} records)`);

  const predictorFor = (model: GPT2, tokenizer: BertTokenizer, chatml: boolean): Predictor =>
    plan.labels
      ? labelClassifier(model, tokenizer, { labels: plan.labels, chatml })
      : generator(model, tokenizer, { chatml, decoding: plan.decoding });

  let base: ModelRun | undefined;
  if (plan.runBase) {
    print(`Loading base model ${plan.model}...`);
    // the notebook's `tokenizer`: the base tokenizer, without the SFT tokens
    const pair = await loadModelAndTokenizer(plan.model, be, { prepare: false, hub: opts.hub, warn });
    try {
      print(`Evaluating base model (${plan.evaluated.length} items)`);
      base = await evaluateModel(predictorFor(pair.model, pair.tokenizer, false), plan, {
        name: "base",
        progress,
        every,
        print,
      });
    } finally {
      pair.model.dispose();
    }
  }

  print(`Loading SFT model ${plan.sftDir}...`);
  const sftPair = await loadModelAndTokenizer(plan.sftDir, be, { prepare: false, warn });
  let sft: ModelRun;
  try {
    if (sftPair.tokenizer.tokenToId(IM_END) === undefined) {
      warn(`${plan.sftDir}: the tokenizer has no ${IM_END} token; is this an SFT model directory?`);
    }
    print(`Evaluating SFT model (${plan.evaluated.length} items)`);
    sft = await evaluateModel(predictorFor(sftPair.model, sftPair.tokenizer, true), plan, {
      name: "SFT",
      progress,
      every,
      print,
    });
  } finally {
    sftPair.model.dispose();
  }

  const samples: EvalSample[] = plan.evaluated.slice(0, NOTEBOOK_EVAL.samples).map((r, i) => {
    const sample: EvalSample = {
      instruction: r.instruction,
      expected: r.expected,
      pred: sft.preds[i]!,
      correct: sft.correct[i]!,
    };
    const s = sft.scores[i];
    if (plan.labels && s) sample.labelScores = Object.fromEntries(plan.labels.map((l, k) => [l, s[k]!]));
    return sample;
  });
  const comparison: ComparisonRow[] = plan.records.slice(0, NOTEBOOK_EVAL.comparisonItems).map((r, i) => {
    const s = predictionAt(sft, i);
    const row: ComparisonRow = { instruction: r.instruction, expected: r.expected, sft: s.pred, sftCorrect: s.correct };
    if (base) {
      const b = predictionAt(base, i);
      row.base = b.pred;
      row.baseCorrect = b.correct;
    }
    return row;
  });
  const d = plan.decoding;
  const settings: EvalSettings = {
    maxSamples: plan.maxSamples,
    maxNewTokens: d.maxNewTokens,
    doSample: d.doSample,
    temperature: d.temperature,
    topP: d.topP,
    repetitionPenalty: d.repetitionPenalty,
    noRepeatNgramSize: d.noRepeatNgramSize,
    classifier: plan.labels !== null,
    plain: plan.plain,
    ...(plan.labels ? { labels: plan.labels } : {}),
    backend: be.name,
    runtime: runtimeName(),
    startedAt,
  };
  let confusion: EvalReport["confusion"];
  if (plan.labels) {
    const expected = plan.evaluated.map((r) => r.expected);
    const labels = plan.labels;
    confusion = { sft: confusionMatrix(expected, sft.preds, labels) };
    if (base) confusion.base = confusionMatrix(expected, base.preds, labels);
  }
  let fields: EvalReport["fields"];
  if (plan.evaluated.some((r) => r.metric === "json")) {
    const items = plan.evaluated.map((r, i) => ({ r, i })).filter(({ r }) => r.metric === "json");
    const expected = items.map(({ r }) => r.expected);
    const of = (run: ModelRun) => fieldScores(items.map(({ i }) => run.preds[i]!), expected, { plain: plan.plain });
    fields = { sft: of(sft) };
    if (base) fields.base = of(base);
  }
  const report: EvalReport = {
    task: plan.task,
    model: plan.model,
    checkpoint: plan.sftDir,
    ...(base ? { base: base.summary } : {}),
    sft: sft.summary,
    ...(confusion ? { confusion } : {}),
    ...(fields ? { fields } : {}),
    samples,
    comparison,
    settings,
    seconds: (performance.now() - started) / 1000,
  };
  const paths = opts.reportBase !== undefined ? await writeReport(report, opts.reportBase) : undefined;
  return paths ? { report, paths } : { report };
}

/** Accuracies of a summary as `{overall, categories: {name: accuracy}}`. */
function accuracies(s: Summary): { overall: number; categories: Record<string, number> } {
  return {
    overall: s.overall.accuracy,
    categories: Object.fromEntries(s.categories.map((c) => [c.category, c.accuracy])),
  };
}

/** The one-line JSON summary `eval.ts --json` prints last: `{task, sft, base?, seconds, report?}`. */
export function summaryJson(result: EvalRunResult): Record<string, unknown> {
  const r = result.report;
  return {
    task: r.task,
    sft: accuracies(r.sft),
    ...(r.base ? { base: accuracies(r.base) } : {}),
    seconds: Math.round(r.seconds * 1000) / 1000,
    ...(result.paths ? { report: result.paths } : {}),
  };
}
