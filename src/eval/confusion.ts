/**
 * The confusion matrix of the classification task: for each expected label (a row), how often the model
 * predicted each label (a column). The notebook prints only the accuracy; the matrix shows *what* the
 * model gets wrong — the base model typically answers one label whatever the question, which is a column
 * of counts, while the SFT model's counts sit on the diagonal. Rendered for the console (coloured, with
 * Chinese labels aligned by their display width), as Markdown, and as an SVG heatmap beside the report.
 *
 * ```ts
 * import { confusionMatrix, renderConfusionConsole } from "./confusion.ts";
 * const m = confusionMatrix(["退款申请", "地址修改"], ["退款申请", "退款申请"], ["退款申请", "地址修改"]);
 * m.counts; // [[1, 0], [1, 0]]: the second item, expected 地址修改, was predicted 退款申请
 * console.log(renderConfusionConsole(m, { title: "SFT", color: false }));
 * ```
 * @module
 */

import { esc } from "../train/plot.ts";
import { markdownCell, percentOrDash } from "./format.ts";

/** Counts of (expected, predicted) label pairs. */
export interface ConfusionMatrix {
  /**
   * The classes, rows and columns alike: the task's labels in their order, then {@link OTHER} when an
   * expected or predicted answer is none of them (a free-form prediction, or a test file with other labels).
   */
  classes: string[];
  /** counts[i][j]: items whose expected class is classes[i] and predicted class classes[j]. */
  counts: number[][];
}

/** The class of an answer that is none of the labels. */
export const OTHER = "(other)";

/**
 * Count each item's (expected, predicted) pair. An answer counts as a label when it equals one after
 * trimming whitespace (the label classifier answers a label exactly); anything else is {@link OTHER}.
 */
export function confusionMatrix(
  expected: readonly string[],
  predicted: readonly string[],
  labels: readonly string[],
): ConfusionMatrix {
  if (expected.length !== predicted.length) {
    throw new Error(`confusionMatrix: ${expected.length} expected answers but ${predicted.length} predictions`);
  }
  const index = new Map(labels.map((l, i) => [l, i]));
  const classOf = (s: string) => index.get(s.trim()) ?? labels.length;
  const pairs = expected.map((e, i) => [classOf(e), classOf(predicted[i]!)] as const);
  const hasOther = pairs.some(([e, p]) => e === labels.length || p === labels.length);
  const classes = hasOther ? [...labels, OTHER] : [...labels];
  const counts = classes.map(() => classes.map(() => 0));
  for (const [e, p] of pairs) counts[e]![p]!++;
  return { classes, counts };
}

/** Per-class recall: the diagonal over the row's total (NaN for a class no item expects). */
export function recalls(m: ConfusionMatrix): number[] {
  return m.counts.map((row, i) => row[i]! / row.reduce((a, b) => a + b, 0));
}

/**
 * Terminal columns a string occupies: East Asian wide and fullwidth characters (CJK ideographs, kana,
 * hangul, fullwidth forms) take two, everything else one. Enough to align the labels' columns.
 */
export function displayWidth(s: string): number {
  let w = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    const wide = (c >= 0x1100 && c <= 0x115f) || (c >= 0x2e80 && c <= 0xa4cf && c !== 0x303f) ||
      (c >= 0xac00 && c <= 0xd7a3) || (c >= 0xf900 && c <= 0xfaff) || (c >= 0xfe30 && c <= 0xfe4f) ||
      (c >= 0xff00 && c <= 0xff60) || (c >= 0xffe0 && c <= 0xffe6) || (c >= 0x20000 && c <= 0x3fffd);
    w += wide ? 2 : 1;
  }
  return w;
}

const padStart = (s: string, w: number) => " ".repeat(Math.max(0, w - displayWidth(s))) + s;
const padEnd = (s: string, w: number) => s + " ".repeat(Math.max(0, w - displayWidth(s)));

/** Options of {@link renderConfusionConsole}. */
export interface ConfusionConsoleOptions {
  /** Heading, e.g. "SFT model" (default "Confusion matrix"). */
  title?: string;
  /** ANSI colours: correct counts green, confusions red, zeros dimmed (default false). */
  color?: boolean;
}

/**
 * The matrix as a console table: rows expected, columns predicted, a recall column; zeros shown as "·".
 */
export function renderConfusionConsole(m: ConfusionMatrix, opts: ConfusionConsoleOptions = {}): string {
  const paint = (text: string, code: string) => opts.color ? `\x1b[${code}m${text}\x1b[0m` : text;
  const rowHead = Math.max(displayWidth("expected \\ predicted"), ...m.classes.map(displayWidth));
  const total = m.counts.flat().reduce((a, b) => a + b, 0);
  const colW = Math.max(String(total).length, ...m.classes.map(displayWidth)) + 1;
  const rec = recalls(m);
  const out = [
    `${opts.title ?? "Confusion matrix"} (rows: expected label, columns: predicted label)`,
    "  " + padEnd("expected \\ predicted", rowHead) + m.classes.map((c) => padStart(c, colW)).join("") +
    padStart("recall", 9),
  ];
  m.counts.forEach((row, i) => {
    const cells = row.map((n, j) => {
      const text = padStart(n === 0 ? "·" : String(n), colW);
      return n === 0 ? paint(text, "2") : paint(text, i === j ? "32" : "31");
    });
    out.push("  " + padEnd(m.classes[i]!, rowHead) + cells.join("") + padStart(percentOrDash(rec[i]!), 9));
  });
  return out.join("\n");
}

/** The matrix as a Markdown table: diagonal counts bold, a recall column. */
export function renderConfusionMarkdown(m: ConfusionMatrix): string {
  const rec = recalls(m);
  const out = [
    `| expected \\ predicted | ${m.classes.map(markdownCell).join(" | ")} | recall |`,
    `|---|${m.classes.map(() => "---:").join("|")}|---:|`,
  ];
  m.counts.forEach((row, i) => {
    const cells = row.map((n, j) => i === j ? `**${n}**` : n === 0 ? "·" : String(n));
    out.push(`| ${markdownCell(m.classes[i]!)} | ${cells.join(" | ")} | ${percentOrDash(rec[i]!)} |`);
  });
  return out.join("\n");
}

/**
 * One or more matrices (e.g. base and SFT) side by side as an SVG heatmap: each cell shaded by its share
 * of the row (the fraction of that label's items predicted as the column's), green on the diagonal and red
 * off it, with its count written in. The labels are text, so any script (Chinese included) renders.
 */
export function renderConfusionSvg(panels: readonly { title: string; matrix: ConfusionMatrix }[]): string {
  if (panels.length === 0) throw new Error("renderConfusionSvg: no matrices");
  const cell = 44, font = 12;
  const labelW = Math.max(...panels.flatMap((p) => p.matrix.classes.map((c) => displayWidth(c)))) * 7 + 16;
  const n = Math.max(...panels.map((p) => p.matrix.classes.length));
  const caption = 22; // the rotated "expected label" left of the row labels
  const panelW = caption + labelW + n * cell + 30;
  const top = 56 + labelW; // title, axis caption, then the column labels (rotated)
  const width = panels.length * panelW + 10, height = top + n * cell + 40;
  const o: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="${font}">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
  ];
  panels.forEach(({ title, matrix: m }, k) => {
    const x0 = 10 + k * panelW + caption + labelW, y0 = top;
    const side = m.classes.length * cell;
    const total = m.counts.flat().reduce((a, b) => a + b, 0);
    const correct = m.counts.reduce((a, row, i) => a + row[i]!, 0);
    o.push(
      `<text x="${x0 + side / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)} — ` +
        `${percentOrDash(correct / total)} correct (${correct}/${total})</text>`,
      `<text x="${x0 + side / 2}" y="42" text-anchor="middle" fill="#555">predicted label</text>`,
      `<text x="${x0 - labelW - 6}" y="${y0 + side / 2}" text-anchor="middle" fill="#555" ` +
        `transform="rotate(-90 ${x0 - labelW - 6} ${y0 + side / 2})">expected label</text>`,
    );
    m.classes.forEach((c, j) => {
      const x = x0 + j * cell + cell / 2 + 4, y = y0 - 6;
      o.push(`<text x="${x}" y="${y}" transform="rotate(-90 ${x} ${y})">${esc(c)}</text>`);
      o.push(`<text x="${x0 - 8}" y="${y0 + j * cell + cell / 2 + 4}" text-anchor="end">${esc(c)}</text>`);
    });
    m.counts.forEach((row, i) => {
      const rowTotal = row.reduce((a, b) => a + b, 0);
      row.forEach((count, j) => {
        const share = rowTotal > 0 ? count / rowTotal : 0;
        const fill = count === 0 ? "#f4f4f4" : i === j ? "#2e7d32" : "#c62828";
        const x = x0 + j * cell, y = y0 + i * cell;
        o.push(
          `<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${fill}" ` +
            `fill-opacity="${count === 0 ? 1 : (0.15 + 0.85 * share).toFixed(3)}" stroke="#fff"/>`,
        );
        if (count > 0) {
          const ink = share > 0.5 ? "#fff" : "#000";
          o.push(
            `<text x="${x + cell / 2}" y="${y + cell / 2 + 4}" text-anchor="middle" fill="${ink}">${count}</text>`,
          );
        }
      });
    });
    o.push(`<rect x="${x0}" y="${y0}" width="${side}" height="${side}" fill="none" stroke="#999"/>`);
  });
  o.push("</svg>", "");
  return o.join("\n");
}
