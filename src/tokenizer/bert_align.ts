/**
 * The pieces of the BERT pipeline that must track positions, so that every token gets the span of the
 * input it came from (tokenizers.js returns ids and tokens but no offsets):
 * - a BertNormalizer that works one code point at a time, with the semantics of the Rust `tokenizers`
 *   crate, and records for every UTF-16 unit of its output the span of input it came from;
 * - the added-token splitter (leftmost-longest dictionary match, as tokenizers.js and Rust both do);
 * - BertPreTokenizer's word split, with positions.
 *
 * Offsets are JS string (UTF-16) indices, so that `text.slice(start, end)` is the token's source.
 * @module
 */

import { BertNormalizer } from "@huggingface/tokenizers";
import type { BertNormalizerJson } from "./bert_json.ts";

/** The CJK ideograph blocks BertNormalizer isolates (`handle_chinese_chars`), as in Rust `tokenizers`. */
export function isChineseChar(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b920 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

const CONTROL = /^[\p{Cc}\p{Cf}\p{Co}\p{Cs}\p{Cn}]$/u;
const WHITE_SPACE = /^\p{White_Space}$/u;
const NONSPACING_MARK = /\p{Mn}/gu;

/**
 * Normalize one code point (`ch`) as BertNormalizer does, in Rust's order: clean text (drop NUL, U+FFFD and
 * control/format/unassigned/private-use characters, map whitespace to a space; `\t\n\r` count as
 * whitespace), surround CJK ideographs with spaces, strip accents (NFD, drop nonspacing marks) where
 * `strip_accents` is true or is null while lowercasing, then lowercase per character (so there is no
 * final-sigma rule, as in Rust's `char::to_lowercase`).
 */
function normalizeCodePoint(ch: string, o: BertNormalizerJson): string {
  const cp = ch.codePointAt(0)!;
  let s = ch;
  if (o.clean_text) {
    if (ch === "\t" || ch === "\n" || ch === "\r") return " ";
    if (cp === 0 || cp === 0xfffd || CONTROL.test(ch)) return "";
    if (WHITE_SPACE.test(ch)) return " ";
  }
  if (o.handle_chinese_chars && isChineseChar(cp)) s = ` ${s} `;
  if (o.strip_accents ?? o.lowercase) s = s.normalize("NFD").replace(NONSPACING_MARK, "");
  if (o.lowercase) {
    let lower = "";
    for (const c of s) lower += c.toLowerCase();
    s = lower;
  }
  return s;
}

/** A normalized string with, for each of its UTF-16 units, the [start, end) span of input it came from. */
export interface Aligned {
  text: string;
  starts: number[];
  ends: number[];
}

/** Normalize `text[from, to)` with alignments (spans are indices into `text`). */
export function normalizeAligned(text: string, from: number, to: number, o: BertNormalizerJson): Aligned {
  let out = "";
  const starts: number[] = [];
  const ends: number[] = [];
  let i = from;
  while (i < to) {
    const cp = text.codePointAt(i)!;
    const n = cp > 0xffff ? 2 : 1;
    const s = normalizeCodePoint(text.slice(i, i + n), o);
    out += s;
    for (let k = 0; k < s.length; k++) {
      starts.push(i);
      ends.push(i + n);
    }
    i += n;
  }
  return { text: out, starts, ends };
}

/** Normalize a whole string (no alignments). */
export function normalizeBert(text: string, o: BertNormalizerJson): string {
  let out = "";
  for (const ch of text) out += normalizeCodePoint(ch, o);
  return out;
}

/**
 * tokenizers.js's BertNormalizer with Rust `tokenizers` semantics: the library's version tests UTF-16
 * units for CJK ideographs (so U+20000 and up, e.g. 𠀀, are not isolated), lowercases before stripping
 * accents, lowercases whole strings (final sigma) and keeps unassigned code points. The tokenizer swaps
 * this in for the library's so that ids and offsets come from one definition.
 */
export class RustBertNormalizer extends BertNormalizer {
  #options: BertNormalizerJson;
  /** @param config the `normalizer` section of tokenizer.json */
  constructor(config: BertNormalizerJson) {
    super({ ...config, strip_accents: config.strip_accents ?? undefined });
    this.#options = config;
  }
  override normalize(text: string): string {
    return normalizeBert(text, this.#options);
  }
}

/** A trie node: children by UTF-16 unit; `end` is the length of the word ending here (0: none). */
interface TrieNode {
  next: Map<string, TrieNode>;
  end: number;
}

/** A leftmost-longest dictionary matcher over UTF-16 units, as tokenizers.js's DictionarySplitter. */
export class TokenSplitter {
  #root: TrieNode = { next: new Map(), end: 0 };

  /** @param words the dictionary */
  constructor(words: Iterable<string>) {
    for (const w of words) {
      let node = this.#root;
      for (let i = 0; i < w.length; i++) {
        const c = w[i]!;
        let child = node.next.get(c);
        if (child === undefined) node.next.set(c, child = { next: new Map(), end: 0 });
        node = child;
      }
      node.end = w.length;
    }
  }

  /** Split `text` into [start, end, isMatch] pieces covering it (empty pieces left out). */
  split(text: string): [number, number, boolean][] {
    const out: [number, number, boolean][] = [];
    let start = 0;
    let i = 0;
    while (i < text.length) {
      let node: TrieNode | undefined = this.#root;
      let match = 0;
      for (let j = i; j < text.length; j++) {
        node = node.next.get(text[j]!);
        if (node === undefined) break;
        if (node.end > 0) match = node.end;
      }
      if (match > 0) {
        if (i > start) out.push([start, i, false]);
        out.push([i, i + match, true]);
        i += match;
        start = i;
      } else {
        i++;
      }
    }
    if (start < text.length) out.push([start, text.length, false]);
    return out;
  }
}

/** The punctuation BertPreTokenizer isolates: Unicode P* and all ASCII punctuation (tokenizers.js's class). */
const PUNCT = "\\p{P}\\u0021-\\u002F\\u003A-\\u0040\\u005B-\\u0060\\u007B-\\u007E";
const WORDS = new RegExp(`[^\\s${PUNCT}]+|[${PUNCT}]`, "gu");

/** BertPreTokenizer: split on whitespace (removed) and punctuation (isolated); returns [start, end) spans. */
export function preTokenizeBert(text: string): [number, number][] {
  const out: [number, number][] = [];
  for (const m of text.matchAll(WORDS)) out.push([m.index, m.index + m[0].length]);
  return out;
}
