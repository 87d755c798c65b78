// ChatML formatting and the notebook's loss mask. The labels are checked against the fixture
// (tests/fixtures/tiny-gpt2-zh, written by make_fixture.py's `encode` with Hugging Face's fast BERT
// tokenizer): its `texts`, the input ids / offsets of those texts in reference.json `tokenization`, and
// `labels` / `labels_eos` in reference.safetensors. Integer labels: compared exactly, no tolerance.
import { describe, expect, test } from "bun:test";
import { readFile } from "node:fs/promises";
import { chatmlWithSpans, formatChatml, labelsFromOffsets, type Message, promptFor } from "../src/data/chatml.ts";
import { parseChatml } from "./helpers/parse_chatml.ts";

const FIXTURE = new URL("./fixtures/tiny-gpt2-zh/", import.meta.url);

interface TokEntry {
  text: string;
  ids: number[];
  offsets: [number, number][];
  tokens: string[];
}

/** Just enough safetensors to read the I32 tensors of the fixture. */
function readI32Tensors(bytes: Uint8Array): Map<string, { shape: number[]; data: Int32Array }> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const out = new Map<string, { shape: number[]; data: Int32Array }>();
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__" || t.dtype !== "I32") continue;
    const [a, b] = t.data_offsets;
    const data = new Int32Array((b - a) / 4);
    for (let i = 0; i < data.length; i++) data[i] = view.getInt32(8 + n + a + 4 * i, true);
    out.set(name, { shape: t.shape, data });
  }
  return out;
}

describe("ChatML", () => {
  test("formatChatml is the notebook's format_conversation", () => {
    const conv: Message[] = [
      { role: "system", content: "You are a helpful AI assistant." },
      { role: "user", content: "What is Python?" },
      {
        role: "assistant",
        content: "Python is a high-level programming language known for its simplicity and readability.",
      },
    ];
    expect(formatChatml(conv)).toBe(
      "<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n" +
        "<|im_start|>user\nWhat is Python?<|im_end|>\n" +
        "<|im_start|>assistant\nPython is a high-level programming language known for its simplicity and readability.<|im_end|>\n",
    );
    expect(formatChatml([])).toBe("");
  });

  test("promptFor is the notebook's generation prompt", () => {
    expect(promptFor("你好")).toBe("<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n");
  });

  test("spans in each mode, in UTF-16 units", () => {
    // 😀 is two UTF-16 units: spans count code units, as JS strings and the tokenizer's offsets do
    const msgs: Message[] = [
      { role: "system", content: "s" },
      { role: "user", content: "问😀" },
      { role: "assistant", content: "答😀" },
      { role: "user", content: "再" },
      { role: "assistant", content: "好" },
    ];
    const a = chatmlWithSpans(msgs, "assistant");
    expect(a.text).toBe(formatChatml(msgs));
    expect(a.spans.map(([s, e]) => a.text.slice(s, e))).toEqual(["答😀", "好"]);
    const eos = chatmlWithSpans(msgs, "assistant+eos");
    expect(eos.spans.map(([s, e]) => eos.text.slice(s, e))).toEqual(["答😀<|im_end|>", "好<|im_end|>"]);
    expect(chatmlWithSpans(msgs, "none").spans).toEqual([[0, a.text.length]]);
    expect(chatmlWithSpans([{ role: "user", content: "x" }], "assistant").spans).toEqual([]);
    expect(() => chatmlWithSpans(msgs, "all" as "none")).toThrow('unknown mode "all"');
  });

  test("parseChatml inverts formatChatml and rejects malformed text", () => {
    const msgs: Message[] = [
      { role: "system", content: "" },
      { role: "user", content: "多行\n内容" },
      { role: "assistant", content: '{"name":"张强"}' },
    ];
    expect(parseChatml(formatChatml(msgs))).toEqual(msgs);
    expect(parseChatml("<|im_start|>user\nhi<|im_end|>")).toEqual([{ role: "user", content: "hi" }]);
    expect(parseChatml("")).toEqual([]);
    expect(() => parseChatml("hello")).toThrow("expected <|im_start|> at character 0");
    expect(() => parseChatml("<|im_start|>user\nhi")).toThrow("not closed by <|im_end|>");
    expect(() => parseChatml("<|im_start|>user\nhi<|im_end|>x")).toThrow("expected a newline after <|im_end|>");
    expect(() => parseChatml("<|im_start|>user")).toThrow("no newline after its role");
  });

  test("labelsFromOffsets: overlap rule, (0,0) never supervised", () => {
    const ids = [2, 10, 11, 12, 13, 3, 0];
    const offsets: [number, number][] = [[0, 0], [0, 4], [4, 6], [6, 8], [8, 9], [0, 0], [0, 0]];
    // span [5, 8) overlaps [4,6) and [6,8); [8,9) only touches its end
    expect(labelsFromOffsets(ids, offsets, [[5, 8]])).toEqual([-100, -100, 11, 12, -100, -100, -100]);
    // a span starting at 0 still skips the (0,0) specials
    expect(labelsFromOffsets(ids, offsets, [[0, 9]])).toEqual([-100, 10, 11, 12, 13, -100, -100]);
    expect(labelsFromOffsets(ids, offsets, [])).toEqual([-100, -100, -100, -100, -100, -100, -100]);
    expect(() => labelsFromOffsets([1, 2], [[0, 1]], [])).toThrow("2 ids but 1 offsets");
  });
});

// loaded at the top level: the Deno shim registers tests synchronously, so describe() cannot be async
const ref = JSON.parse(await readFile(new URL("reference.json", FIXTURE), "utf-8")) as {
  texts: string[];
  tokenization: TokEntry[];
};
const tensors = readI32Tensors(await readFile(new URL("reference.safetensors", FIXTURE)));
const T = 160;
const row = (name: string, b: number) => Array.from(tensors.get(name)!.data.subarray(b * T, (b + 1) * T));

describe("the fixture's labels (make_fixture.py encode, max_length 160)", () => {
  for (let b = 0; b < ref.texts.length; b++) {
    test(`example ${b}`, () => {
      const text = ref.texts[b]!;
      const tok = ref.tokenization[b]!;
      expect(tok.text).toBe(text);
      // Python's offsets count code points; JS's count UTF-16 units. They agree when nothing lies outside the BMP.
      expect(/[\uD800-\uDFFF]/.test(text)).toBe(false);

      const messages = parseChatml(text);
      expect(formatChatml(messages)).toBe(text);
      expect(messages.map((m) => m.role)).toEqual(
        b === 2 ? ["system", "user", "assistant", "user", "assistant"] : ["user", "assistant"],
      );

      // the tokenizer truncates to 160 keeping [CLS] … [SEP], then pads with <|pad|> (offset (0,0))
      const padId = row("input_ids", b)[T - 1]!;
      const n = tok.ids.length;
      let ids = tok.ids, offsets = tok.offsets;
      if (n > T) {
        ids = [...tok.ids.slice(0, T - 1), tok.ids[n - 1]!];
        offsets = [...tok.offsets.slice(0, T - 1), [0, 0]];
      }
      const kept = ids.length;
      expect(row("attention_mask", b).filter((v) => v === 1)).toHaveLength(kept);
      while (ids.length < T) {
        ids = [...ids, padId];
        offsets = [...offsets, [0, 0]];
      }
      expect(ids).toEqual(row("input_ids", b));

      const a = chatmlWithSpans(messages, "assistant");
      expect(a.text).toBe(text);
      const labels = labelsFromOffsets(ids, offsets, a.spans);
      expect(labels).toEqual(row("labels", b));
      const eos = chatmlWithSpans(messages, "assistant+eos");
      const labelsEos = labelsFromOffsets(ids, offsets, eos.spans);
      expect(labelsEos).toEqual(row("labels_eos", b));

      // sanity: something is supervised, and "+eos" adds exactly the kept closing <|im_end|> tokens
      const count = (xs: number[]) => xs.filter((x) => x !== -100).length;
      expect(count(labels)).toBeGreaterThan(0);
      const closings = eos.spans.filter(([, e]) => offsets.slice(0, kept).some(([s, oe]) => oe === e && s < e)).length;
      expect(count(labelsEos) - count(labels)).toBe(closings);
    });
  }
});
