/**
 * The byte-level BPE tokenizer of the original GPT-2 (openai-community/gpt2, distilgpt2, gpt2-medium …
 * and the fine-tunes that share it), with Hugging Face `GPT2Tokenizer` (transformers 5) behaviour: ids,
 * tokens, offsets and decoding as Python gives them.
 *
 * The pipeline, as the Rust `tokenizers` runs it:
 * 1. added tokens (`<|endoftext|>`, the SFT additions) are split off the raw text;
 * 2. the rest is split by GPT-2's pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|
 *    \s+(?!\S)|\s+` (with the letter, number and whitespace classes of Rust's regex engine,
 *    unicode_tables.ts), then each piece's UTF-8 bytes become printable characters (byte 0x20 is `Ġ`);
 * 3. BPE merges each piece (tokenizers.js's BPE model);
 * 4. the ByteLevel post-processor trims the spaces off the offsets where `trim_offsets` is set.
 * A token may hold part of a character (an emoji is four bytes): its offsets are then the whole
 * character's, as in Python, so a loss mask over characters covers exactly the answer's tokens.
 * Offsets are JS string (UTF-16) indices.
 * @module
 */

import { Tokenizer as LibTokenizer } from "@huggingface/tokenizers";
import { type AddedTokenJson, resolveSpecialTokens, SPECIAL_ROLES, type SpecialRole } from "./bert_json.ts";
import {
  applySpecialTokens,
  parseJsonObject,
  registerAddedTokens,
  specialTokenNames,
  type SpecialTokensMap,
  specialTokensMapJson,
} from "./added_tokens.ts";
import { CodePointSet, TokenSplitter } from "./bert_align.ts";
import * as T from "./unicode_tables.ts";
import type { DecodeOptions, EncodeOptions, Encoding, SkippedToken, Tokenizer, TokenizerFiles } from "./types.ts";
import { cleanUpTokenization, SFT_SPECIAL_TOKENS } from "./types.ts";

/** GPT-2's byte ↔ character map: printable bytes stand for themselves, the others take U+0100 on. */
const BYTE_CHAR: string[] = (() => {
  const keep = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCharCode(keep(b) ? b : 256 + n++);
  return out;
})();
const CHAR_BYTE = new Map(BYTE_CHAR.map((c, b) => [c, b]));
const SPACE_CHAR = BYTE_CHAR[0x20]!;

const LETTER = new CodePointSet(T.GPT2_LETTER);
const NUMBER = new CodePointSet(T.GPT2_NUMBER);
const WHITESPACE = new CodePointSet(T.GPT2_WHITESPACE);

/** The GPT-2 pattern's class of the code point at `i`: letter, number, whitespace or other (-1: the end). */
function classAt(text: string, i: number): "L" | "N" | "S" | "O" | undefined {
  if (i >= text.length) return undefined;
  const cp = text.codePointAt(i)!;
  return LETTER.has(cp) ? "L" : NUMBER.has(cp) ? "N" : WHITESPACE.has(cp) ? "S" : "O";
}

/** The end of the run of code points of class `c` from `i`. */
function runEnd(text: string, i: number, c: string): number {
  while (i < text.length && classAt(text, i) === c) i += text.codePointAt(i)! > 0xffff ? 2 : 1;
  return i;
}

/** The contractions the pattern takes first, case-sensitive as in GPT-2. */
const CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];

/** Split `text` by GPT-2's pattern into [start, end) pieces covering it (leftmost first, as the regex). */
export function splitGpt2(text: string): [number, number][] {
  const out: [number, number][] = [];
  let i = 0;
  while (i < text.length) {
    let end = -1;
    const c = CONTRACTIONS.find((k) => text.startsWith(k, i));
    if (c !== undefined) end = i + c.length;
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional U+0020, then a run of one class
    for (const cls of ["L", "N", "O"] as const) {
      if (end >= 0) break;
      const j = text[i] === " " && classAt(text, i + 1) === cls ? i + 1 : i;
      if (classAt(text, j) === cls) end = runEnd(text, j, cls);
    }
    if (end < 0) {
      // whitespace: `\s+(?!\S)` leaves the last one before a non-space to the next piece; else `\s+`
      const run = runEnd(text, i, "S");
      const lastLength = text.codePointAt(run - 1)! > 0xffff ? 2 : 1;
      end = run === text.length || run - lastLength <= i ? run : run - lastLength;
    }
    out.push([i, end]);
    i = end;
  }
  return out;
}

/** The `model`, `pre_tokenizer` and other parts of a byte-level BPE tokenizer.json that this class reads. */
interface BpeTokenizerJson {
  version?: string;
  added_tokens: AddedTokenJson[];
  normalizer: null;
  pre_tokenizer: { type: "ByteLevel"; add_prefix_space: boolean; trim_offsets?: boolean; use_regex?: boolean };
  post_processor: { type: "ByteLevel"; add_prefix_space?: boolean; trim_offsets: boolean } | null;
  decoder: { type: "ByteLevel" } | null;
  model:
    & { type: "BPE"; vocab: Record<string, number>; merges: (string | [string, string])[] }
    & Record<string, unknown>;
  [key: string]: unknown;
}

/** Check that tokenizer.json is the byte-level BPE this class implements, naming the field that is not. */
export function checkByteLevelTokenizerJson(json: Record<string, unknown>, source: string): BpeTokenizerJson {
  const fail = (what: string): never => {
    throw new Error(`Unsupported tokenizer.json (${source}): ${what}`);
  };
  const model = json.model as Record<string, unknown> | undefined;
  if (model?.type !== "BPE") fail(`model.type is ${JSON.stringify(model?.type)}, expected "BPE"`);
  if (typeof model!.vocab !== "object" || model!.vocab === null) fail("model.vocab is not an object");
  if (!Array.isArray(model!.merges)) fail("model.merges is not a list");
  for (const k of ["dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix"]) {
    if (model![k] !== undefined && model![k] !== null && model![k] !== "") {
      fail(`model.${k} is ${JSON.stringify(model![k])}, expected null`);
    }
  }
  if (model!.byte_fallback === true) fail("model.byte_fallback is true, expected false");
  if (json.normalizer !== null && json.normalizer !== undefined) {
    fail(`normalizer is ${JSON.stringify((json.normalizer as { type?: unknown }).type)}, expected null`);
  }
  const pre = json.pre_tokenizer as Record<string, unknown> | null;
  if (pre?.type !== "ByteLevel") fail(`pre_tokenizer.type is ${JSON.stringify(pre?.type)}, expected "ByteLevel"`);
  if (pre!.use_regex === false) fail("pre_tokenizer.use_regex is false, expected true");
  if (pre!.add_prefix_space === true) fail("pre_tokenizer.add_prefix_space is true, expected false (GPT-2's)");
  const post = json.post_processor as Record<string, unknown> | null;
  if (post !== null && post !== undefined && post.type !== "ByteLevel") {
    fail(`post_processor.type is ${JSON.stringify(post.type)}, expected "ByteLevel" or null`);
  }
  const dec = json.decoder as Record<string, unknown> | null;
  if (dec?.type !== "ByteLevel") fail(`decoder.type is ${JSON.stringify(dec?.type)}, expected "ByteLevel"`);
  if (!Array.isArray(json.added_tokens)) fail("added_tokens is not a list");
  return { ...json, post_processor: post ?? null } as BpeTokenizerJson;
}

/** tokenizer.json for a repository that has only vocab.json + merges.txt, as transformers builds it. */
export function synthesiseByteLevelTokenizerJson(
  vocabJson: string,
  mergesTxt: string,
  source: string,
): BpeTokenizerJson {
  let vocab: unknown;
  try {
    vocab = JSON.parse(vocabJson);
  } catch (e) {
    throw new Error(`Cannot read vocab.json (${source}): ${(e as Error).message}`);
  }
  if (vocab === null || typeof vocab !== "object" || Array.isArray(vocab)) {
    throw new Error(`Cannot read vocab.json (${source}): not an object of token → id`);
  }
  for (const [t, id] of Object.entries(vocab)) {
    if (!Number.isInteger(id) || (id as number) < 0) {
      throw new Error(`Cannot read vocab.json (${source}): token ${JSON.stringify(t)} has id ${JSON.stringify(id)}`);
    }
  }
  const merges: [string, string][] = [];
  for (const [n, line] of mergesTxt.split("\n").entries()) {
    if (line.length === 0 || (n === 0 && line.startsWith("#version"))) continue;
    const parts = line.split(" ");
    if (parts.length !== 2 || parts[0] === "" || parts[1] === "") {
      throw new Error(
        `Cannot read merges.txt (${source}) line ${n + 1}: expected two tokens, got ${JSON.stringify(line)}`,
      );
    }
    merges.push([parts[0]!, parts[1]!]);
  }
  return {
    version: "1.0",
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false },
    decoder: { type: "ByteLevel" },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: vocab as Record<string, number>,
      merges,
    },
  };
}

/** GPT2Tokenizer's default special tokens: `<|endoftext|>` is bos, eos and unk; there is no pad. */
const GPT2_DEFAULT_SPECIALS: Partial<Record<SpecialRole, string>> = {
  bos_token: "<|endoftext|>",
  eos_token: "<|endoftext|>",
  unk_token: "<|endoftext|>",
};

/** A byte-level BPE tokenizer with Hugging Face `GPT2Tokenizer` behaviour. */
export class ByteLevelBpeTokenizer implements Tokenizer {
  #json: BpeTokenizerJson;
  #specials: Partial<Record<SpecialRole, string>>;
  #additional: string[];
  #cleanUp: boolean;
  #configRest: Record<string, unknown>;
  #source: string;
  // derived from the above by #rebuild()
  #lib!: LibTokenizer;
  #bpe!: (pieces: string[]) => string[];
  #idToToken: string[] = [];
  #tokenToId = new Map<string, number>();
  #vocabSize = 0;
  #added = new Map<string, AddedTokenJson>();
  #splitter!: TokenSplitter;

  private constructor(
    json: BpeTokenizerJson,
    settings: ReturnType<typeof resolveSpecialTokens>,
    source: string,
  ) {
    this.#json = json;
    this.#specials = { ...settings.specials };
    this.#additional = [...settings.additional];
    this.#cleanUp = settings.cleanUpTokenizationSpaces;
    this.#configRest = { ...settings.rest };
    this.#source = source;
    this.#rebuild();
    if (this.#register(specialTokenNames(this.#specials, this.#additional), true) > 0) this.#rebuild();
  }

  /** Whether `files` describe a byte-level BPE tokenizer (tokenizer.json with a BPE model, or vocab.json). */
  static handles(files: TokenizerFiles): boolean {
    if (files.tokenizerJson !== undefined) return /"type"\s*:\s*"BPE"/.test(files.tokenizerJson);
    return files.vocabJson !== undefined && files.mergesTxt !== undefined;
  }

  /** Build one from file contents: tokenizer.json where given, else vocab.json + merges.txt. */
  static fromFiles(files: TokenizerFiles): ByteLevelBpeTokenizer {
    const { source } = files;
    const config = parseJsonObject(files.tokenizerConfig, "tokenizer_config.json", source);
    const map = parseJsonObject(files.specialTokensMap, "special_tokens_map.json", source);
    const settings = resolveSpecialTokens(config, map, source, GPT2_DEFAULT_SPECIALS);
    if (config?.add_prefix_space === true) {
      throw new Error(`Unsupported tokenizer_config.json (${source}): add_prefix_space is true, expected false`);
    }
    let json: BpeTokenizerJson;
    if (files.tokenizerJson !== undefined) {
      const raw = parseJsonObject(files.tokenizerJson, "tokenizer.json", source)!;
      json = checkByteLevelTokenizerJson(raw, source);
    } else if (files.vocabJson !== undefined && files.mergesTxt !== undefined) {
      json = synthesiseByteLevelTokenizerJson(files.vocabJson, files.mergesTxt, source);
    } else {
      throw new Error(`Cannot load tokenizer (${source}): neither tokenizer.json nor vocab.json + merges.txt is there`);
    }
    return new ByteLevelBpeTokenizer(json, settings, source);
  }

  get source(): string {
    return this.#source;
  }
  get vocabSize(): number {
    return this.#vocabSize;
  }
  idToToken(id: number): string | undefined {
    return this.#idToToken[id];
  }
  tokenToId(token: string): number | undefined {
    return this.#tokenToId.get(token);
  }
  #roleId(role: SpecialRole): number | undefined {
    const t = this.#specials[role];
    return t === undefined ? undefined : this.#tokenToId.get(t);
  }
  /** The pad token's id (`<|pad|>` after {@link prepareForSft}); GPT-2 has none before. */
  get padTokenId(): number {
    const id = this.#roleId("pad_token");
    if (id === undefined) {
      throw new Error(`The tokenizer (${this.#source}) has no pad token: prepareForSft() adds <|pad|>`);
    }
    return id;
  }
  get unkTokenId(): number | undefined {
    return this.#roleId("unk_token");
  }
  get bosTokenId(): number | undefined {
    return this.#roleId("bos_token");
  }
  get eosTokenId(): number | undefined {
    return this.#roleId("eos_token");
  }
  get specialTokenIds(): number[] {
    return this.#json.added_tokens.filter((t) => t.special).map((t) => t.id).sort((a, b) => a - b);
  }
  get additionalSpecialTokens(): readonly string[] {
    return [...this.#additional];
  }
  /** Always empty: byte-level BPE normalizes nothing, so no two tokens to add can collide. */
  get skippedTokens(): readonly SkippedToken[] {
    return [];
  }
  specialToken(role: SpecialRole): string | undefined {
    return this.#specials[role];
  }

  /** Encode as `tokenizer(text, truncation=True, max_length=…, return_offsets_mapping=True)` does. */
  encode(text: string, opts: EncodeOptions = {}): Encoding {
    const ids: number[] = [];
    const tokens: string[] = [];
    const offsets: [number, number][] = [];
    for (const [s, e, isAdded] of this.#splitter.split(text)) {
      if (isAdded) {
        const t = this.#added.get(text.slice(s, e))!;
        ids.push(t.id);
        tokens.push(t.content);
        offsets.push([s, e]);
        continue;
      }
      for (const [ps, pe] of splitGpt2(text.slice(s, e))) this.#encodePiece(text, s + ps, s + pe, ids, tokens, offsets);
    }
    if (this.#json.post_processor?.trim_offsets) {
      trimOffsets(tokens, offsets, this.#json.post_processor.add_prefix_space ?? true);
    }
    if (opts.maxLength !== undefined) {
      if (!Number.isInteger(opts.maxLength) || opts.maxLength < 1) {
        throw new Error(`Cannot encode: maxLength ${opts.maxLength} is not a positive integer`);
      }
      ids.length = Math.min(ids.length, opts.maxLength);
      tokens.length = ids.length;
      offsets.length = ids.length;
    }
    return { ids, tokens, offsets };
  }

  /** One piece of the GPT-2 split, `text[start, end)`: its bytes as characters, BPE, and the offsets. */
  #encodePiece(
    text: string,
    start: number,
    end: number,
    ids: number[],
    tokens: string[],
    offsets: [number, number][],
  ): void {
    // each byte's character: the [start, end) UTF-16 span of the code point it belongs to
    const spanStart: number[] = [];
    const spanEnd: number[] = [];
    let chars = "";
    const enc = new TextEncoder();
    for (let i = start; i < end;) {
      const n = text.codePointAt(i)! > 0xffff ? 2 : 1;
      for (const b of enc.encode(text.slice(i, i + n))) {
        chars += BYTE_CHAR[b]!;
        spanStart.push(i);
        spanEnd.push(i + n);
      }
      i += n;
    }
    let at = 0;
    for (const t of this.#bpe([chars])) {
      const id = this.#json.model.vocab[t];
      if (id === undefined) {
        throw new Error(`Cannot encode (${this.#source}): BPE token ${JSON.stringify(t)} is not in the vocabulary`);
      }
      ids.push(id);
      tokens.push(t);
      offsets.push([spanStart[at]!, spanEnd[at + t.length - 1]!]);
      at += t.length;
    }
  }

  /**
   * Decode as `GPT2Tokenizer.decode`: the tokens' byte-level characters become bytes again (an added token
   * that is not made of them counts as its own UTF-8), read as UTF-8 with U+FFFD for a broken sequence.
   */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const special = new Set(opts.skipSpecialTokens ? this.specialTokenIds : []);
    const bytes: number[] = [];
    const enc = new TextEncoder();
    for (const id of ids) {
      const t = this.#idToToken[id];
      if (t === undefined || special.has(id)) continue;
      const own = [...t].map((c) => CHAR_BYTE.get(c));
      if (own.every((b) => b !== undefined)) bytes.push(...(own as number[]));
      else bytes.push(...enc.encode(t));
    }
    const text = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }).decode(new Uint8Array(bytes));
    return (opts.cleanUpTokenizationSpaces ?? this.#cleanUp) ? cleanUpTokenization(text) : text;
  }

  /** HF's `add_special_tokens({...})`: set the roles given and replace the additional special tokens. */
  addSpecialTokens(map: SpecialTokensMap): number {
    const before = this.#vocabSize;
    const { toAdd, additional } = applySpecialTokens(map, this.#specials, this.#additional);
    this.#additional = additional;
    this.#register(toAdd, true);
    this.#rebuild();
    return this.#vocabSize - before;
  }

  /** HF's `add_tokens([...])`: each token becomes an added token matched anywhere in the text. */
  addTokens(tokens: readonly string[]): number {
    const before = this.#vocabSize;
    this.#register(tokens, false);
    this.#rebuild();
    return this.#vocabSize - before;
  }

  /**
   * The additions before SFT for a byte-level model: a pad token and the two ChatML tokens, as special
   * tokens (`add_special_tokens({pad_token: "<|pad|>", additional_special_tokens: [...]})`); no ASCII
   * tokens, since every byte already has one. Returns the number of new ids (3 for GPT-2).
   */
  prepareForSft(): number {
    return this.addSpecialTokens({ ...SFT_SPECIAL_TOKENS });
  }

  /** The files transformers 5 writes for this tokenizer: tokenizer.json, tokenizer_config.json. */
  saveFiles(): Record<string, string> {
    const config: Record<string, unknown> = { ...this.#configRest };
    for (const role of SPECIAL_ROLES) config[role] = this.#specials[role] ?? null;
    for (const role of ["sep_token", "cls_token", "mask_token"] as const) {
      if (config[role] === null) delete config[role];
    }
    config.add_prefix_space = false;
    config.clean_up_tokenization_spaces = this.#cleanUp;
    config.extra_special_tokens = [...this.#additional];
    config.tokenizer_class = "GPT2Tokenizer";
    const sorted = Object.fromEntries(Object.entries(config).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    return {
      "tokenizer.json": JSON.stringify(this.#json, null, 2) + "\n",
      "tokenizer_config.json": JSON.stringify(sorted, null, 2) + "\n",
      "special_tokens_map.json": JSON.stringify(specialTokensMapJson(this.#specials, this.#additional), null, 2) + "\n",
    };
  }

  /** Register tokens as added tokens (ids after the vocabulary and every id in use); returns how many. */
  #register(tokens: readonly string[], special: boolean): number {
    return registerAddedTokens(this.#json.added_tokens, tokens, {
      special,
      idOf: (content) => this.#tokenToId.get(content),
      firstNew: Math.max(Object.keys(this.#json.model.vocab).length, this.#idToToken.length),
    });
  }

  #rebuild(): void {
    const json = this.#json;
    const idToToken: string[] = [];
    const tokenToId = new Map<string, number>();
    for (const [t, id] of Object.entries(json.model.vocab)) {
      idToToken[id] = t;
      tokenToId.set(t, id);
    }
    for (const t of json.added_tokens) {
      if (t.lstrip || t.rstrip || t.single_word) {
        throw new Error(
          `Unsupported added token ${JSON.stringify(t.content)} (${this.#source}): lstrip, rstrip or single_word`,
        );
      }
      idToToken[t.id] = t.content;
      tokenToId.set(t.content, t.id);
    }
    this.#lib = new LibTokenizer(json as unknown as Record<string, unknown>, {});
    const model = (this.#lib as unknown as { model?: unknown }).model;
    if (typeof model !== "function") {
      throw new Error("Unsupported @huggingface/tokenizers version: Tokenizer.model is not callable");
    }
    this.#bpe = model as (pieces: string[]) => string[];
    this.#idToToken = idToToken;
    this.#tokenToId = tokenToId;
    this.#vocabSize = new Set([...Object.values(json.model.vocab), ...json.added_tokens.map((t) => t.id)]).size;
    this.#added = new Map(json.added_tokens.map((t) => [t.content, t]));
    this.#splitter = new TokenSplitter(json.added_tokens.map((t) => t.content));
  }
}

/**
 * The ByteLevel post-processor's `trim_offsets`: a token's leading and trailing `Ġ` (spaces) leave its
 * offsets, except a single leading one of the first token when the post-processor adds a prefix space.
 */
function trimOffsets(tokens: readonly string[], offsets: [number, number][], addPrefixSpace: boolean): void {
  for (const [i, t] of tokens.entries()) {
    let leading = 0;
    while (leading < t.length && t[leading] === SPACE_CHAR) leading++;
    let trailing = 0;
    while (trailing < t.length && t[t.length - 1 - trailing] === SPACE_CHAR) trailing++;
    const o = offsets[i]!;
    if (leading > 0) {
      if ((i === 0 || o[0] === 0) && addPrefixSpace && leading === 1) leading = 0;
      o[0] = Math.min(o[0] + leading, o[1]);
    }
    if (trailing > 0 && o[1] >= trailing) o[1] = Math.max(o[1] - trailing, o[0]);
  }
}
