/**
 * The free-form evaluation's report: per model the loss and perplexity over the test conversations' assistant
 * turns, the token accuracy, the exact match (and the `--score` scorer's share) of the generated answers,
 * the generations side by side, and the settings; as Markdown, JSON (both written atomically) and the
 * console printout.
 * @module
 */

import { atomicWriteFile } from "../io/atomic.ts";
import { formatDuration } from "../io/progress.ts";
import { formatFixed } from "../train/metrics.ts";
import { formatPercent, markdownCell } from "./format.ts";
import type { FreeformModelSummary, FreeformReport } from "./freeform_run.ts";
import { pySlice } from "./metrics.ts";

const short = (text: string) => pySlice(text, 80);
const mark = (ok: boolean | undefined) => (ok === undefined ? "" : ok ? "✓" : "✗");

/** The rows of the figures table: [name, base value, SFT value]. */
function figureRows(r: FreeformReport): [string, string, string][] {
  const of = (f: (s: FreeformModelSummary) => string) => [r.base ? f(r.base) : "–", f(r.sft)] as const;
  const rows: [string, string, string][] = [
    ["Loss (assistant tokens)", ...of((s) => formatFixed(s.loss, 4))],
    ["Perplexity", ...of((s) => formatFixed(s.perplexity, 2))],
    ["Token accuracy", ...of((s) => `${formatPercent(s.tokenAccuracy)} (of ${s.tokens})`)],
    ["Exact match", ...of((s) => `${formatPercent(s.exactMatch)} (${s.exactCorrect}/${s.generated})`)],
  ];
  if (r.score) {
    rows.push([
      `Score: ${r.score}`,
      ...of((s) => (s.score ? `${formatPercent(s.score.accuracy)} (${s.score.correct}/${s.generated})` : "–")),
    ]);
  }
  return rows;
}

function settingsRows(r: FreeformReport): [string, string][] {
  const s = r.settings;
  return [
    ["Task", "chat (free-form)"],
    ["Base model", r.model],
    ["SFT checkpoint", r.checkpoint],
    ["Test file", `${r.testFile} (format ${r.format})`],
    [
      "Conversations in the loss",
      `${r.sft.conversations}${
        r.sft.dropped ? ` (${r.sft.dropped} dropped: no supervised token after truncation)` : ""
      }`,
    ],
    ["Skipped (no assistant turn that carries loss)", r.skipped.length ? `lines ${r.skipped.join(", ")}` : "none"],
    ["Generated", `${r.sft.generated} (${s.maxSamples === null ? "all" : `first ${s.maxSamples}`})`],
    ["Loss mask", s.mask],
    ["Max new tokens", String(s.maxNewTokens)],
    ["Decoding", s.doSample ? `sampling (temperature ${s.temperature}, top_p ${s.topP})` : "greedy"],
    ["Repetition penalty", String(s.repetitionPenalty)],
    ["No-repeat n-gram size", String(s.noRepeatNgramSize)],
    ["Backend", s.backend],
    ["Runtime", s.runtime],
    ["Started", s.startedAt],
    ["Time", `${formatFixed(r.seconds, 1)} s (${formatDuration(r.seconds)})`],
  ];
}

/** The report as Markdown: the figures, the generations side by side, the settings. */
export function renderFreeformMarkdown(r: FreeformReport): string {
  const out: string[] = ["# Evaluation: chat (free-form)", "", "| | Base | SFT |", "|---|---:|---:|"];
  for (const [name, b, s] of figureRows(r)) out.push(`| ${markdownCell(name)} | ${b} | ${s} |`);
  out.push(
    "",
    "Loss, perplexity and token accuracy over the assistant turns of every test conversation; exact match " +
      "(after trimming) of the answers generated for the last assistant turn.",
  );
  const extra = r.score !== undefined;
  out.push(
    "",
    "## Generations: base vs SFT",
    "",
    "| Line | Question | Reference | Base | SFT |",
    "|---|---|---|---|---|",
  );
  const cell = (text: string | undefined, exact: boolean | undefined, score: boolean | undefined) =>
    text === undefined
      ? "–"
      : `${mark(exact)}${extra ? ` (${r.score} ${mark(score)})` : ""} ${markdownCell(short(text))}`.trim();
  for (const x of r.rows) {
    out.push(
      `| ${x.line} | ${markdownCell(short(x.question))} | ${markdownCell(short(x.reference))} | ${
        cell(x.base, x.baseExact, x.baseScore)
      } | ${cell(x.sft, x.sftExact, x.sftScore)} |`,
    );
  }
  out.push("", "## Settings", "", "| Setting | Value |", "|---|---|");
  for (const [k, v] of settingsRows(r)) out.push(`| ${k} | ${markdownCell(v)} |`);
  out.push(
    "",
    "✓/✗: exact match. Texts are shown truncated to 80 characters; the JSON report has them in full.",
    "",
  );
  return out.join("\n");
}

/** The console printout: the figures, then each generated item with the reference and both answers. */
export function renderFreeformConsole(r: FreeformReport, opts: { color?: boolean } = {}): string {
  const paint = (text: string, ok: boolean | undefined) =>
    !opts.color || ok === undefined ? text : `\x1b[${ok ? 32 : 31}m${text}\x1b[0m`;
  const out: string[] = ["Free-form evaluation on your test conversations", "=".repeat(60), ""];
  const rows = figureRows(r);
  const w = Math.max(...rows.map((x) => x[0].length));
  out.push(`${"".padEnd(w)}  ${"Base".padStart(18)}  ${"SFT".padStart(18)}`);
  for (const [name, b, s] of rows) out.push(`${name.padEnd(w)}  ${b.padStart(18)}  ${s.padStart(18)}`);
  out.push("", "Generations: Base vs SFT", "=".repeat(60));
  for (const x of r.rows) {
    out.push("", `Line ${x.line}: ${short(x.question)}`, `Reference: ${short(x.reference)}`);
    if (x.base !== undefined) out.push(paint(`Base: ${short(x.base)}`, x.baseExact));
    out.push(paint(`SFT:  ${short(x.sft)}`, x.sftExact), "-".repeat(40));
  }
  out.push("", `Evaluated in ${formatDuration(r.seconds)}`);
  return out.join("\n");
}

/** Write `outBase.md` and `outBase.json` (each atomically); returns their paths. */
export async function writeFreeformReport(r: FreeformReport, outBase: string): Promise<{ md: string; json: string }> {
  const paths = { md: `${outBase}.md`, json: `${outBase}.json` };
  await atomicWriteFile(paths.json, JSON.stringify(r, null, 2) + "\n");
  await atomicWriteFile(paths.md, renderFreeformMarkdown(r));
  return paths;
}
