/**
 * The files of a Hugging Face BERT tokenizer: `vocab.txt` parsing, `tokenizer_config.json` /
 * `special_tokens_map.json` resolution, and the synthesis of a `tokenizer.json` for repos that ship only
 * `vocab.txt` (as `uer/gpt2-chinese-cluecorpussmall` does), built the way transformers' converter
 * (`convert_slow_tokenizer.BertConverter`) and `PreTrainedTokenizerFast` build it.
 * @module
 */

/** One entry of `tokenizer.json`'s `added_tokens`, as the Rust `tokenizers` library writes it. */
export interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/** The `BertNormalizer` section of `tokenizer.json`. */
export interface BertNormalizerJson {
  type: "BertNormalizer";
  clean_text: boolean;
  handle_chinese_chars: boolean;
  strip_accents: boolean | null;
  lowercase: boolean;
}

/** The `WordPiece` model section of `tokenizer.json`. */
export interface WordPieceJson {
  type: "WordPiece";
  unk_token: string;
  continuing_subword_prefix: string;
  max_input_chars_per_word: number;
  vocab: Record<string, number>;
}

/** A `tokenizer.json` with a BERT pipeline; other sections are kept as they were read. */
export interface TokenizerJson {
  version: string;
  truncation: unknown;
  padding: unknown;
  added_tokens: AddedTokenJson[];
  normalizer: BertNormalizerJson;
  pre_tokenizer: { type: "BertPreTokenizer" };
  post_processor: Record<string, unknown> | null;
  decoder: Record<string, unknown> | null;
  model: WordPieceJson;
}

/** The special-token roles of transformers' `SpecialTokensMixin`, in its order. */
export const SPECIAL_ROLES = [
  "bos_token",
  "eos_token",
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
] as const;
/** A special-token role (`pad_token`, …). */
export type SpecialRole = typeof SPECIAL_ROLES[number];

/** What a BERT tokenizer's config files say, resolved with `BertTokenizer`'s defaults. */
export interface BertSettings {
  /** Role → token content, for the roles that are set. */
  specials: Partial<Record<SpecialRole, string>>;
  /** `additional_special_tokens` (transformers 4) / `extra_special_tokens` (transformers 5, list form). */
  additional: string[];
  /** `do_lower_case` (BertTokenizer's default: true), or undefined where the config does not say. */
  doLowerCase: boolean | undefined;
  /** `tokenize_chinese_chars` (default true), or undefined where the config does not say. */
  tokenizeChineseChars: boolean | undefined;
  /** `strip_accents` (default null: follow `do_lower_case`), or undefined where the config does not say. */
  stripAccents: boolean | null | undefined;
  /** `clean_up_tokenization_spaces` (default false, as in transformers 5: an explicit true is honoured). */
  cleanUpTokenizationSpaces: boolean;
  /** `added_tokens_decoder` entries (transformers ≥ 4.34 configs), by id. */
  addedTokensDecoder: AddedTokenJson[];
  /** The config's remaining keys, kept for saving. */
  rest: Record<string, unknown>;
}

/** BertTokenizer's default special tokens. */
const BERT_DEFAULT_SPECIALS: Partial<Record<SpecialRole, string>> = {
  unk_token: "[UNK]",
  sep_token: "[SEP]",
  pad_token: "[PAD]",
  cls_token: "[CLS]",
  mask_token: "[MASK]",
};

/** Keys of tokenizer_config.json that the settings model explicitly (or that describe a load, not a tokenizer). */
const CONFIG_KEYS_HANDLED = new Set<string>([
  ...SPECIAL_ROLES,
  "additional_special_tokens",
  "extra_special_tokens",
  "do_lower_case",
  "tokenize_chinese_chars",
  "strip_accents",
  "clean_up_tokenization_spaces",
  "added_tokens_decoder",
  "tokenizer_class",
  // written by transformers 5 about the loading session, not the tokenizer
  "backend",
  "is_local",
  "local_files_only",
  "name_or_path",
  "tokenizer_file",
]);

/**
 * Parse `vocab.txt` the way transformers' `load_vocab` does: one token per line (line ends `\n`, `\r\n` or
 * `\r`, as Python's universal newlines read them), the line number minus one is the id, an empty line is the
 * empty token, and a final line end does not start another token. Unlike transformers, where a later
 * duplicate silently takes the name (leaving the earlier id unreachable), a duplicate token is an error:
 * `Cannot read vocab.txt (DIR): token "x" appears on lines 5 and 9`.
 */
export function parseVocabTxt(text: string, source: string): string[] {
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const seen = new Map<string, number>();
  for (const [i, token] of lines.entries()) {
    const first = seen.get(token);
    if (first !== undefined) {
      throw new Error(
        `Cannot read vocab.txt (${source}): token ${JSON.stringify(token)} appears on lines ${first + 1} and ${i + 1}`,
      );
    }
    seen.set(token, i);
  }
  if (lines.length === 0) throw new Error(`Cannot read vocab.txt (${source}): file has no tokens`);
  return lines;
}

/** A token as config files write it: a string, or an AddedToken dict with `content`. */
function tokenContent(v: unknown, what: string): string | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v === "string") return v;
  if (typeof v === "object" && typeof (v as { content?: unknown }).content === "string") {
    return (v as { content: string }).content;
  }
  throw new Error(`Cannot read ${what}: expected a string or {"content": …}, got ${JSON.stringify(v)}`);
}

/** A list of tokens (strings or AddedToken dicts); transformers 4's dict form of extra_special_tokens gives its values. */
function tokenList(v: unknown, what: string): string[] {
  if (v === null || v === undefined) return [];
  const items = Array.isArray(v) ? v : typeof v === "object" ? Object.values(v as object) : undefined;
  if (items === undefined) throw new Error(`Cannot read ${what}: expected a list, got ${JSON.stringify(v)}`);
  return items.map((x, i) => tokenContent(x, `${what}[${i}]`)!).filter((x) => x !== undefined);
}

function optionalBool(v: unknown, what: string): boolean | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") throw new Error(`Cannot read ${what}: expected true or false, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Resolve `tokenizer_config.json` and `special_tokens_map.json` (either may be absent) into settings,
 * as transformers 5 does (`PreTrainedTokenizerBase.from_pretrained`):
 * - the config's `additional_special_tokens` stand for `extra_special_tokens` when that is absent or empty;
 * - then every key of special_tokens_map.json overrides the config's (a role set to null removes it),
 *   so where the two files disagree special_tokens_map.json wins — the fixture's `model/` has a stale
 *   map (`[PAD]`) beside a config that says `<|pad|>`, and Python's pad is `[PAD]`;
 * - the map's `extra_special_tokens` are appended to the config's; its `additional_special_tokens` count
 *   only where no `extra_special_tokens` were given at all.
 * `source` names the files in errors.
 */
export function resolveBertSettings(
  config: Record<string, unknown> | undefined,
  specialTokensMap: Record<string, unknown> | undefined,
  source: string,
): BertSettings {
  return resolveSpecialTokens(config, specialTokensMap, source, BERT_DEFAULT_SPECIALS);
}

/** {@link resolveBertSettings} with another tokenizer class's default special tokens. */
export function resolveSpecialTokens(
  config: Record<string, unknown> | undefined,
  specialTokensMap: Record<string, unknown> | undefined,
  source: string,
  defaults: Partial<Record<SpecialRole, string>>,
): BertSettings {
  const cfg = config ?? {};
  const map = specialTokensMap ?? {};
  const specials: Partial<Record<SpecialRole, string>> = { ...defaults };
  for (const role of SPECIAL_ROLES) {
    for (const [obj, file] of [[cfg, "tokenizer_config.json"], [map, "special_tokens_map.json"]] as const) {
      if (!(role in obj)) continue;
      const v = tokenContent(obj[role], `${file} (${source}) field ${role}`);
      if (v === undefined) delete specials[role];
      else specials[role] = v;
    }
  }
  const list = (obj: Record<string, unknown>, key: string, file: string) =>
    key in obj ? tokenList(obj[key], `${file} (${source}) ${key}`) : undefined;
  const cfgFile = "tokenizer_config.json", mapFile = "special_tokens_map.json";
  const cfgExtra = list(cfg, "extra_special_tokens", cfgFile);
  const cfgAdditional = list(cfg, "additional_special_tokens", cfgFile);
  let extra = cfgExtra !== undefined && cfgExtra.length > 0 ? cfgExtra : cfgAdditional ?? cfgExtra;
  const mapExtra = list(map, "extra_special_tokens", mapFile);
  if (mapExtra !== undefined) {
    extra = [...(extra ?? [])];
    for (const t of mapExtra) if (!extra.includes(t)) extra.push(t);
  }
  const mapAdditional = list(map, "additional_special_tokens", mapFile);
  if (mapAdditional !== undefined && extra === undefined) extra = mapAdditional;
  const additional = [...(extra ?? [])];
  const sa = cfg.strip_accents;
  if (sa !== undefined && sa !== null && typeof sa !== "boolean") {
    throw new Error(`Cannot read tokenizer_config.json (${source}): strip_accents is ${JSON.stringify(sa)}`);
  }
  const addedTokensDecoder: AddedTokenJson[] = [];
  const atd = cfg.added_tokens_decoder;
  if (atd !== undefined && atd !== null) {
    if (typeof atd !== "object") {
      throw new Error(`Cannot read tokenizer_config.json (${source}): added_tokens_decoder is not an object`);
    }
    for (const [k, v] of Object.entries(atd)) {
      const id = Number(k);
      const e = v as Partial<AddedTokenJson>;
      if (!Number.isInteger(id) || id < 0 || typeof e?.content !== "string") {
        throw new Error(`Cannot read tokenizer_config.json (${source}): bad added_tokens_decoder entry ${k}`);
      }
      addedTokensDecoder.push({
        id,
        content: e.content,
        single_word: e.single_word ?? false,
        lstrip: e.lstrip ?? false,
        rstrip: e.rstrip ?? false,
        normalized: e.normalized ?? !(e.special ?? false),
        special: e.special ?? false,
      });
    }
    addedTokensDecoder.sort((a, b) => a.id - b.id);
  }
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(cfg)) if (!CONFIG_KEYS_HANDLED.has(k)) rest[k] = v;
  return {
    specials,
    additional,
    doLowerCase: optionalBool(cfg.do_lower_case, `tokenizer_config.json (${source}) field do_lower_case`),
    tokenizeChineseChars: optionalBool(
      cfg.tokenize_chinese_chars,
      `tokenizer_config.json (${source}) field tokenize_chinese_chars`,
    ),
    stripAccents: sa as boolean | null | undefined,
    cleanUpTokenizationSpaces: optionalBool(
      cfg.clean_up_tokenization_spaces,
      `tokenizer_config.json (${source}) field clean_up_tokenization_spaces`,
    ) ?? false,
    addedTokensDecoder,
    rest,
  };
}

/** The TemplateProcessing post-processor the BERT converter writes: `[CLS] $A [SEP]`, pair `… $B:1 [SEP]:1`. */
export function bertTemplate(cls: string, clsId: number, sep: string, sepId: number): Record<string, unknown> {
  const special = (id: string, typeId: number) => ({ SpecialToken: { id, type_id: typeId } });
  const seq = (id: string, typeId: number) => ({ Sequence: { id, type_id: typeId } });
  return {
    type: "TemplateProcessing",
    single: [special(cls, 0), seq("A", 0), special(sep, 0)],
    pair: [special(cls, 0), seq("A", 0), special(sep, 0), seq("B", 1), special(sep, 1)],
    special_tokens: {
      [cls]: { id: cls, ids: [clsId], tokens: [cls] },
      [sep]: { id: sep, ids: [sepId], tokens: [sep] },
    },
  };
}

/** An AddedToken as transformers registers special tokens (never normalized) and `add_tokens` ones (normalized). */
export function addedToken(id: number, content: string, special: boolean): AddedTokenJson {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: !special, special };
}

/**
 * Synthesise `tokenizer.json` from a vocabulary and resolved settings, as transformers does for a
 * BertTokenizer repo without one: BertNormalizer {clean_text: true, handle_chinese_chars:
 * tokenize_chinese_chars, strip_accents, lowercase: do_lower_case}, BertPreTokenizer, WordPiece {unk,
 * "##", 100}, TemplateProcessing `[CLS] $A [SEP]`, WordPiece decoder; then the special tokens are
 * registered as added tokens (special, not normalized; a special token missing from the vocabulary gets
 * the next id), and the config's `added_tokens_decoder` entries after them.
 */
export function synthesiseBertTokenizerJson(
  vocab: readonly string[],
  settings: BertSettings,
  source: string,
): TokenizerJson {
  const ids = new Map(vocab.map((t, i) => [t, i]));
  const unk = settings.specials.unk_token;
  if (unk === undefined) throw new Error(`Cannot build tokenizer (${source}): no unk_token`);
  const added: AddedTokenJson[] = [];
  const addedIds = new Map<string, number>();
  let next = vocab.length;
  const register = (content: string, special: boolean, wantId?: number): number => {
    const have = addedIds.get(content) ?? ids.get(content);
    if (wantId !== undefined && have !== undefined && have !== wantId) {
      throw new Error(
        `Cannot build tokenizer (${source}): added_tokens_decoder gives ${JSON.stringify(content)} id ${wantId}, ` +
          `the vocabulary has it as ${have}`,
      );
    }
    const id = have ?? wantId ?? next;
    if (!addedIds.has(content)) {
      added.push(addedToken(id, content, special));
      addedIds.set(content, id);
    }
    next = Math.max(next, id + 1);
    return id;
  };
  for (const role of SPECIAL_ROLES) {
    const t = settings.specials[role];
    if (t !== undefined) register(t, true);
  }
  for (const t of settings.additional) register(t, true);
  for (const e of settings.addedTokensDecoder) {
    if (addedIds.has(e.content)) continue;
    const id = register(e.content, e.special, e.id);
    const last = added[added.length - 1]!;
    if (last.content === e.content) Object.assign(last, { ...e, id });
  }
  added.sort((a, b) => a.id - b.id);
  const cls = settings.specials.cls_token;
  const sep = settings.specials.sep_token;
  const lookup = (t: string) => addedIds.get(t) ?? ids.get(t)!;
  const doLowerCase = settings.doLowerCase ?? true;
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: {
      type: "BertNormalizer",
      clean_text: true,
      handle_chinese_chars: settings.tokenizeChineseChars ?? true,
      strip_accents: settings.stripAccents ?? null,
      lowercase: doLowerCase,
    },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: cls !== undefined && sep !== undefined ? bertTemplate(cls, lookup(cls), sep, lookup(sep)) : null,
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece",
      unk_token: unk,
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(vocab.map((t, i) => [t, i])),
    },
  };
}

/**
 * Check that a parsed `tokenizer.json` is a BERT WordPiece pipeline this module handles, and return it
 * typed. Errors name the file and field: `Unsupported tokenizer.json (DIR): normalizer is NFKC, expected
 * BertNormalizer`.
 */
export function checkBertTokenizerJson(raw: unknown, source: string): TokenizerJson {
  const where = `tokenizer.json (${source})`;
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new Error(`Cannot read ${where}: not an object`);
  }
  const j = raw as Record<string, unknown>;
  const typeOf = (v: unknown) => (v && typeof v === "object" ? String((v as { type?: unknown }).type) : String(v));
  const expect = (field: string, want: string) => {
    if (typeOf(j[field]) !== want) {
      throw new Error(`Unsupported ${where}: ${field} is ${typeOf(j[field])}, expected ${want}`);
    }
  };
  expect("normalizer", "BertNormalizer");
  expect("pre_tokenizer", "BertPreTokenizer");
  expect("model", "WordPiece");
  const model = j.model as Partial<WordPieceJson>;
  if (!model.vocab || typeof model.vocab !== "object") throw new Error(`Cannot read ${where}: model.vocab is missing`);
  if (typeof model.unk_token !== "string") throw new Error(`Cannot read ${where}: model.unk_token is missing`);
  if (!Array.isArray(j.added_tokens)) throw new Error(`Cannot read ${where}: added_tokens is not a list`);
  for (const t of j.added_tokens as AddedTokenJson[]) {
    if (t.single_word) {
      throw new Error(
        `Unsupported ${where}: added token ${JSON.stringify(t.content)} has single_word (not implemented)`,
      );
    }
  }
  const n = j.normalizer as Partial<BertNormalizerJson>;
  return {
    ...(j as unknown as TokenizerJson),
    normalizer: {
      type: "BertNormalizer",
      clean_text: n.clean_text ?? true,
      handle_chinese_chars: n.handle_chinese_chars ?? true,
      strip_accents: n.strip_accents ?? null,
      lowercase: n.lowercase ?? true,
    },
    model: {
      type: "WordPiece",
      unk_token: model.unk_token,
      continuing_subword_prefix: model.continuing_subword_prefix ?? "##",
      max_input_chars_per_word: model.max_input_chars_per_word ?? 100,
      vocab: model.vocab,
    },
    added_tokens: (j.added_tokens as AddedTokenJson[]).map((t) => ({ ...t })),
  };
}

/**
 * Serialise `tokenizer.json` as the Rust library does (two-space indents, no final newline), keeping
 * `model.vocab` in id order (a plain `JSON.stringify` would move integer-like tokens such as "0" … "9" to
 * the front).
 */
export function stringifyTokenizerJson(json: TokenizerJson): string {
  const marker = "\u0000vocab\u0000";
  const text = JSON.stringify({ ...json, model: { ...json.model, vocab: marker } }, null, 2);
  const entries = Object.entries(json.model.vocab).sort((a, b) => a[1] - b[1]);
  const vocab = entries.length === 0
    ? "{}"
    : "{\n" + entries.map(([t, id]) => `      ${JSON.stringify(t)}: ${id}`).join(",\n") + "\n    }";
  return text.replace(JSON.stringify(marker), () => vocab);
}
