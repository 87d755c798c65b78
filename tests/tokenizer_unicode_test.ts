/**
 * The BERT normalizer and word split on every code point, against what Python's `tokenizers` (the Rust
 * library) does to each one alone (tests/fixtures/tokenizer/unicode.json, made by
 * tests/fixtures/make_tokenizer_tables.py). Rust's character classes are those of its own Unicode tables,
 * not the JS engine's: U+0378 (unassigned) is kept and becomes [UNK], where `\p{Cn}` would drop it.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { BertNormalizerJson } from "../src/tokenizer/bert_json.ts";
import { normalizeBert, preTokenizeBert } from "../src/tokenizer/bert_align.ts";
import { BertTokenizer } from "../src/tokenizer/tokenizer.ts";
import { splitGpt2 } from "../src/tokenizer/byte_level.ts";

const FIXTURES = join(import.meta.dirname ?? ".", "fixtures");

type Run = [number, number, string];
interface Step {
  runs: Run[];
  spelled: Record<string, string>;
}
interface UnicodeTable {
  versions: Record<string, string>;
  clean: Step;
  strip: Step;
  lower: Step;
  split: [number, number, number][];
  gpt2: [number, number, string][];
}
const table = JSON.parse(readFileSync(join(FIXTURES, "tokenizer", "unicode.json"), "utf8")) as UnicodeTable;

/** Each walk over all 1.1 M code points takes seconds (more on a busy machine). */
const WALK_TIMEOUT = 120_000;

const isSurrogate = (cp: number) => cp >= 0xd800 && cp <= 0xdfff;

/** Python's output for one code point, from a step's runs and spelled-out outputs. */
function expected(step: Step): (cp: number) => string {
  const kinds = new Map<number, string>();
  for (const [first, last, kind] of step.runs) for (let cp = first; cp <= last; cp++) kinds.set(cp, kind);
  return (cp) => {
    const ch = String.fromCodePoint(cp);
    const spelled = step.spelled[cp.toString(16).toUpperCase()];
    if (spelled !== undefined) return spelled;
    switch (kinds.get(cp) ?? "=") {
      case "=":
        return ch;
      case "-":
        return "";
      case "_":
        return " ";
      case "c":
        return ` ${ch} `;
      case "h": {
        const s = cp - 0xac00, t = s % 28;
        return String.fromCodePoint(0x1100 + Math.floor(s / 588), 0x1161 + Math.floor((s % 588) / 28)) +
          (t === 0 ? "" : String.fromCodePoint(0x11a7 + t));
      }
    }
    throw new Error(`unknown kind ${kinds.get(cp)} at U+${cp.toString(16)}`);
  };
}

/** Every code point where `ours` differs from `theirs`, as "U+XXXX: ours vs theirs" (the first 10). */
function mismatches(ours: (ch: string) => unknown, theirs: (cp: number) => unknown): string[] {
  const out: string[] = [];
  for (let cp = 0; cp <= 0x10ffff; cp++) {
    if (isSurrogate(cp)) continue;
    const [a, b] = [ours(String.fromCodePoint(cp)), theirs(cp)];
    if (a !== b && out.length < 10) out.push(`U+${cp.toString(16)}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  }
  return out;
}

const normalizer = (o: Partial<BertNormalizerJson>): BertNormalizerJson =>
  ({
    type: "BertNormalizer",
    clean_text: false,
    handle_chinese_chars: false,
    strip_accents: false,
    lowercase: false,
    ...o,
  }) as BertNormalizerJson;

describe("tokenizer: every code point as Rust's tokenizers treats it", () => {
  test("the table covers every code point's steps", () => {
    expect(table.clean.runs.length).toBeGreaterThan(10);
    expect(Object.keys(table.strip.spelled).length).toBeGreaterThan(1000);
    expect(Object.keys(table.lower.spelled).length).toBeGreaterThan(1000);
  });

  test("clean_text and handle_chinese_chars", () => {
    const o = normalizer({ clean_text: true, handle_chinese_chars: true });
    expect(mismatches((ch) => normalizeBert(ch, o), expected(table.clean))).toEqual([]);
  }, WALK_TIMEOUT);

  test("strip_accents (decomposition, nonspacing marks dropped)", () => {
    const o = normalizer({ strip_accents: true });
    expect(mismatches((ch) => normalizeBert(ch, o), expected(table.strip))).toEqual([]);
  }, WALK_TIMEOUT);

  test("lowercase", () => {
    const o = normalizer({ lowercase: true });
    expect(mismatches((ch) => normalizeBert(ch, o), expected(table.lower))).toEqual([]);
  }, WALK_TIMEOUT);

  test("BertPreTokenizer's whitespace and punctuation", () => {
    const pieces = new Map<number, number>();
    for (const [first, last, n] of table.split) for (let cp = first; cp <= last; cp++) pieces.set(cp, n);
    expect(mismatches((ch) => preTokenizeBert(`a${ch}b`).length, (cp) => pieces.get(cp) ?? 1)).toEqual([]);
  }, WALK_TIMEOUT);

  test("the letter, number and whitespace classes of GPT-2's split pattern", () => {
    const classes = new Map<number, string>();
    for (const [first, last, c] of table.gpt2) for (let cp = first; cp <= last; cp++) classes.set(cp, c);
    // each class, seen through the split: "a"+ch is one piece for a letter, "1"+ch for a number, and
    // "a"+ch+"a" three pieces for whitespace (ch alone, or "!"+ch one piece for the others)
    const ours = (ch: string) => {
      const n = (s: string) => splitGpt2(s).length;
      if (ch === " " || (n(ch + " ") === 1 && n(`a${ch}a`) === 3)) return "S";
      if (ch !== "'" && n(`a${ch}`) === 1) return "L";
      if (n(`1${ch}`) === 1) return "N";
      return "O";
    };
    expect(mismatches(ours, (cp) => classes.get(cp) ?? "O")).toEqual([]);
  }, WALK_TIMEOUT);

  test("an unassigned code point is kept and encodes as [UNK], as in Python", async () => {
    const tok = await BertTokenizer.fromDir(join(FIXTURES, "tiny-gpt2-zh", "model"));
    const enc = tok.encode("a\u0378b");
    expect(enc.ids).toEqual([2, 47, 1, 48, 3]);
    expect(enc.offsets).toEqual([[0, 0], [0, 1], [1, 2], [2, 3], [0, 0]]);
  });
});
