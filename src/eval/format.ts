/**
 * Text helpers shared by the evaluation's renderings (report.ts, confusion.ts, fields.ts): the notebook's
 * percentages and Markdown table cells.
 * @module
 */

import { formatFixed } from "../train/metrics.ts";

/** The notebook's `f"{acc*100:.1f}%"` (Python rounding: half to even on the exact value). */
export function formatPercent(accuracy: number): string {
  return `${formatFixed(accuracy * 100, 1)}%`;
}

/** {@link formatPercent}, or "–" for NaN (a share of no items). */
export function percentOrDash(x: number): string {
  return Number.isNaN(x) ? "–" : formatPercent(x);
}

/** Text made safe for a Markdown table cell. */
export function markdownCell(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll("|", "\\|")
    .replace(/\r?\n/g, "<br>");
}
