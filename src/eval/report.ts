/**
 * The evaluation report: base vs SFT accuracy per category and overall (as the notebook's
 * `f"{acc*100:.1f}%"`), three SFT samples, the side-by-side comparison of the first test items, and the
 * settings of the run; beyond the notebook, the confusion matrices of the classification task (confusion.ts)
 * and the per-field scores of JSON extraction (fields.ts). Rendered as Markdown and JSON (written atomically,
 * with the matrices as an SVG heatmap beside them) and as the notebook's console printout, coloured
 * green/red for correct/wrong unless NO_COLOR is set.
 * @module
 */

import { basename } from "node:path";
import process from "node:process";
import { atomicWriteFile } from "../io/atomic.ts";
import { formatDuration } from "../io/progress.ts";
import { formatFixed } from "../train/metrics.ts";
import { pySlice, type Summary } from "./metrics.ts";
import { formatPercent, markdownCell } from "./format.ts";

export { formatPercent } from "./format.ts";
import { type FieldScores, renderFieldsConsole, renderFieldsMarkdown } from "./fields.ts";
import {
  type ConfusionMatrix,
  renderConfusionConsole,
  renderConfusionMarkdown,
  renderConfusionSvg,
} from "./confusion.ts";

/** One of the samples the notebook prints (`samples` holds the first three test items). */
export interface EvalSample {
  instruction: string;
  expected: string;
  /** The full prediction (renderers truncate it to 80 characters, as the notebook prints `pred[:80]`). */
  pred: string;
  correct: boolean;
  /**
   * The label classifier: each label's score (its tokens' mean log-probability after the prompt), in label
   * order; the prediction is the highest.
   */
  labelScores?: Record<string, number>;
}

/** One row of the notebook's "Comparison: Base vs SFT" (first five test items). */
export interface ComparisonRow {
  instruction: string;
  expected: string;
  /** The base model's output; absent when the base model was not run. */
  base?: string;
  baseCorrect?: boolean;
  sft: string;
  sftCorrect: boolean;
}

/** How the evaluation ran (the notebook's EVAL_* constants and where it ran). */
export interface EvalSettings {
  /** EVAL_MAX_SAMPLES (the notebook: 200); null: the whole test set. */
  maxSamples: number | null;
  /** EVAL_MAX_NEW_TOKENS (120). */
  maxNewTokens: number;
  /** EVAL_DO_SAMPLE (false: greedy). */
  doSample: boolean;
  /** EVAL_TEMPERATURE (0.0). */
  temperature: number;
  /** EVAL_TOP_P (1.0). */
  topP: number;
  /** generate_response's repetition_penalty (1.1). */
  repetitionPenalty: number;
  /** generate_response's no_repeat_ngram_size (3). */
  noRepeatNgramSize: number;
  /** USE_LM_CLASSIFIER: labels scored by log-probability instead of generated. */
  classifier: boolean;
  /** USE_PLAIN_EVAL. */
  plain: boolean;
  /** TASK_LABELS, when classifying. */
  labels?: string[];
  /** Compute backend ("webgpu", "cpu"). */
  backend?: string;
  /** Runtime and version ("deno 2.9.6"). */
  runtime?: string;
  /** When the evaluation started (ISO 8601). */
  startedAt: string;
}

/** Everything an evaluation run reports. */
export interface EvalReport {
  /** SFT_TASK ("classification" or "json_extraction"). */
  task: string;
  /** The base model (hub id or directory). */
  model: string;
  /** The SFT checkpoint directory. */
  checkpoint: string;
  /** The base model's summary; absent when EVAL_RUN_BASE is off. */
  base?: Summary;
  sft: Summary;
  /** Classification: which label was predicted for which expected label, per model (base absent as above). */
  confusion?: { base?: ConfusionMatrix; sft: ConfusionMatrix };
  /** JSON extraction: per model, how often each field (and a parsable answer at all) was right. */
  fields?: { base?: FieldScores; sft: FieldScores };
  /** The first three SFT predictions. */
  samples: EvalSample[];
  /** Base vs SFT on the first test items. */
  comparison: ComparisonRow[];
  settings: EvalSettings;
  /** Wall-clock seconds of the whole evaluation. */
  seconds: number;
}

/** Python's `text[:80]`, as the notebook prints predictions. */
function short(text: string): string {
  return pySlice(text, 80);
}

/** Categories of both summaries: the SFT order first, then any only the base model has. */
function categoryNames(report: EvalReport): string[] {
  const names = report.sft.categories.map((c) => c.category);
  for (const c of report.base?.categories ?? []) if (!names.includes(c.category)) names.push(c.category);
  return names;
}

function cellOf(s: Summary | undefined, category: string): string {
  const c = s?.categories.find((x) => x.category === category);
  return c ? `${formatPercent(c.accuracy)} (${c.correct}/${c.total})` : "–";
}

function mark(correct: boolean | undefined): string {
  return correct === undefined ? "" : correct ? "✓" : "✗";
}

function settingsRows(report: EvalReport): [string, string][] {
  const s = report.settings;
  const rows: [string, string][] = [
    ["Task", report.task],
    ["Base model", report.model],
    ["SFT checkpoint", report.checkpoint],
    ["Test items", s.maxSamples === null ? "all" : `first ${s.maxSamples}`],
    ["Scoring", s.classifier ? "label log-probability (classifier)" : "generation"],
    ["Max new tokens", String(s.maxNewTokens)],
    ["Decoding", s.doSample ? `sampling (temperature ${s.temperature}, top_p ${s.topP})` : "greedy"],
    ["Repetition penalty", String(s.repetitionPenalty)],
    ["No-repeat n-gram size", String(s.noRepeatNgramSize)],
    ["Plain-field scoring", s.plain ? "yes" : "no"],
  ];
  if (s.labels) rows.push(["Labels", s.labels.join(" / ")]);
  if (s.backend) rows.push(["Backend", s.backend]);
  if (s.runtime) rows.push(["Runtime", s.runtime]);
  rows.push(["Started", s.startedAt], [
    "Time",
    `${formatFixed(report.seconds, 1)} s (${formatDuration(report.seconds)})`,
  ]);
  return rows;
}

function fieldPanels(f: NonNullable<EvalReport["fields"]>): { title: string; scores: FieldScores }[] {
  return f.base
    ? [{ title: "Base", scores: f.base }, { title: "SFT", scores: f.sft }]
    : [{ title: "SFT", scores: f.sft }];
}

/**
 * The report as Markdown: summary table, confusion matrices or field scores (with `svgName`, the heatmap's file name
 * relative to the Markdown file, shown above them), samples, comparison, settings.
 */
export function renderMarkdown(report: EvalReport, opts: { svgName?: string } = {}): string {
  const out: string[] = [`# Evaluation: ${markdownCell(report.task)}`, ""];
  const hasBase = report.base !== undefined;
  out.push(hasBase ? "| Category | Base | SFT |" : "| Category | SFT |", hasBase ? "|---|---:|---:|" : "|---|---:|");
  const rows = categoryNames(report).map((c) => [markdownCell(c), cellOf(report.base, c), cellOf(report.sft, c)]);
  const overall = (s: Summary | undefined) =>
    s ? `**${formatPercent(s.overall.accuracy)}** (${s.overall.correct}/${s.overall.total})` : "–";
  rows.push(["**overall**", overall(report.base), overall(report.sft)]);
  for (const [name, b, s] of rows) out.push(hasBase ? `| ${name} | ${b} | ${s} |` : `| ${name} | ${s} |`);

  if (report.confusion) {
    out.push("", "## Confusion matrix", "", "Rows: the expected label; columns: the label the model predicted.", "");
    if (opts.svgName) out.push(`![confusion matrices](${opts.svgName})`, "");
    if (report.confusion.base) out.push("Base model:", "", renderConfusionMarkdown(report.confusion.base), "");
    out.push("SFT model:", "", renderConfusionMarkdown(report.confusion.sft));
  }
  if (report.fields) {
    out.push(
      "",
      "## Fields",
      "",
      "The share of items with each field right (the accuracy above needs all of them).",
      "",
    );
    out.push(renderFieldsMarkdown(fieldPanels(report.fields)));
  }

  // classifying, a column of the labels' scores (mean log-probability per token), highest first
  const scored = report.samples.some((x) => x.labelScores);
  out.push(
    "",
    "## Samples (SFT)",
    "",
    `| # | Question | Expected | Prediction | |${scored ? " Label scores |" : ""}`,
    `|---|---|---|---|---|${scored ? "---|" : ""}`,
  );
  report.samples.forEach((x, i) => {
    const scores = scored ? ` ${x.labelScores ? markdownCell(labelScoreLine(x.labelScores)) : "–"} |` : "";
    out.push(
      `| ${i + 1} | ${markdownCell(x.instruction)} | ${markdownCell(x.expected)} | ${markdownCell(short(x.pred))} | ${
        mark(x.correct)
      } |${scores}`,
    );
  });

  if (report.comparison.length > 0) {
    out.push("", "## Comparison: base vs SFT", "", "| # | Question | Expected | Base | SFT |", "|---|---|---|---|---|");
    report.comparison.forEach((r, i) => {
      const base = r.base === undefined ? "–" : `${mark(r.baseCorrect)} ${markdownCell(short(r.base))}`.trim();
      const sft = `${mark(r.sftCorrect)} ${markdownCell(short(r.sft))}`.trim();
      out.push(`| ${i + 1} | ${markdownCell(r.instruction)} | ${markdownCell(r.expected)} | ${base} | ${sft} |`);
    });
  }

  out.push("", "## Settings", "", "| Setting | Value |", "|---|---|");
  for (const [k, v] of settingsRows(report)) out.push(`| ${k} | ${markdownCell(v)} |`);
  out.push("", "Predictions are shown truncated to 80 characters; the JSON report has them in full.", "");
  return out.join("\n");
}

/**
 * The label scores, highest first: each label's mean log-probability per token after the prompt, which the
 * classifier compares — how far apart they are shows how decided it was, which the accuracy alone does not.
 */
export function labelScoreLine(scores: Record<string, number>, top = 3): string {
  const sorted = Object.entries(scores).sort((a, b) => b[1] - a[1]);
  const shown = sorted.slice(0, top).map(([l, v]) => `${l} ${v.toFixed(2)}`);
  if (sorted.length > top) shown.push(`${sorted.length - top} more`);
  return shown.join(" · ");
}

/**
 * Whether to colour console output written to `stream` (default stdout): only on a terminal, so pipes and
 * files get plain text, and not when `noColor` (the front doors pass NO_COLOR set and non-empty, src/env.ts).
 */
export function colorEnabled(stream: { isTTY?: boolean } = process.stdout, noColor = false): boolean {
  return stream.isTTY === true && !noColor;
}

/** Console rendering options. */
export interface ConsoleOptions {
  /** ANSI colours (default: {@link colorEnabled}: on a terminal). */
  color?: boolean;
}

/**
 * The notebook's printout: "Base model:" / "SFT model:" accuracy lines, "Samples (SFT):" and
 * "Comparison: Base vs SFT", with predictions green when correct and red when wrong.
 */
export function renderConsole(report: EvalReport, opts: ConsoleOptions = {}): string {
  const color = opts.color ?? colorEnabled();
  const paint = (text: string, ok: boolean | undefined) =>
    !color || ok === undefined ? text : `\x1b[${ok ? 32 : 31}m${text}\x1b[0m`;
  const out: string[] = ["Evaluation on held-out test set", "=".repeat(60)];
  const summary = (title: string, s: Summary) => {
    out.push("", title);
    for (const c of s.categories) out.push(`  ${c.category}: ${formatPercent(c.accuracy)}`);
    out.push(`  overall: ${formatPercent(s.overall.accuracy)}`);
  };
  if (report.base) summary("Base model:", report.base);
  summary("SFT model:", report.sft);
  if (report.confusion) {
    if (report.confusion.base) {
      out.push("", renderConfusionConsole(report.confusion.base, { title: "Base model", color }));
    }
    out.push("", renderConfusionConsole(report.confusion.sft, { title: "SFT model", color }));
  }
  if (report.fields) out.push("", renderFieldsConsole(fieldPanels(report.fields)));
  out.push("", "Samples (SFT):");
  for (const x of report.samples) {
    out.push(`  Q: ${x.instruction}`, `  Expected: ${x.expected}`, paint(`  Pred: ${short(x.pred)}`, x.correct));
    if (x.labelScores) out.push(`  Label scores (mean log-prob per token): ${labelScoreLine(x.labelScores)}`);
    out.push("  ---");
  }
  if (report.comparison.length > 0) {
    out.push("", "Comparison: Base vs SFT", "=".repeat(60));
    for (const r of report.comparison) {
      out.push("", `Q: ${r.instruction}`, `Expected: ${r.expected}`);
      if (r.base !== undefined) out.push(paint(`Base: ${short(r.base)}`, r.baseCorrect));
      out.push(paint(`SFT:  ${short(r.sft)}`, r.sftCorrect), "-".repeat(40));
    }
  }
  out.push("", `Evaluated in ${formatDuration(report.seconds)}`);
  return out.join("\n");
}

/** The heatmap of a report's confusion matrices (base first when present), or null without them. */
export function confusionSvg(report: EvalReport): string | null {
  const c = report.confusion;
  if (!c) return null;
  const panels = [{ title: "SFT model", matrix: c.sft }];
  if (c.base) panels.unshift({ title: "Base model", matrix: c.base });
  return renderConfusionSvg(panels);
}

/**
 * Writes `outBase.md` and `outBase.json`, and with confusion matrices `outBase.confusion.svg` (each
 * atomically); returns their paths.
 */
export async function writeReport(
  report: EvalReport,
  outBase: string,
): Promise<{ md: string; json: string; svg?: string }> {
  const paths: { md: string; json: string; svg?: string } = { md: `${outBase}.md`, json: `${outBase}.json` };
  const svg = confusionSvg(report);
  if (svg !== null) {
    paths.svg = `${outBase}.confusion.svg`;
    await atomicWriteFile(paths.svg, svg);
  }
  await atomicWriteFile(paths.json, JSON.stringify(report, null, 2) + "\n");
  await atomicWriteFile(paths.md, renderMarkdown(report, svg === null ? {} : { svgName: basename(paths.svg!) }));
  return paths;
}
