/**
 * Planning an evaluation: the notebook's settings, the decoding options with their defaults, and
 * {@link planEvaluation}, which checks every option and reads the test data before any model is loaded.
 * @module
 */

import { existsSync } from "node:fs";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { readSftRecords, type SftRecord } from "../data/jsonl.ts";
import {
  ensureSplitFile,
  generatedSplitHint,
  ISSUE_LABELS,
  type SftTask,
  SPLIT_COUNTS,
  SPLIT_SEEDS,
} from "../data/synth.ts";
import { DEFAULT_MODEL } from "../io/hub.ts";
import { parseTask, readSftTaskMeta, type SftTaskMeta } from "./tasks.ts";

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

/** Prompts generated at once by default (see `DecodingOptions.batchSize`). */
const GENERATION_BATCH = 16;

/** What {@link planEvaluation} reads: the model, task, data and decoding options of an evaluation. */
export interface EvalPlanOptions {
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
  decoding?: DecodingOptions;
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

/** The notebook's test split, written beside the other files when missing (seed 44, 1000 records). */
async function ensureTestFile(task: SftTask, dataDir: string, plain: boolean, print: (l: string) => void) {
  const { path, generated } = await ensureSplitFile(task, dataDir, "test", { plain });
  if (generated) print(`Generated ${path} (${SPLIT_COUNTS.test} test records, seed ${SPLIT_SEEDS.test})`);
  return path;
}

/**
 * Check that `sftDir` is a model directory (it exists and holds a config.json) or a LoRA adapter directory
 * (adapter_config.json: it loads on its base model) and read its `sft_task.json`
 * (null when absent).
 */
export async function checkSftDir(sftDir: string): Promise<SftTaskMeta | null> {
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
  if (!existsSync(join(sftDir, "config.json")) && !existsSync(join(sftDir, "adapter_config.json"))) {
    throw new Error(
      `Cannot evaluate: ${sftDir} is not a model directory (no config.json) nor a LoRA adapter (no adapter_config.json)`,
    );
  }
  return await readSftTaskMeta(sftDir);
}

/** The decoding options with their defaults (the notebook's), checked. */
export function resolveDecoding(d: DecodingOptions = {}): Required<DecodingOptions> {
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
  return decoding;
}

/**
 * Check the options and read the test data, before any model is loaded: the SFT dir must exist and hold a
 * config.json, sft_task.json (when present) must be well formed, the task known, the test file readable
 * with at least one record, and the numbers sane.
 */
export async function planEvaluation(
  opts: EvalPlanOptions,
  print: (line: string) => void = () => {},
): Promise<EvalPlan> {
  const sftDir = opts.sftDir;
  const meta = await checkSftDir(sftDir);
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
  const decoding = resolveDecoding(opts.decoding);

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
