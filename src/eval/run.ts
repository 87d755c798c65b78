/**
 * The notebook's held-out evaluation (Part 6): the base model and the SFT model on the first
 * `EVAL_MAX_SAMPLES` test records, per-category and overall accuracy, three samples, and the side-by-side
 * comparison of the first five test items, written as a Markdown and a JSON report. `eval.ts` and the
 * demo call {@link runEvaluation}. The options are checked and the data read first (plan.ts, tasks.ts);
 * predictors.ts answers the items; assemble.ts builds the report.
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

import { stderr } from "node:process";
import type { Backend } from "../backend/backend.ts";
import { IM_END } from "../data/chatml.ts";
import type { SftRecord } from "../data/jsonl.ts";
import { buildPlainInstruction } from "../data/synth.ts";
import type { ResolveModelOptions } from "../io/hub.ts";
import { ProgressBar } from "../io/progress.ts";
import type { GPT2 } from "../model/gpt2.ts";
import { loadModelAndTokenizer } from "../model/load.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { scorePrediction, summarize } from "./metrics.ts";
import { assembleReport, type EvalRunResult, type ModelRun } from "./assemble.ts";
import { type EvalPlan, type EvalPlanOptions, NOTEBOOK_EVAL, planEvaluation } from "./plan.ts";
import { generator, labelClassifier, type Predictor, PREFETCH } from "./predictors.ts";
import { writeReport } from "./report.ts";

export { EVAL_TASKS, readSftTaskMeta, type SftTaskMeta } from "./tasks.ts";
export { type DecodingOptions, type EvalPlan, type EvalPlanOptions, NOTEBOOK_EVAL, planEvaluation } from "./plan.ts";
export { cleanResponse, generator, labelClassifier } from "./predictors.ts";
export { type EvalRunResult, summaryJson } from "./assemble.ts";

/** How progress is shown: a bar on a TTY, the notebook's `  evaluated 50/200` lines, or nothing. */
export type ProgressMode = "auto" | "bar" | "lines" | "none";

/** Options of {@link runEvaluation}: what {@link planEvaluation} reads, the backend, the report and the display. */
export interface EvalRunOptions extends EvalPlanOptions {
  /** The compute backend; the models are loaded onto it. */
  backend: Backend;
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

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The user turn for a record: the training form (plain extraction when `plain`). */
function userText(record: SftRecord, plain: boolean): string {
  return plain ? buildPlainInstruction(record) : record.instruction;
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

  const predictorFor = (model: GPT2, tokenizer: Tokenizer, chatml: boolean): Predictor =>
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

  const report = assembleReport(plan, { base, sft }, {
    backend: be.name,
    startedAt,
    seconds: (performance.now() - started) / 1000,
  });
  const paths = opts.reportBase !== undefined ? await writeReport(report, opts.reportBase) : undefined;
  return paths ? { report, paths } : { report };
}
