/**
 * The byte-level BPE tokenizer (the original GPT-2's family) against what Python's transformers 5 +
 * tokenizers give on the fixture's tiny BPE (tests/fixtures/tiny-gpt2-bpe, made by make_bpe_fixture.py):
 * ids, tokens, offsets and decodings of 560 strings (English in mixed case, code, runs of whitespace and
 * newlines, emoji, CJK, accents, special tokens inside text), loaded from tokenizer.json, from
 * vocab.json + merges.txt, and after the SFT additions. Python's offsets are code points, ours UTF-16.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ByteLevelBpeTokenizer, splitGpt2 } from "../src/tokenizer/byte_level.ts";
import { loadTokenizer, tokenizerFromFiles } from "../src/tokenizer/load.ts";
import type { Tokenizer } from "../src/tokenizer/types.ts";

const FIXTURE = join(import.meta.dirname ?? ".", "fixtures", "tiny-gpt2-bpe");

interface Case {
  text: string;
  ids: number[];
  offsets: [number, number][];
  decoded: string;
  decoded_skip_special: string;
  offsets_vocab?: [number, number][];
  ids_sft?: number[];
  offsets_sft?: [number, number][];
  decoded_sft?: string;
  decoded_skip_special_sft?: string;
}
interface Table {
  vocab_size: number;
  vocab_size_vocab: number;
  sft: { added: number; vocab_size: number; pad_token_id: number; im_start: number; im_end: number };
  cases: Case[];
  decode_each: string[];
  tokens: string[];
}
const table = JSON.parse(readFileSync(join(FIXTURE, "tokenization.json"), "utf8")) as Table;

function toUtf16(text: string, offsets: [number, number][]): [number, number][] {
  const starts: number[] = [0];
  for (const ch of text) starts.push(starts[starts.length - 1]! + ch.length);
  return offsets.map(([a, b]) => [starts[a]!, starts[b]!]);
}

/** Every case of the table against `tok`; `pick` chooses the expected values of the variant. */
function check(tok: Tokenizer, pick: (c: Case) => Omit<Case, "text">): void {
  expect(table.cases.length).toBeGreaterThanOrEqual(500);
  const wrong: string[] = [];
  for (const c of table.cases) {
    const want = pick(c);
    const got = tok.encode(c.text);
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    const problems = [
      same(got.ids, want.ids) ? "" : `ids ${JSON.stringify(got.ids)} vs ${JSON.stringify(want.ids)}`,
      same(got.offsets, toUtf16(c.text, want.offsets)) ? "" : `offsets ${JSON.stringify(got.offsets)}`,
      tok.decode(want.ids) === want.decoded ? "" : `decoded ${JSON.stringify(tok.decode(want.ids))}`,
      tok.decode(want.ids, { skipSpecialTokens: true }) === want.decoded_skip_special ? "" : "decoded (skip special)",
    ].filter((p) => p !== "");
    if (problems.length > 0 && wrong.length < 5) wrong.push(`${JSON.stringify(c.text)}: ${problems.join("; ")}`);
  }
  expect(wrong).toEqual([]);
}

describe("byte-level BPE tokenizer against Python", () => {
  test("model/ (tokenizer.json): ids, offsets and decodings of every string", async () => {
    const tok = await loadTokenizer(join(FIXTURE, "model"));
    expect(tok instanceof ByteLevelBpeTokenizer).toBe(true);
    expect(tok.vocabSize).toBe(table.vocab_size);
    expect([tok.bosTokenId, tok.eosTokenId, tok.unkTokenId]).toEqual([0, 0, 0]);
    check(tok, (c) => c);
  });

  test("model-vocab/ (vocab.json + merges.txt, offsets not trimmed)", async () => {
    const tok = await loadTokenizer(join(FIXTURE, "model-vocab"));
    expect(tok.vocabSize).toBe(table.vocab_size_vocab);
    check(tok, (c) => ({ ...c, offsets: c.offsets_vocab ?? c.offsets }));
  });

  test("the SFT additions: a pad token and the two ChatML tokens, as Python adds them", async () => {
    const tok = await loadTokenizer(join(FIXTURE, "model"));
    expect(() => tok.padTokenId).toThrow("has no pad token");
    expect(tok.prepareForSft()).toBe(table.sft.added);
    expect(tok.vocabSize).toBe(table.sft.vocab_size);
    expect([tok.padTokenId, tok.tokenToId("<|im_start|>"), tok.tokenToId("<|im_end|>")]).toEqual([
      table.sft.pad_token_id,
      table.sft.im_start,
      table.sft.im_end,
    ]);
    check(tok, (c) => ({
      ids: c.ids_sft ?? c.ids,
      offsets: c.offsets_sft ?? c.offsets,
      decoded: c.decoded_sft ?? c.decoded,
      decoded_skip_special: c.decoded_skip_special_sft ?? c.decoded_skip_special,
    }));
    expect(tok.prepareForSft()).toBe(0);
  });

  test("tokens and the decoding of each id alone", async () => {
    const tok = await loadTokenizer(join(FIXTURE, "model"));
    expect(table.tokens.map((_, id) => tok.idToToken(id))).toEqual(table.tokens);
    expect(table.decode_each.map((_, id) => tok.decode([id]))).toEqual(table.decode_each);
  });

  test("saved after the SFT additions, it loads again with the same ids", async () => {
    const tok = await loadTokenizer(join(FIXTURE, "model"));
    tok.prepareForSft();
    const files = tok.saveFiles();
    expect(Object.keys(files).sort()).toEqual(["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]);
    const config = JSON.parse(files["tokenizer_config.json"]!);
    expect([config.tokenizer_class, config.pad_token, config.eos_token, config.extra_special_tokens]).toEqual([
      "GPT2Tokenizer",
      "<|pad|>",
      "<|endoftext|>",
      ["<|im_start|>", "<|im_end|>"],
    ]);
    const again = tokenizerFromFiles({
      tokenizerJson: files["tokenizer.json"],
      tokenizerConfig: files["tokenizer_config.json"],
      specialTokensMap: files["special_tokens_map.json"],
      source: "saved",
    });
    expect(again.vocabSize).toBe(table.sft.vocab_size);
    expect(again.padTokenId).toBe(table.sft.pad_token_id);
    for (const c of table.cases.slice(0, 100)) expect(again.encode(c.text).ids).toEqual(c.ids_sft ?? c.ids);
  });

  test("maxLength truncates from the right (GPT-2 adds no framing tokens)", async () => {
    const tok = await loadTokenizer(join(FIXTURE, "model"));
    const full = tok.encode("Hello world! This is a tiny corpus.");
    const cut = tok.encode("Hello world! This is a tiny corpus.", { maxLength: 3 });
    expect(cut.ids).toEqual(full.ids.slice(0, 3));
    expect(cut.offsets).toEqual(full.offsets.slice(0, 3));
  });

  test("GPT-2's split pattern", () => {
    const pieces = (s: string) => splitGpt2(s).map(([a, b]) => s.slice(a, b));
    expect(pieces("Hello world's  end\n\n  x")).toEqual(["Hello", " world", "'s", " ", " end", "\n\n ", " x"]);
    expect(pieces("a1 22 !! 你好 😀")).toEqual(["a", "1", " 22", " !!", " 你好", " 😀"]);
    expect(pieces("   ")).toEqual(["   "]);
    expect(pieces("'S'll")).toEqual(["'", "S", "'ll"]);
  });

  test("bad files name the file and field", () => {
    const json = JSON.parse(readFileSync(join(FIXTURE, "model", "tokenizer.json"), "utf8"));
    const bad = (edit: (j: Record<string, unknown>) => void) => {
      const j = structuredClone(json);
      edit(j);
      return () => tokenizerFromFiles({ tokenizerJson: JSON.stringify(j), source: "m" });
    };
    expect(bad((j) => (j.decoder = { type: "WordPiece" }))).toThrow(
      'Unsupported tokenizer.json (m): decoder.type is "WordPiece", expected "ByteLevel"',
    );
    expect(bad((j) => ((j.pre_tokenizer as Record<string, unknown>).add_prefix_space = true))).toThrow(
      "pre_tokenizer.add_prefix_space is true",
    );
    expect(() => tokenizerFromFiles({ vocabJson: '{"a": 0}', mergesTxt: "#version: 0.2\na b c\n", source: "m" }))
      .toThrow("Cannot read merges.txt (m) line 2: expected two tokens");
  });
});
