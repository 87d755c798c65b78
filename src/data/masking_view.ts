/**
 * The notebook's `visualize_loss_masking` (Part 4): which tokens of one SFT example carry loss. The console
 * view prints the first 50 non-padding tokens, green where the label is the token's id (supervised) and red
 * where it is −100 (masked), then the counts; the HTML view shows every token the same way on a
 * self-contained page with a legend.
 *
 * Without colour (NO_COLOR, or `color: false`) the console view marks supervised tokens as `«token»`
 * instead, so the information survives in plain text and logs.
 *
 * @example
 * ```ts
 * const ex = processExample(messages, tokenizer, { maxLength: 256, mask: "assistant" })!;
 * const view = buildMaskingView(ex, tokenizer);
 * console.log(renderMaskingConsole(view, { color: true }));
 * await writeFile("masking.html", renderMaskingHtml(view, { title: "Loss masking" }));
 * ```
 * @module
 */

import { formatFixed } from "../train/metrics.ts";

/** What the view needs of a tokenizer (`convert_ids_to_tokens` and `pad_token_id`). */
export interface MaskingViewTokenizer {
  idToToken(id: number): string | undefined;
  readonly padTokenId: number;
}

/** One shown token. */
export interface MaskedToken {
  id: number;
  /** The vocabulary entry (`##` pieces kept, as `convert_ids_to_tokens` gives them). */
  token: string;
  /** The label: the id when supervised, −100 when masked. */
  label: number;
  supervised: boolean;
}

/** The tokens of one example and the notebook's counts. */
export interface MaskingView {
  /** The first `total` tokens of the example (the notebook's `valid_len`). */
  tokens: MaskedToken[];
  /** Tokens whose label is −100. */
  masked: number;
  /** Non-padding tokens (`(input_ids != pad_token_id).sum()`). */
  total: number;
}

/** Console rendering options. */
export interface MaskingConsoleOptions {
  /** ANSI colours (green `\x1b[92m` supervised, red `\x1b[91m` masked); otherwise `«…»` marks. */
  color: boolean;
  /** How many tokens to show (default 50, as the notebook's `tokens[:50]`). */
  limit?: number;
}

/** HTML rendering options. */
export interface MaskingHtmlOptions {
  /** The page title and heading (default "Loss Masking Visualization"). */
  title?: string;
  /** Lines shown under the heading as a small table (model, task, record index, mask mode, …). */
  details?: readonly (readonly [key: string, value: string])[];
}

const GREEN = "\x1b[92m";
const RED = "\x1b[91m";
const RESET = "\x1b[0m";

/**
 * Build the view of one example as the notebook does: `valid_len` is the number of ids that are not the
 * pad id, and the first `valid_len` ids and labels are kept (padding is on the right).
 */
export function buildMaskingView(
  example: { inputIds: ArrayLike<number>; labels: ArrayLike<number> },
  tok: MaskingViewTokenizer,
): MaskingView {
  const { inputIds, labels } = example;
  if (inputIds.length !== labels.length) {
    throw new Error(`Cannot show loss masking: ${inputIds.length} input ids but ${labels.length} labels`);
  }
  let validLen = 0;
  for (let i = 0; i < inputIds.length; i++) if (inputIds[i] !== tok.padTokenId) validLen++;
  if (validLen === 0) throw new Error("Cannot show loss masking: the example has no tokens other than padding");
  const tokens: MaskedToken[] = [];
  let masked = 0;
  for (let i = 0; i < validLen; i++) {
    const id = inputIds[i]!;
    const label = labels[i]!;
    const supervised = label !== -100;
    if (!supervised) masked++;
    tokens.push({ id, token: tok.idToToken(id) ?? `<id ${id}>`, label, supervised });
  }
  return { tokens, masked, total: validLen };
}

/** The notebook's two count lines: `Masked tokens: m/total (x%)` and `Loss computed on: s/total (y%)`. */
export function maskingStatsLines(view: MaskingView): [string, string] {
  const { masked, total } = view;
  const pct = (n: number) => formatFixed((100 * n) / total, 1);
  return [
    `Masked tokens: ${masked}/${total} (${pct(masked)}%)`,
    `Loss computed on: ${total - masked}/${total} (${pct(total - masked)}%)`,
  ];
}

/**
 * The notebook's printout, as one string (lines joined with `\n`, no final newline):
 *
 * ```text
 * Loss Masking Visualization:
 * ============================================================
 * Green = Loss computed (assistant)
 * Red = Loss masked (user/system)
 * ============================================================
 * [CLS] <|im_start|> u ##s ##e ##r … (each token followed by a space)
 *
 * Masked tokens: 61/64 (95.3%)
 * Loss computed on: 3/64 (4.7%)
 * ```
 */
export function renderMaskingConsole(view: MaskingView, opts: MaskingConsoleOptions): string {
  const limit = opts.limit ?? 50;
  const rule = "=".repeat(60);
  const legend = opts.color
    ? ["Green = Loss computed (assistant)", "Red = Loss masked (user/system)"]
    : ["«token» = Loss computed (assistant)", "token = Loss masked (user/system)"];
  let row = "";
  for (const t of view.tokens.slice(0, limit)) {
    const shown = opts.color
      ? `${t.supervised ? GREEN : RED}${t.token}${RESET}`
      : t.supervised
      ? `«${t.token}»`
      : t.token;
    row += `${shown} `;
  }
  // print(..., end=" ") per token, then print("\n"), then print(f"\nMasked tokens: …")
  return ["Loss Masking Visualization:", rule, ...legend, rule, row, "", "", ...maskingStatsLines(view)].join("\n");
}

/** Escape text for HTML element content and double-quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

/**
 * The view as a self-contained HTML page (no scripts, no external resources): every token as a coloured
 * span (green supervised, red masked) with its id and label in the tooltip, a legend and the counts.
 */
export function renderMaskingHtml(view: MaskingView, opts: MaskingHtmlOptions = {}): string {
  const title = opts.title ?? "Loss Masking Visualization";
  const spans = view.tokens.map((t, i) => {
    const cls = t.supervised ? "sup" : "mask";
    const tip = `#${i} id ${t.id} label ${t.label}`;
    return `<span class="tok ${cls}" title="${escapeHtml(tip)}">${escapeHtml(t.token)}</span>`;
  });
  const details = (opts.details ?? []).map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`);
  const [maskedLine, computedLine] = maskingStatsLines(view);
  return `<!DOCTYPE html>
<html lang="zh">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 70rem; }
h1 { font-size: 1.4rem; }
table.details { border-collapse: collapse; margin-bottom: 1rem; }
table.details th { text-align: left; padding-right: 1rem; font-weight: 600; }
.legend span, .tokens span { margin-right: 0.25rem; }
.tokens { line-height: 2.1; font-family: ui-monospace, monospace; }
.tok { display: inline-block; padding: 0 0.3rem; border-radius: 0.25rem; white-space: pre; }
.sup { background: #d4f7d4; color: #0a5d0a; border: 1px solid #5cb85c; }
.mask { background: #fadada; color: #8a1010; border: 1px solid #e08080; }
.stats { font-family: ui-monospace, monospace; }
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${
    details.length
      ? `<table class="details">\n${details.join("\n")}\n</table>\n`
      : ""
  }<p class="legend"><span class="tok sup">green</span> = Loss computed (assistant) &nbsp; <span class="tok mask">red</span> = Loss masked (user/system)</p>
<div class="tokens">
${spans.join("\n")}
</div>
<p class="stats">${escapeHtml(maskedLine)}<br>${escapeHtml(computedLine)}</p>
</body>
</html>
`;
}
