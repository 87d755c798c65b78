/**
 * The evaluation report from the models' runs: per-model summaries, the first samples, the side-by-side
 * comparison of the first five test items, confusion matrices (classification) and per-field scores (JSON
 * items), and the settings; and the one-line JSON summary of `eval.ts --json`.
 * @module
 */

import { runtimeName } from "../runtime.ts";
import type { Summary } from "./metrics.ts";
import { confusionMatrix } from "./confusion.ts";
import { fieldScores } from "./fields.ts";
import { type EvalPlan, NOTEBOOK_EVAL } from "./plan.ts";
import type { ComparisonRow, EvalReport, EvalSample, EvalSettings } from "./report.ts";

/** One model's pass over the evaluated items (see `runEvaluation`). */
export interface ModelRun {
  summary: Summary;
  preds: string[];
  correct: boolean[];
  /** The label classifier's scores of each evaluated item (empty for generation). */
  scores: (number[] | undefined)[];
  /** Predictions of the comparison items beyond the evaluated ones. */
  extra: Map<number, { pred: string; correct: boolean }>;
}

/** What `runEvaluation` returns. */
export interface EvalRunResult {
  report: EvalReport;
  /** The files written, when `reportBase` was given. */
  paths?: { md: string; json: string; svg?: string };
}

/** Item `i`'s prediction: an evaluated item's, or one of the comparison items beyond them. */
function predictionAt(run: ModelRun, i: number): { pred: string; correct: boolean } {
  if (i < run.preds.length) return { pred: run.preds[i]!, correct: run.correct[i]! };
  return run.extra.get(i)!;
}

/**
 * Assemble the report of `plan`'s evaluation from the SFT model's run and, when it ran, the base model's:
 * `backend` names the backend, `startedAt` (ISO time) and `seconds` time the whole evaluation.
 */
export function assembleReport(
  plan: EvalPlan,
  runs: { base?: ModelRun; sft: ModelRun },
  ctx: { backend: string; startedAt: string; seconds: number },
): EvalReport {
  const { base, sft } = runs;
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
    backend: ctx.backend,
    runtime: runtimeName(),
    startedAt: ctx.startedAt,
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
  return {
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
    seconds: ctx.seconds,
  };
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
