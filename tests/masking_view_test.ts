/**
 * The loss-masking view (src/data/masking_view.ts) on the fixture tokenizer: counts, the 50-token console
 * row with and without ANSI colours, and the HTML page. Everything here is exact (token ids, counts and
 * strings): no tolerance.
 */
import { describe, expect, test } from "bun:test";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  buildMaskingView,
  escapeHtml,
  maskingStatsLines,
  renderMaskingConsole,
  renderMaskingHtml,
} from "../src/data/masking_view.ts";
import { processExample } from "../src/data/sft_dataset.ts";
import { generateClassificationRecords, toMessages } from "../src/data/synth.ts";
import { readSafetensors } from "../src/io/safetensors.ts";
import { BertTokenizer } from "../src/tokenizer/tokenizer.ts";

const FIXTURE = join(import.meta.dirname ?? ".", "fixtures", "tiny-gpt2-zh");
const tok = await BertTokenizer.fromDir(join(FIXTURE, "model"));
// as the notebook's tokenizer in memory, which padded the fixture's rows: pad <|pad|> (loaded alone, model/'s
// stale special_tokens_map.json makes the pad [PAD], as in Python); the additions themselves are all there
if (tok.prepareForSft() !== 0) throw new Error("the fixture's model/ lacks the SFT tokens");
const record = generateClassificationRecords(1, 42)[0]!;
const ESC = "\x1b[";

describe("buildMaskingView", () => {
  test("counts one synthesized record: only the answer's tokens are supervised", () => {
    const ex = processExample(toMessages(record), tok, { maxLength: 256, mask: "assistant" })!;
    const view = buildMaskingView(ex, tok);
    // the supervised tokens are exactly the answer's tokens, in order, at the end before <|im_end|> \n [SEP]
    const answer = tok.encode(record.response, { addSpecialTokens: false }).ids;
    expect(answer.length).toBeGreaterThan(0);
    expect(view.total).toBe(ex.inputIds.length);
    expect(view.total - view.masked).toBe(answer.length);
    expect(view.tokens.filter((t) => t.supervised).map((t) => t.id)).toEqual(answer);
    expect(view.tokens[0]!.token).toBe("[CLS]");
    expect(view.tokens[1]!.token).toBe("<|im_start|>");
    const [m, c] = maskingStatsLines(view);
    const pct = (n: number) => ((100 * n) / view.total).toFixed(1);
    expect(m).toBe(`Masked tokens: ${view.masked}/${view.total} (${pct(view.masked)}%)`);
    expect(c).toBe(`Loss computed on: ${answer.length}/${view.total} (${pct(answer.length)}%)`);
  });

  test("assistant+eos also supervises the closing <|im_end|>", () => {
    const a = buildMaskingView(processExample(toMessages(record), tok, { maxLength: 256, mask: "assistant" })!, tok);
    const e = buildMaskingView(
      processExample(toMessages(record), tok, { maxLength: 256, mask: "assistant+eos" })!,
      tok,
    );
    expect(e.total).toBe(a.total);
    expect(e.masked).toBe(a.masked - 1);
    const last = e.tokens.filter((t) => t.supervised).at(-1)!;
    expect(last.token).toBe("<|im_end|>");
  });

  test("padding is left out, as the notebook's valid_len (fixture rows padded with <|pad|> by HF)", async () => {
    const bytes = new Uint8Array(await readFile(join(FIXTURE, "reference.safetensors")));
    const t = readSafetensors(bytes, "reference.safetensors");
    const ids = t.get("input_ids")!, labels = t.get("labels")!, attn = t.get("attention_mask")!;
    const T = ids.shape[1]!;
    for (let b = 0; b < ids.shape[0]!; b++) {
      const row = { inputIds: ids.data.subarray(b * T, (b + 1) * T), labels: labels.data.subarray(b * T, (b + 1) * T) };
      const view = buildMaskingView(row, tok);
      const real = [...attn.data.subarray(b * T, (b + 1) * T)].filter((x) => x === 1).length;
      let masked = 0;
      for (let i = 0; i < real; i++) if (row.labels[i] === -100) masked++;
      expect(view.total).toBe(real);
      expect(view.masked).toBe(masked);
    }
  });

  test("mismatched lengths and an all-padding example are errors", () => {
    expect(() => buildMaskingView({ inputIds: [1, 2], labels: [1] }, tok)).toThrow("2 input ids but 1 labels");
    const pad = tok.padTokenId;
    expect(() => buildMaskingView({ inputIds: [pad, pad], labels: [-100, -100] }, tok)).toThrow("no tokens");
  });
});

describe("renderMaskingConsole", () => {
  const ex = processExample(toMessages(record), tok, { maxLength: 256, mask: "assistant" })!;
  const view = buildMaskingView(ex, tok);

  test("with colour: the notebook's header, 50 coloured tokens, then the counts", () => {
    const out = renderMaskingConsole(view, { color: true });
    const lines = out.split("\n");
    expect(lines.slice(0, 5)).toEqual([
      "Loss Masking Visualization:",
      "=".repeat(60),
      "Green = Loss computed (assistant)",
      "Red = Loss masked (user/system)",
      "=".repeat(60),
    ]);
    const row = lines[5]!;
    const shown = Math.min(50, view.total);
    const red = row.split(`${ESC}91m`).length - 1;
    const green = row.split(`${ESC}92m`).length - 1;
    expect(red + green).toBe(shown);
    expect(green).toBe(view.tokens.slice(0, 50).filter((t) => t.supervised).length);
    expect(row.startsWith(`${ESC}91m[CLS]${ESC}0m ${ESC}91m<|im_start|>${ESC}0m `)).toBe(true);
    expect(lines.slice(6)).toEqual(["", "", ...maskingStatsLines(view)]);
  });

  test("the limit shows the answer's green tokens when it reaches them", () => {
    const out = renderMaskingConsole(view, { color: true, limit: view.total });
    expect(out.split(`${ESC}92m`).length - 1).toBe(view.total - view.masked);
  });

  test("without colour: no escape codes, supervised tokens marked «…»", () => {
    const out = renderMaskingConsole(view, { color: false, limit: view.total });
    expect(out.includes("\x1b")).toBe(false);
    expect(out).toContain("«token» = Loss computed (assistant)");
    const marked = out.split("\n")[5]!.match(/«[^»]*»/g) ?? [];
    expect(marked).toHaveLength(view.total - view.masked);
  });
});

describe("renderMaskingHtml", () => {
  const view = buildMaskingView(
    processExample(toMessages(record), tok, { maxLength: 256, mask: "assistant" })!,
    tok,
  );
  const html = renderMaskingHtml(view, { title: "A <b> & title", details: [["Task", "<script>"]] });

  test("every token is a span; special tokens are escaped", () => {
    expect(html.startsWith("<!DOCTYPE html>")).toBe(true);
    expect(html.split('class="tok sup"').length - 1).toBe(view.total - view.masked + 1); // + the legend
    expect(html.split('class="tok mask"').length - 1).toBe(view.masked + 1);
    expect(html).toContain(">&lt;|im_start|&gt;</span>");
    expect(html.includes("<|im_start|>")).toBe(false);
    expect(html).toContain("<title>A &lt;b&gt; &amp; title</title>");
    expect(html).toContain("<td>&lt;script&gt;</td>");
    expect(html.includes("<script")).toBe(false);
    for (const line of maskingStatsLines(view)) expect(html).toContain(line);
  });

  test("escapeHtml covers the five characters", () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe("&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  });
});
