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

import { BertNormalizer, BertPreTokenizer } from "@huggingface/tokenizers";
import type { BertNormalizerJson } from "./bert_json.ts";
import * as T from "./unicode_tables.ts";

/**
 * A set of code points as sorted, inclusive [first, last] pairs, read from a table of unicode_tables.ts;
 * a bitmap answers for the Basic Multilingual Plane (nearly every character of real text), a binary
 * search above it.
 */
export class CodePointSet {
  #bounds: Uint32Array;
  #bmp = new Uint8Array(0x10000 / 8);
  constructor(table: string) {
    const words = table.split(" ").filter((w) => w.length > 0);
    this.#bounds = new Uint32Array(words.length * 2);
    let last = -1;
    for (const [i, w] of words.entries()) {
      const [gap, length] = w.split(",").map((x) => parseInt(x, 36)) as [number, number];
      const first = last + 1 + gap;
      last = first + length;
      this.#bounds[2 * i] = first;
      this.#bounds[2 * i + 1] = last;
      for (let cp = first; cp <= Math.min(last, 0xffff); cp++) this.#bmp[cp >> 3]! |= 1 << (cp & 7);
    }
  }
  has(cp: number): boolean {
    if (cp <= 0xffff) return (this.#bmp[cp >> 3]! & (1 << (cp & 7))) !== 0;
    const b = this.#bounds;
    let lo = 0, hi = b.length / 2 - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (cp < b[2 * mid]!) hi = mid - 1;
      else if (cp > b[2 * mid + 1]!) lo = mid + 1;
      else return true;
    }
    return false;
  }
}

/** A code point → string map read from a table of unicode_tables.ts. */
function codePointMap(table: string): Map<number, string> {
  const map = new Map<number, string>();
  let last = -1;
  for (const w of table.split(" ")) {
    if (w.length === 0) continue;
    const [gap, ...deltas] = w.split(",").map((x) => parseInt(x, 36)) as [number, ...number[]];
    const cp = last + 1 + gap;
    map.set(cp, String.fromCodePoint(...deltas.map((d) => cp + d)));
    last = cp;
  }
  return map;
}

const CLEAN_REMOVED = new CodePointSet(T.CLEAN_REMOVED);
const CLEAN_SPACE = new CodePointSet(T.CLEAN_SPACE);
const CHINESE = new CodePointSet(T.CHINESE);
const STRIP_REMOVED = new CodePointSet(T.STRIP_REMOVED);
const STRIP_MAP = codePointMap(T.STRIP_MAP);
const LOWER_MAP = codePointMap(T.LOWER_MAP);
const SPLIT_WHITESPACE = new CodePointSet(T.SPLIT_WHITESPACE);
const SPLIT_PUNCTUATION = new CodePointSet(T.SPLIT_PUNCTUATION);

/** The CJK ideographs BertNormalizer isolates (`handle_chinese_chars`): the blocks Rust `tokenizers` names. */
export function isChineseChar(cp: number): boolean {
  return CHINESE.has(cp);
}

/** A precomposed Hangul syllable's canonical decomposition (Unicode ch. 3.12), or undefined. */
function hangulDecomposition(cp: number): string | undefined {
  const s = cp - 0xac00;
  if (s < 0 || s >= 11172) return undefined;
  const trail = s % 28;
  const jamo = [0x1100 + Math.floor(s / 588), 0x1161 + Math.floor((s % 588) / 28)];
  if (trail !== 0) jamo.push(0x11a7 + trail);
  return String.fromCodePoint(...jamo);
}

/**
 * Normalize one code point (`ch`) as BertNormalizer does, in Rust's order: clean text (drop NUL, U+FFFD and
 * control, format and private-use characters, map whitespace to a space; `\t\n\r` count as whitespace),
 * surround CJK ideographs with spaces, strip accents (canonical decomposition, nonspacing marks dropped)
 * where `strip_accents` is true or is null while lowercasing, then lowercase per character (so there is no
 * final-sigma rule, as in Rust's `char::to_lowercase`). The classes and mappings are Rust's own
 * (unicode_tables.ts): an unassigned code point such as U+0378 is kept, and WordPiece makes it [UNK].
 * A string's decomposition is taken one code point at a time: the canonical reordering of a run of
 * combining marks matters only among marks that are kept, none of which the SFT data has.
 */
function normalizeCodePoint(ch: string, o: BertNormalizerJson): string {
  const cp = ch.codePointAt(0)!;
  if (o.clean_text) {
    if (CLEAN_REMOVED.has(cp)) return "";
    if (CLEAN_SPACE.has(cp)) return " ";
  }
  if (o.strip_accents ?? o.lowercase) {
    ch = STRIP_REMOVED.has(cp) ? "" : STRIP_MAP.get(cp) ?? hangulDecomposition(cp) ?? ch;
  }
  // (Rust isolates CJK before stripping accents; a CJK compatibility ideograph decomposes to another one)
  if (o.handle_chinese_chars && CHINESE.has(cp)) ch = ` ${ch} `;
  if (o.lowercase) {
    let lower = "";
    for (const c of ch) lower += LOWER_MAP.get(c.codePointAt(0)!) ?? c;
    ch = lower;
  }
  return ch;
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

/** BertPreTokenizer: split on whitespace (removed) and punctuation (isolated); returns [start, end) spans. */
export function preTokenizeBert(text: string): [number, number][] {
  const out: [number, number][] = [];
  let start = -1;
  for (let i = 0; i < text.length;) {
    const cp = text.codePointAt(i)!;
    const n = cp > 0xffff ? 2 : 1;
    const white = SPLIT_WHITESPACE.has(cp);
    if (white || SPLIT_PUNCTUATION.has(cp)) {
      if (start >= 0) out.push([start, i]);
      start = -1;
      if (!white) out.push([i, i + n]);
    } else if (start < 0) {
      start = i;
    }
    i += n;
  }
  if (start >= 0) out.push([start, text.length]);
  return out;
}

/** tokenizers.js's BertPreTokenizer with Rust's whitespace and punctuation classes (see {@link preTokenizeBert}). */
export class RustBertPreTokenizer extends BertPreTokenizer {
  override pre_tokenize_text(text: string): string[] {
    return preTokenizeBert(text).map(([s, e]) => text.slice(s, e));
  }
}
