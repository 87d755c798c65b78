/**
 * Per-field scores of the JSON-extraction task. The notebook counts an answer right only when the whole
 * object matches (name, email and order_id all equal); these scores say which field the model gets wrong,
 * and how often it produced an object at all, with the notebook's own parsing and normalisation
 * (`extract_json` or, with plain answers, the `姓名：…；邮箱：…；订单号：…` fields; keys and values
 * normalised as `normalize_json_obj`).
 *
 * ```ts
 * import { fieldScores } from "./fields.ts";
 * const s = fieldScores(['{"name": "陈洁", "email": "x@example.com", "order_id": "OD20240105-1234"}'],
 *   ['{"name": "陈洁", "email": "chen.jie@example.com", "order_id": "OD20240105-1234"}']);
 * s.fields.map((f) => `${f.field} ${f.correct}/${f.total}`); // ["name 1/1", "email 0/1", "order_id 1/1"]
 * ```
 * @module
 */

import {
  cleanGenerated,
  extractJson,
  findPlainFields,
  isDict,
  normalizeJsonObj,
  pyEquals,
  pyJsonLoads,
} from "./metrics.ts";
import { markdownCell, percentOrDash } from "./format.ts";

/** How many items have one field (or, for "parsed", an answer the scorer could read) right. */
export interface FieldScore {
  field: string;
  correct: number;
  total: number;
  accuracy: number;
}

/** Per-field scores of one model. */
export interface FieldScores {
  /** Items whose answer held a JSON object (plain: at least one of the fields). */
  parsed: FieldScore;
  /** One score per field of the expected objects, in their order of first appearance. */
  fields: FieldScore[];
}

/**
 * Score each field of `expected` (JSON objects as strings) against the predictions. A field counts as
 * right when the prediction's object has it with the expected value after the notebook's normalisation.
 * Expected answers that are not JSON objects are skipped (they have no fields).
 */
export function fieldScores(
  predictions: readonly string[],
  expected: readonly string[],
  opts: { plain?: boolean } = {},
): FieldScores {
  if (predictions.length !== expected.length) {
    throw new Error(`fieldScores: ${predictions.length} predictions but ${expected.length} expected answers`);
  }
  const counts = new Map<string, { correct: number; total: number }>();
  let parsed = 0, items = 0;
  for (let i = 0; i < expected.length; i++) {
    let want: unknown;
    try {
      want = normalizeJsonObj(pyJsonLoads(expected[i]!));
    } catch {
      want = null;
    }
    if (!isDict(want)) continue;
    items++;
    // as scorePrediction: extract_json of the cleaned text (which cleans it again, as the notebook does)
    const raw: unknown = opts.plain ? findPlainFields(predictions[i]) : extractJson(cleanGenerated(predictions[i]));
    const normalized = normalizeJsonObj(raw), got = isDict(normalized) ? normalized : null;
    if (got && Object.keys(got).length > 0) parsed++;
    for (const [field, value] of Object.entries(want)) {
      const c = counts.get(field) ?? { correct: 0, total: 0 };
      c.total++;
      if (got && Object.hasOwn(got, field) && pyEquals(got[field]!, value)) c.correct++;
      counts.set(field, c);
    }
  }
  const score = (field: string, correct: number, total: number): FieldScore => ({
    field,
    correct,
    total,
    accuracy: total > 0 ? correct / total : NaN,
  });
  return {
    parsed: score("parsed", parsed, items),
    fields: [...counts].map(([field, c]) => score(field, c.correct, c.total)),
  };
}

/** A bar of `width` cells, filled to `x` ∈ [0, 1] in eighths. */
function bar(x: number, width: number): string {
  const eighths = Math.round((Number.isNaN(x) ? 0 : Math.min(1, Math.max(0, x))) * width * 8);
  const full = Math.floor(eighths / 8), part = eighths % 8;
  return ("█".repeat(full) + (part ? "▏▎▍▌▋▊▉"[part - 1] : "")).padEnd(width, " ");
}

/** The rows of a table: "parsed" first, then the fields of the SFT model (the base model's in the same order). */
function rows(panels: readonly { title: string; scores: FieldScores }[]): string[] {
  const names = ["parsed"];
  for (const p of panels) for (const f of p.scores.fields) if (!names.includes(f.field)) names.push(f.field);
  return names;
}

function scoreOf(s: FieldScores, name: string): FieldScore | undefined {
  return name === "parsed" ? s.parsed : s.fields.find((f) => f.field === name);
}

/**
 * The scores as console lines: per row the share of items right for each model, with a bar for the last
 * (the SFT model).
 */
export function renderFieldsConsole(panels: readonly { title: string; scores: FieldScores }[]): string {
  const names = rows(panels);
  const nameW = Math.max(...names.map((n) => n.length), "field".length);
  const out = [
    "Fields (share of test items with each field right; the notebook counts an item right only when all are)",
    "  " + "field".padEnd(nameW) + panels.map((p) => p.title.padStart(9)).join(""),
  ];
  for (const n of names) {
    const cells = panels.map((p) => percentOrDash(scoreOf(p.scores, n)?.accuracy ?? NaN).padStart(9));
    const last = scoreOf(panels[panels.length - 1]!.scores, n)?.accuracy ?? NaN;
    out.push("  " + n.padEnd(nameW) + cells.join("") + "  " + bar(last, 20).trimEnd());
  }
  return out.join("\n");
}

/** The scores as a Markdown table (one column per model, `correct/total` beside each share). */
export function renderFieldsMarkdown(panels: readonly { title: string; scores: FieldScores }[]): string {
  const out = [
    `| Field | ${panels.map((p) => markdownCell(p.title)).join(" | ")} |`,
    `|---|${panels.map(() => "---:").join("|")}|`,
  ];
  for (const n of rows(panels)) {
    const cells = panels.map((p) => {
      const s = scoreOf(p.scores, n);
      return s ? `${percentOrDash(s.accuracy)} (${s.correct}/${s.total})` : "–";
    });
    out.push(`| ${markdownCell(n === "parsed" ? "answer parsed" : n)} | ${cells.join(" | ")} |`);
  }
  return out.join("\n");
}
