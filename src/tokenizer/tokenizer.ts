/**
 * The BERT WordPiece tokenizer of `uer/gpt2-chinese-cluecorpussmall`, as Hugging Face's `BertTokenizerFast`
 * behaves: `@huggingface/tokenizers` (tokenizers.js) does the tokenizing; this module loads or synthesises
 * `tokenizer.json`, adds the notebook's SFT tokens, computes character offsets (which tokenizers.js does
 * not return), truncates, and saves a model dir's tokenizer files that Python `transformers` loads.
 *
 * Offsets are JS string (UTF-16) indices: `text.slice(start, end)` is what a token came from. Python
 * reports code-point indices; the two differ after an astral character (😀, 𠀀). Tokens added by the
 * post-processor (`[CLS]`, `[SEP]`) get `[0, 0]`, as in Hugging Face.
 *
 * ```ts
 * const tok = await BertTokenizer.fromDir("tests/fixtures/tiny-gpt2-zh/model-bin");
 * tok.prepareForSft(); // 63 new ids: <|pad|> <|im_start|> <|im_end|> A…Z ##A… name email order_id OD od
 * const { ids, offsets } = tok.encode("<|im_start|>user\n你好<|im_end|>\n");
 * ```
 * @module
 */

import { Tokenizer } from "@huggingface/tokenizers";
import {
  applySpecialTokens,
  parseJsonObject,
  readOptional,
  registerAddedTokens,
  specialTokenNames,
  type SpecialTokensMap,
  specialTokensMapJson,
} from "./added_tokens.ts";
import { join } from "node:path";
import {
  type AddedTokenJson,
  type BertSettings,
  checkBertTokenizerJson,
  parseVocabTxt,
  resolveBertSettings,
  SPECIAL_ROLES,
  type SpecialRole,
  stringifyTokenizerJson,
  synthesiseBertTokenizerJson,
  type TokenizerJson,
} from "./bert_json.ts";
import {
  normalizeAligned,
  normalizeBert,
  preTokenizeBert,
  RustBertNormalizer,
  RustBertPreTokenizer,
  TokenSplitter,
} from "./bert_align.ts";
import {
  type DecodeOptions,
  type EncodeOptions,
  type Encoding,
  SFT_SPECIAL_TOKENS,
  type SkippedToken,
  type Tokenizer as TokenizerInterface,
  type TokenizerFiles,
} from "./types.ts";

export type { DecodeOptions, EncodeOptions, Encoding, SkippedToken, TokenizerFiles } from "./types.ts";
export { SFT_SPECIAL_TOKENS } from "./types.ts";

/**
 * A warning naming the tokens {@link BertTokenizer.addTokens} left out, or undefined when there are none:
 * `13 tokens normalize like a token already added and are not added: A (as a), …`.
 */
export function skippedTokensWarning(skipped: readonly SkippedToken[], source: string): string | undefined {
  if (skipped.length === 0) return undefined;
  const list = skipped.map((s) => `${JSON.stringify(s.token)} (as ${JSON.stringify(s.sameAs)})`).join(", ");
  return `${skipped.length} of the tokens to add normalize (${source} lowercases or strips accents) like a token ` +
    `already added, so they are not added and encode as that token: ${list}`;
}

/** The notebook's `add_tokens` list: a–z A–Z 0–9 `@._-`, the same with `##`, `{ } " : ,`, then JSON keys. */
export const SFT_EXTRA_TOKENS: readonly string[] = (() => {
  const ascii = [..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@._-"];
  return [...ascii, ...ascii.map((c) => `##${c}`), "{", "}", '"', ":", ",", "name", "email", "order_id", "OD", "od"];
})();

/** A token the post-processor adds. */
interface Framing {
  id: number;
  token: string;
}

/** A BERT WordPiece tokenizer with Hugging Face `BertTokenizerFast` behaviour. */
export class BertTokenizer implements TokenizerInterface {
  #json: TokenizerJson;
  #specials: Partial<Record<SpecialRole, string>>;
  #additional: string[];
  #cleanUp: boolean;
  #configRest: Record<string, unknown>;
  #source: string;
  #skipped: SkippedToken[] = [];
  // derived from the above by #rebuild()
  #lib!: Tokenizer;
  #idToToken: string[] = [];
  #tokenToId = new Map<string, number>();
  #modelVocab = new Map<string, number>();
  #vocabSize = 0;
  #addedMap = new Map<string, AddedTokenJson>();
  #unnormalizedSplitter!: TokenSplitter;
  #normalizedSplitter!: TokenSplitter;
  #prefix: Framing[] = [];
  #suffix: Framing[] = [];

  private constructor(json: TokenizerJson, settings: BertSettings, source: string) {
    this.#json = json;
    this.#specials = { ...settings.specials };
    this.#additional = [...settings.additional];
    this.#cleanUp = settings.cleanUpTokenizationSpaces;
    this.#configRest = { ...settings.rest };
    this.#source = source;
    this.#rebuild();
    // as PreTrainedTokenizerFast does: special tokens the config names become (special) added tokens
    if (this.#registerSpecials() > 0) this.#rebuild();
  }

  /**
   * Load a tokenizer from a model dir: `tokenizer.json` where present, else one synthesised from
   * `vocab.txt`; `tokenizer_config.json` and `special_tokens_map.json` where present.
   */
  static async fromDir(dir: string): Promise<BertTokenizer> {
    const [tokenizerJson, tokenizerConfig, specialTokensMap] = await Promise.all(
      ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"].map((f) => readOptional(join(dir, f))),
    );
    const vocabTxt = tokenizerJson === undefined ? await readOptional(join(dir, "vocab.txt")) : undefined;
    return BertTokenizer.fromFiles({ tokenizerJson, tokenizerConfig, vocabTxt, specialTokensMap, source: dir });
  }

  /**
   * Build a tokenizer from file contents. `tokenizerJson` wins over `vocabTxt`; where the config names
   * `do_lower_case`, `tokenize_chinese_chars` or `strip_accents`, they override tokenizer.json's
   * normalizer, as `BertTokenizerFast` does.
   */
  static fromFiles(files: TokenizerFiles): BertTokenizer {
    const { source } = files;
    const config = parseJsonObject(files.tokenizerConfig, "tokenizer_config.json", source);
    const map = parseJsonObject(files.specialTokensMap, "special_tokens_map.json", source);
    const settings = resolveBertSettings(config, map, source);
    if (files.tokenizerJson !== undefined) {
      const json = checkBertTokenizerJson(parseJsonObject(files.tokenizerJson, "tokenizer.json", source), source);
      if (settings.doLowerCase !== undefined) json.normalizer.lowercase = settings.doLowerCase;
      if (settings.tokenizeChineseChars !== undefined) {
        json.normalizer.handle_chinese_chars = settings.tokenizeChineseChars;
      }
      if (settings.stripAccents !== undefined) json.normalizer.strip_accents = settings.stripAccents;
      return new BertTokenizer(json, settings, source);
    }
    if (files.vocabTxt === undefined) {
      throw new Error(`Cannot load tokenizer (${source}): neither tokenizer.json nor vocab.txt is there`);
    }
    const vocab = parseVocabTxt(files.vocabTxt, source);
    return new BertTokenizer(synthesiseBertTokenizerJson(vocab, settings, source), settings, source);
  }

  /**
   * Build a tokenizer from a vocabulary in memory (id = index), with BertTokenizer's default special
   * tokens (`[PAD] [UNK] [CLS] [SEP] [MASK]`; any missing from `tokens` get ids after it). A duplicate
   * token is an error.
   */
  static fromVocab(tokens: readonly string[], opts: { doLowerCase: boolean; source?: string }): BertTokenizer {
    const source = opts.source ?? "in-memory vocabulary";
    const seen = new Map<string, number>();
    for (const [i, t] of tokens.entries()) {
      const j = seen.get(t);
      if (j !== undefined) {
        throw new Error(`Cannot build tokenizer (${source}): token ${JSON.stringify(t)} has ids ${j} and ${i}`);
      }
      seen.set(t, i);
    }
    if (tokens.length === 0) throw new Error(`Cannot build tokenizer (${source}): the vocabulary is empty`);
    const settings = resolveBertSettings({ do_lower_case: opts.doLowerCase }, undefined, source);
    return new BertTokenizer(synthesiseBertTokenizerJson(tokens, settings, source), settings, source);
  }

  /** Where the tokenizer was loaded from. */
  get source(): string {
    return this.#source;
  }

  /** `len(tokenizer)` in HF: distinct ids of the vocabulary and the added tokens. */
  get vocabSize(): number {
    return this.#vocabSize;
  }

  /** The token of an id, or undefined outside the vocabulary. */
  idToToken(id: number): string | undefined {
    return this.#idToToken[id];
  }

  /** The id of a token (added tokens first, then the WordPiece vocabulary), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.#tokenToId.get(token);
  }

  /** The id of the pad token (`<|pad|>` after {@link prepareForSft}). */
  get padTokenId(): number {
    return this.#roleId("pad_token");
  }
  /** The id of `[CLS]`, which starts every encoded text. */
  get clsTokenId(): number {
    return this.#roleId("cls_token");
  }
  /** The id of `[SEP]`, which ends every encoded text. */
  get sepTokenId(): number {
    return this.#roleId("sep_token");
  }
  /** `[CLS]`, which the notebook's saved config.json names as `bos_token_id`. */
  get bosTokenId(): number | undefined {
    return this.#specials.cls_token === undefined ? undefined : this.#tokenToId.get(this.#specials.cls_token);
  }
  /** `[SEP]`, which the notebook's saved config.json names as `eos_token_id`. */
  get eosTokenId(): number | undefined {
    return this.#specials.sep_token === undefined ? undefined : this.#tokenToId.get(this.#specials.sep_token);
  }
  /** The id of `[UNK]`. */
  get unkTokenId(): number {
    return this.#roleId("unk_token");
  }
  /** The id of `[MASK]`. */
  get maskTokenId(): number {
    return this.#roleId("mask_token");
  }

  /** Ids of all special added tokens, ascending (`[PAD] [UNK] [CLS] [SEP] [MASK]`, `<|im_start|>`, …). */
  get specialTokenIds(): number[] {
    return this.#json.added_tokens.filter((t) => t.special).map((t) => t.id).sort((a, b) => a - b);
  }

  /** The additional special tokens (`<|im_start|>`, `<|im_end|>` after {@link prepareForSft}). */
  get additionalSpecialTokens(): readonly string[] {
    return [...this.#additional];
  }

  /**
   * The tokens the last {@link addTokens} (or {@link prepareForSft}) left out because each normalizes like
   * a token already added (`A` like `a`, `od` like `OD` when the tokenizer lowercases), with that token.
   */
  get skippedTokens(): readonly SkippedToken[] {
    return [...this.#skipped];
  }

  /** The token set for a role (`pad_token`, …), or undefined. */
  specialToken(role: SpecialRole): string | undefined {
    return this.#specials[role];
  }

  /**
   * Encode a text as HF's `tokenizer(text, add_special_tokens=…, truncation=True, max_length=…,
   * return_offsets_mapping=True)` does.
   */
  encode(text: string, opts: EncodeOptions = {}): Encoding {
    const addSpecial = opts.addSpecialTokens ?? true;
    const enc = this.#lib.encode(text, { add_special_tokens: false });
    let ids = enc.ids;
    let offsets = this.#offsets(text, enc.tokens, enc.ids);
    const framing = addSpecial ? this.#prefix.length + this.#suffix.length : 0;
    if (opts.maxLength !== undefined) {
      if (!Number.isInteger(opts.maxLength)) {
        throw new Error(`Cannot encode: maxLength ${opts.maxLength} is not an integer`);
      }
      const budget = opts.maxLength - framing;
      if (budget < 0) {
        throw new Error(`Cannot encode: maxLength ${opts.maxLength} leaves no room for ${framing} special tokens`);
      }
      ids = ids.slice(0, budget);
      offsets = offsets.slice(0, budget);
    }
    if (addSpecial) {
      ids = [...this.#prefix.map((f) => f.id), ...ids, ...this.#suffix.map((f) => f.id)];
      const zero = (): [number, number] => [0, 0];
      offsets = [...this.#prefix.map(zero), ...offsets, ...this.#suffix.map(zero)];
    }
    return { ids, tokens: ids.map((id) => this.#idToToken[id]!), offsets };
  }

  /**
   * Decode ids as HF's `BertTokenizerFast.decode`: the WordPiece decoder joins tokens with spaces and
   * glues `##` pieces on (so Chinese text comes back as "你 好"), then `clean_up_tokenization`. Ids outside
   * the vocabulary are skipped, as the Rust library does.
   */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const known = ids.filter((id) => this.#idToToken[id] !== undefined);
    if (known.length === 0) return "";
    return this.#lib.decode(known, {
      skip_special_tokens: opts.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: opts.cleanUpTokenizationSpaces ?? this.#cleanUp,
    });
  }

  /**
   * HF's `add_special_tokens({...})`: set the roles given (`pad_token`, …) and replace the additional
   * special tokens, registering each as a special, unnormalized added token (a token already in the
   * vocabulary keeps its id). Returns the number of new ids.
   */
  addSpecialTokens(map: SpecialTokensMap): number {
    const before = this.#vocabSize;
    const { toAdd, additional } = applySpecialTokens(map, this.#specials, this.#additional);
    this.#additional = additional;
    this.#register(toAdd, true);
    this.#rebuild();
    return this.#vocabSize - before;
  }

  /**
   * HF's `add_tokens([...])`: register each token as a normalized, non-special added token, matched
   * anywhere in the (normalized) text before WordPiece. A token already in the vocabulary keeps its id
   * (and still becomes an added token, as the Rust library does); one already added is skipped. Returns
   * the number of new ids (HF's own return value also counts tokens that kept their vocabulary id).
   * A token that normalizes like one already added (`A` after `a` when the tokenizer lowercases) is not
   * added; {@link skippedTokens} lists those of the last call.
   */
  addTokens(tokens: readonly string[]): number {
    const before = this.#vocabSize;
    this.#skipped = [];
    this.#register(tokens, false);
    this.#rebuild();
    return this.#vocabSize - before;
  }

  /**
   * The notebook's additions before SFT, in its order: `add_special_tokens({pad_token: "<|pad|>",
   * additional_special_tokens: ["<|im_start|>", "<|im_end|>"]})`, then `add_tokens` of
   * {@link SFT_EXTRA_TOKENS}. Returns the number of new ids (63 for the base vocabulary), by which the
   * embeddings must grow (`vocabSize` is the new size). A tokenizer that lowercases gets no `A` beside `a`
   * ({@link skippedTokens}), so that Python loads the saved tokenizer with one id per text.
   */
  prepareForSft(): number {
    return this.addSpecialTokens({ ...SFT_SPECIAL_TOKENS }) + this.addTokens(SFT_EXTRA_TOKENS);
  }

  /** `tokenizer.json` as an object (a copy). */
  toTokenizerJson(): TokenizerJson {
    return structuredClone(this.#json);
  }

  /**
   * `tokenizer_config.json` in the transformers 4 layout (`added_tokens_decoder`,
   * `additional_special_tokens`, `tokenizer_class: "BertTokenizer"`), keys sorted as transformers writes
   * them; other keys of the loaded config (`model_max_length`, …) are kept.
   */
  toTokenizerConfig(): Record<string, unknown> {
    const decoder: Record<string, unknown> = {};
    for (const t of [...this.#json.added_tokens].sort((a, b) => a.id - b.id)) {
      decoder[String(t.id)] = {
        content: t.content,
        lstrip: t.lstrip,
        normalized: t.normalized,
        rstrip: t.rstrip,
        single_word: t.single_word,
        special: t.special,
      };
    }
    const n = this.#json.normalizer;
    const cfg: Record<string, unknown> = {
      ...this.#configRest,
      added_tokens_decoder: decoder,
      additional_special_tokens: [...this.#additional],
      clean_up_tokenization_spaces: this.#cleanUp,
      do_lower_case: n.lowercase,
      strip_accents: n.strip_accents,
      tokenize_chinese_chars: n.handle_chinese_chars,
      tokenizer_class: "BertTokenizer",
    };
    for (const role of SPECIAL_ROLES) {
      const t = this.#specials[role];
      if (t !== undefined) cfg[role] = t;
    }
    return Object.fromEntries(Object.entries(cfg).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  /** `special_tokens_map.json`: the roles set and the additional special tokens. */
  toSpecialTokensMap(): Record<string, unknown> {
    return specialTokensMapJson(this.#specials, this.#additional);
  }

  /** The WordPiece vocabulary (without tokens added after it), one token per line, in id order. */
  toVocabTxt(): string {
    const entries = Object.entries(this.#json.model.vocab).sort((a, b) => a[1] - b[1]);
    return entries.map(([t]) => t).join("\n") + "\n";
  }

  /**
   * The tokenizer files of a model dir, by file name: `tokenizer.json`, `tokenizer_config.json`,
   * `special_tokens_map.json`, `vocab.txt`.
   */
  saveFiles(): Record<string, string> {
    return {
      "tokenizer.json": stringifyTokenizerJson(this.#json),
      "tokenizer_config.json": JSON.stringify(this.toTokenizerConfig(), null, 2) + "\n",
      "special_tokens_map.json": JSON.stringify(this.toSpecialTokensMap(), null, 2) + "\n",
      "vocab.txt": this.toVocabTxt(),
    };
  }

  #roleId(role: SpecialRole): number {
    const t = this.#specials[role];
    const id = t === undefined ? undefined : this.#tokenToId.get(t);
    if (id === undefined) throw new Error(`Tokenizer (${this.#source}) has no ${role}`);
    return id;
  }

  /** Add tokens as Rust `AddedVocabulary::add_tokens` does. Returns how many were registered. */
  #register(tokens: readonly string[], special: boolean): number {
    const added = this.#json.added_tokens;
    // The normalized forms already taken by normalized added tokens. Two normalized tokens with one form
    // (`a` and `A` under lowercasing) cannot both be matched: Rust's tokenizers then maps that form to
    // one of their ids chosen anew in each process. So a second one is not added (and is reported).
    const forms = new Map<string, string>();
    for (const t of added) {
      if (!t.normalized) continue;
      const form = normalizeBert(t.content, this.#json.normalizer);
      if (!forms.has(form)) forms.set(form, t.content);
    }
    const keep = (content: string) => {
      if (special) return true;
      const form = normalizeBert(content, this.#json.normalizer);
      const sameAs = forms.get(form);
      if (sameAs !== undefined) {
        this.#skipped.push({ token: content, sameAs });
        return false;
      }
      forms.set(form, content);
      return true;
    };
    // as Rust's AddedVocabulary: new ids after the model vocabulary and every id in use
    return registerAddedTokens(added, tokens, {
      special,
      idOf: (content) => this.#tokenToId.get(content),
      firstNew: Math.max(this.#modelVocab.size, this.#idToToken.length),
      keep,
    });
  }

  /** Register the config's special tokens that are not added tokens yet, in transformers' role order. */
  #registerSpecials(): number {
    return this.#register(specialTokenNames(this.#specials, this.#additional), true);
  }

  /** Recompute everything derived from the tokenizer.json and rebuild tokenizers.js's Tokenizer. */
  #rebuild(): void {
    const json = this.#json;
    const norm = json.normalizer;
    const idToToken: string[] = [];
    const tokenToId = new Map<string, number>();
    for (const [t, id] of Object.entries(json.model.vocab)) {
      idToToken[id] = t;
      tokenToId.set(t, id);
    }
    // Rust's tokenizers names a normalized added token by its normalized content (`OD` is "od" when the
    // tokenizer lowercases, `你好` is " 你  好 "): in the tokens of an encoding and in decode
    for (const t of json.added_tokens) {
      idToToken[t.id] = t.normalized ? normalizeBert(t.content, norm) : t.content;
      tokenToId.set(t.content, t.id);
    }
    const lib = new Tokenizer(json, {
      additional_special_tokens: this.#additional,
      clean_up_tokenization_spaces: this.#cleanUp,
    });
    // The added-token lookup, with the Rust library's rules: unnormalized tokens match their content in the
    // raw text; normalized ones match their normalized content in the normalized text, and where two
    // normalize alike (`a` and `A` under lowercasing) the first registered wins (special tokens first,
    // then the others by id). tokenizers.js keys normalized tokens by raw content too and lets the last
    // one win, so it gets this map in place of its own. Its splitters were built with its own
    // BertNormalizer: check that ours agrees before swapping ours in.
    const libNormalize = lib.normalizer!;
    const ordered = [...json.added_tokens.filter((t) => t.special), ...json.added_tokens.filter((t) => !t.special)];
    const addedMap = new Map<string, AddedTokenJson>();
    const unnormalized: string[] = [];
    const normalized: string[] = [];
    for (const t of ordered) {
      if (t.normalized) continue;
      if (!addedMap.has(t.content)) addedMap.set(t.content, t);
      unnormalized.push(t.content);
    }
    for (const t of ordered) {
      if (!t.normalized) continue;
      const n = normalizeBert(t.content, norm);
      if (n !== libNormalize(t.content)) {
        throw new Error(
          `Unsupported added token ${
            JSON.stringify(t.content)
          } (${this.#source}): tokenizers.js normalizes it differently`,
        );
      }
      if (!addedMap.has(n)) addedMap.set(n, t);
      normalized.push(n);
    }
    const internals = lib as unknown as { added_tokens_map?: Map<string, unknown> };
    if (!(internals.added_tokens_map instanceof Map)) {
      throw new Error("Unsupported @huggingface/tokenizers version: Tokenizer.added_tokens_map is gone");
    }
    internals.added_tokens_map = addedMap;
    const model = lib.model as unknown as { vocab?: string[] };
    if (!Array.isArray(model.vocab)) {
      throw new Error("Unsupported @huggingface/tokenizers version: Tokenizer.model.vocab is not an array");
    }
    for (const t of json.added_tokens) model.vocab[t.id] = idToToken[t.id]!;
    lib.normalizer = new RustBertNormalizer(norm);
    lib.pre_tokenizer = new RustBertPreTokenizer();
    this.#lib = lib;
    this.#idToToken = idToToken;
    this.#tokenToId = tokenToId;
    this.#modelVocab = new Map(Object.entries(json.model.vocab));
    this.#vocabSize = new Set([...Object.values(json.model.vocab), ...json.added_tokens.map((t) => t.id)]).size;
    this.#addedMap = addedMap;
    this.#unnormalizedSplitter = new TokenSplitter(unnormalized);
    this.#normalizedSplitter = new TokenSplitter(normalized);
    [this.#prefix, this.#suffix] = this.#framing();
    if (!this.#modelVocab.has(json.model.unk_token)) {
      throw new Error(
        `Cannot build tokenizer (${this.#source}): unk_token ${json.model.unk_token} is not in the WordPiece vocabulary`,
      );
    }
  }

  /** The tokens the post-processor puts before and after a single sequence. */
  #framing(): [Framing[], Framing[]] {
    const pp = this.#json.post_processor;
    if (pp === null) return [[], []];
    const fail = (msg: string): never => {
      throw new Error(`Unsupported tokenizer.json (${this.#source}): post_processor ${msg}`);
    };
    const type = pp.type;
    if (type === "BertProcessing" || type === "RobertaProcessing") {
      const one = (v: unknown): Framing[] => {
        const [token, id] = v as [string, number];
        return [{ token, id }];
      };
      return [one(pp.cls), one(pp.sep)];
    }
    if (type !== "TemplateProcessing") return fail(`type ${String(type)}`);
    const single = pp.single as Record<string, { id: string }>[];
    const specials = pp.special_tokens as Record<string, { ids: number[]; tokens: string[] }>;
    const before: Framing[] = [];
    const after: Framing[] = [];
    let seen = false;
    for (const item of single) {
      if ("Sequence" in item) {
        seen = true;
        continue;
      }
      const sp = item.SpecialToken;
      const def = sp ? specials[sp.id] : undefined;
      if (def === undefined) return fail(`template item ${JSON.stringify(item)}`);
      const list = def.ids.map((id, i) => ({ id, token: def.tokens[i] ?? String(id) }));
      (seen ? after : before).push(...list);
    }
    return [before, after];
  }

  /**
   * Offsets of tokenizers.js's tokens for `text`: walk the same pipeline (added tokens on the raw text,
   * normalization with alignments, added tokens on the normalized text, word split) and consume the
   * library's tokens word by word. Each id is also checked against what the Rust library would give (an
   * added token's id; a WordPiece piece's id in the model vocabulary, to which tokenizers.js, unlike Rust,
   * also adds the added tokens). A disagreement is an error, never a silent misalignment.
   */
  #offsets(text: string, tokens: readonly string[], ids: readonly number[]): [number, number][] {
    const out: [number, number][] = [];
    const unk = this.#json.model.unk_token;
    const prefix = this.#json.model.continuing_subword_prefix;
    let k = 0;
    const fail = (): never => {
      throw new Error(
        `Cannot compute offsets (${this.#source}) for ${JSON.stringify(text.slice(0, 60))}: token ${k} ` +
          `${JSON.stringify(tokens[k])} (id ${ids[k]}) does not match the text ` +
          `(tokenizers.js and the aligner disagree)`,
      );
    };
    const emit = (id: number | undefined, start: number, end: number) => {
      if (id === undefined || ids[k] !== id) fail();
      out.push([start, end]);
      k++;
    };
    const added = (key: string, start: number, end: number) => {
      if (tokens[k] !== key) fail();
      emit(this.#addedMap.get(key)!.id, start, end);
    };
    for (const [s0, e0, key0] of this.#stripped(text, this.#unnormalizedSplitter.split(text))) {
      if (s0 === e0) continue;
      if (key0 !== undefined) {
        added(key0, s0, e0);
        continue;
      }
      const n = normalizeAligned(text, s0, e0, this.#json.normalizer);
      if (n.text.length === 0) continue;
      for (const [s1, e1, key1] of this.#stripped(n.text, this.#normalizedSplitter.split(n.text))) {
        if (s1 === e1) continue;
        if (key1 !== undefined) {
          added(key1, n.starts[s1]!, n.ends[e1 - 1]!);
          continue;
        }
        const sub = n.text.slice(s1, e1);
        for (const [ws, we] of preTokenizeBert(sub)) {
          const [a, b] = [s1 + ws, s1 + we];
          if (tokens[k] === unk) {
            emit(this.#modelVocab.get(unk), n.starts[a]!, n.ends[b - 1]!);
            continue;
          }
          let pos = a;
          while (pos < b) {
            const t = tokens[k] ?? fail();
            const piece = pos > a && t.startsWith(prefix) ? t.slice(prefix.length) : t;
            if (piece.length === 0 || pos + piece.length > b || !n.text.startsWith(piece, pos)) fail();
            emit(this.#modelVocab.get(t), n.starts[pos]!, n.ends[pos + piece.length - 1]!);
            pos += piece.length;
          }
        }
      }
    }
    if (k !== tokens.length) fail();
    return out;
  }

  /**
   * Mark the split pieces that tokenizers.js takes as added tokens (any piece equal to an added token's
   * content or normalized content) and apply their lstrip / rstrip as it does (trim the neighbour's
   * whitespace); the token's span takes in the whitespace it strips, as in the Rust library.
   */
  #stripped(text: string, pieces: [number, number, boolean][]): [number, number, string | undefined][] {
    const spans = pieces.map(([s, e]): [number, number, string | undefined] => {
      const piece = text.slice(s, e);
      return [s, e, this.#addedMap.has(piece) ? piece : undefined];
    });
    const isSpace = (i: number) => /\s/.test(text[i]!);
    for (const [i, span] of spans.entries()) {
      const t = span[2] === undefined ? undefined : this.#addedMap.get(span[2]);
      if (t === undefined) continue;
      const prev = spans[i - 1];
      if (t.lstrip && prev !== undefined) {
        while (prev[1] > prev[0] && isSpace(prev[1] - 1)) prev[1]--;
        span[0] = prev[1];
      }
      const next = spans[i + 1];
      if (t.rstrip && next !== undefined) {
        while (next[0] < next[1] && isSpace(next[0])) next[0]++;
        span[1] = next[0];
      }
    }
    return spans;
  }
}
