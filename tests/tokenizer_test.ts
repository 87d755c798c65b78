/**
 * The tokenizer against the fixture's Hugging Face tokenizations (`transformers` 5.17, BertTokenizerFast):
 * ids, tokens and offsets must be identical (tokenization is exact: no tolerance). Python reports offsets in
 * code points, ours are UTF-16 indices, so the fixture's are converted through the text.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseVocabTxt, type SpecialRole } from "../src/tokenizer/bert_json.ts";
import { BertTokenizer, SFT_EXTRA_TOKENS, skippedTokensWarning } from "../src/tokenizer/tokenizer.ts";
import { loadModelAndTokenizer } from "../src/model/load.ts";
import { CpuBackend } from "../src/backend/cpu.ts";
import { readSafetensors } from "../src/io/safetensors.ts";

const FIXTURE = join(import.meta.dirname ?? ".", "fixtures", "tiny-gpt2-zh");

interface Case {
  text: string;
  ids: number[];
  tokens: string[];
  offsets: [number, number][];
}
interface Reference {
  tokenization: Case[];
  tokenization_base: Case[];
  texts: string[];
  labels: string[];
  label_scores: { prompt: string; prompt_ids: number[] }[];
  generation: { prompt: string; prompt_ids: number[] }[];
  config: { vocab_size: number; pad_token_id: number };
}
const ref = JSON.parse(await readFile(join(FIXTURE, "reference.json"), "utf8")) as Reference;

/** Python's code-point offsets → JS string (UTF-16) indices into the same text. */
function toUtf16(text: string, offsets: [number, number][]): [number, number][] {
  const cps = [...text];
  const at = (cp: number) => cps.slice(0, cp).join("").length;
  return offsets.map(([a, b]) => [at(a), at(b)]);
}

/** Every case: ids, tokens and offsets identical to the fixture's. */
function expectFixture(tok: BertTokenizer, cases: Case[]): void {
  expect(cases.length).toBeGreaterThan(10);
  for (const c of cases) {
    const got = tok.encode(c.text);
    expect({ text: c.text, ids: got.ids }).toEqual({ text: c.text, ids: c.ids });
    expect({ text: c.text, tokens: got.tokens }).toEqual({ text: c.text, tokens: c.tokens });
    expect({ text: c.text, offsets: got.offsets }).toEqual({ text: c.text, offsets: toUtf16(c.text, c.offsets) });
  }
}

const allTexts = () => [...ref.tokenization.map((c) => c.text), ...ref.labels, ...ref.generation.map((g) => g.prompt)];

describe("tokenizer: fixture tokenizations", () => {
  test("model-bin/ (vocab.txt only, tokenizer.json synthesised) matches tokenization_base", async () => {
    const tok = await BertTokenizer.fromDir(join(FIXTURE, "model-bin"));
    expect(tok.vocabSize).toBe(280);
    expect([tok.padTokenId, tok.unkTokenId, tok.clsTokenId, tok.sepTokenId, tok.maskTokenId]).toEqual([0, 1, 2, 3, 4]);
    expect(tok.specialTokenIds).toEqual([0, 1, 2, 3, 4]);
    expectFixture(tok, ref.tokenization_base);
  });

  test("model-bin/ + prepareForSft() matches tokenization (ids 280–342)", async () => {
    const tok = await BertTokenizer.fromDir(join(FIXTURE, "model-bin"));
    expect(tok.prepareForSft()).toBe(63);
    expect(tok.vocabSize).toBe(ref.config.vocab_size);
    expect(tok.padTokenId).toBe(ref.config.pad_token_id);
    expect([tok.tokenToId("<|im_start|>"), tok.tokenToId("<|im_end|>"), tok.tokenToId("od")]).toEqual([281, 282, 342]);
    expect(tok.additionalSpecialTokens).toEqual(["<|im_start|>", "<|im_end|>"]);
    expect(tok.specialTokenIds).toEqual([0, 1, 2, 3, 4, 280, 281, 282]);
    expectFixture(tok, ref.tokenization);
    // the notebook's additions again change nothing
    expect(tok.prepareForSft()).toBe(0);
    expect(SFT_EXTRA_TOKENS.length).toBe(2 * 66 + 5 + 5);
  });

  test("model/ (tokenizer.json) matches tokenization", async () => {
    const tok = await BertTokenizer.fromDir(join(FIXTURE, "model"));
    expect(tok.vocabSize).toBe(343);
    // tokenizer_config.json says <|pad|>; the stale special_tokens_map.json beside it says [PAD], and wins
    // in transformers 5 (Python loads this dir with pad [PAD] = 0)
    expect(tok.padTokenId).toBe(0);
    expect(tok.additionalSpecialTokens).toEqual(["<|im_start|>", "<|im_end|>"]);
    expectFixture(tok, ref.tokenization);
    expect(tok.prepareForSft()).toBe(0);
  });

  test("prompts and labels encode as the fixture's label scoring and generation prompts", async () => {
    const tok = await BertTokenizer.fromDir(join(FIXTURE, "model"));
    for (const s of ref.label_scores) {
      const prompt = tok.encode(s.prompt, { addSpecialTokens: false }).ids;
      expect(prompt).toEqual(s.prompt_ids);
      for (const label of ref.labels) {
        const ids = tok.encode(label, { addSpecialTokens: false }).ids;
        // each label is four CJK characters, each a vocabulary entry of its own
        expect(ids).toEqual([...label].map((c) => tok.tokenToId(c)!));
        expect(tok.encode(s.prompt + label, { addSpecialTokens: false }).ids).toEqual([...s.prompt_ids, ...ids]);
      }
    }
    for (const g of ref.generation) expect(tok.encode(g.prompt).ids).toEqual(g.prompt_ids);
  });

  test("maxLength truncates inside the [CLS] … [SEP] framing, as the fixture's batch (max_length 160)", async () => {
    const tok = await BertTokenizer.fromDir(join(FIXTURE, "model"));
    // a plain Uint8Array: readSafetensors misreads a Node Buffer (Buffer#slice is a view; reported)
    const bytes = new Uint8Array(await readFile(join(FIXTURE, "reference.safetensors")));
    const tensors = readSafetensors(bytes, "reference.safetensors");
    const ids = tensors.get("input_ids")!;
    const mask = tensors.get("attention_mask")!;
    const T = ids.shape[1]!;
    expect(T).toBe(160);
    for (const [b, text] of ref.texts.entries()) {
      const row = [...ids.data.subarray(b * T, (b + 1) * T)];
      const n = [...mask.data.subarray(b * T, (b + 1) * T)].filter((m) => m === 1).length;
      const enc = tok.encode(text, { maxLength: T });
      expect(enc.ids).toEqual(row.slice(0, n));
      // padded by the tokenizer in memory that saved model/, whose pad was <|pad|>
      expect(row.slice(n).every((x) => x === ref.config.pad_token_id)).toBe(true);
      expect(enc.offsets.length).toBe(enc.ids.length);
      expect(enc.offsets[enc.offsets.length - 1]).toEqual([0, 0]);
    }
    // the third example is cut by truncation
    expect(tok.encode(ref.texts[2]!).ids.length).toBeGreaterThan(T);
    expect(tok.encode("你好", { maxLength: 3 }).tokens).toEqual(["[CLS]", "你", "[SEP]"]);
    expect(tok.encode("你好", { maxLength: 1, addSpecialTokens: false }).tokens).toEqual(["你"]);
    expect(() => tok.encode("你好", { maxLength: 1 })).toThrow("no room for 2 special tokens");
  });
});

interface SpecialTokensCase {
  name: string;
  tokenizer_config: Record<string, unknown>;
  special_tokens_map: Record<string, unknown> | null;
  roles: Record<SpecialRole, string | null>;
  extra_special_tokens: string[];
  pad_token_id: number | null;
}

describe("tokenizer: special tokens resolve as transformers 5 resolves them", () => {
  const table = JSON.parse(
    readFileSync(join(import.meta.dirname ?? ".", "fixtures", "tokenizer", "special_tokens.json"), "utf8"),
  ) as { cases: SpecialTokensCase[] };
  const tokenizerJson = readFileSync(join(FIXTURE, "model", "tokenizer.json"), "utf8");
  test("every case of tokenizer_config.json against special_tokens_map.json", () => {
    expect(table.cases.length).toBeGreaterThan(10);
    for (const c of table.cases) {
      const tok = BertTokenizer.fromFiles({
        tokenizerJson,
        tokenizerConfig: JSON.stringify(c.tokenizer_config),
        specialTokensMap: c.special_tokens_map === null ? undefined : JSON.stringify(c.special_tokens_map),
        source: c.name,
      });
      const roles = Object.fromEntries(
        Object.keys(c.roles).map((r) => [r, tok.specialToken(r as SpecialRole) ?? null]),
      );
      expect({ case: c.name, roles }).toEqual({ case: c.name, roles: c.roles });
      expect({ case: c.name, extra: tok.additionalSpecialTokens }).toEqual({
        case: c.name,
        extra: c.extra_special_tokens,
      });
      if (c.pad_token_id !== null) {
        expect({ case: c.name, pad: tok.padTokenId }).toEqual({ case: c.name, pad: c.pad_token_id });
      }
    }
  });
});

describe("tokenizer: offsets", () => {
  test("offsets are UTF-16 indices: text.slice(start, end) is the token's source", async () => {
    const tok = await BertTokenizer.fromDir(join(FIXTURE, "model"));
    const text = "emoji 😀 和 中文 𠀀a";
    const enc = tok.encode(text, { addSpecialTokens: false });
    expect(enc.offsets.map(([a, b]) => text.slice(a, b))).toEqual([..."emoji", "😀", "和", "中", "文", "𠀀", "a"]);
    expect(enc.offsets[5]).toEqual([6, 8]); // Python: (6, 7)
    // U+20000 is a CJK ideograph, so it stands alone before "a" (tokenizers.js alone would glue them)
    expect(enc.tokens.slice(-2)).toEqual(["[UNK]", "a"]);
  });

  test("lowercasing and accent stripping keep spans on the original text", () => {
    const tok = BertTokenizer.fromVocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "ecole", "σ", "##σ"], {
      doLowerCase: true,
    });
    const text = "Hello ÉCOLE ΣΣ";
    const enc = tok.encode(text, { addSpecialTokens: false });
    expect(enc.tokens).toEqual(["hello", "ecole", "σ", "##σ"]);
    expect(enc.offsets.map(([a, b]) => text.slice(a, b))).toEqual(["Hello", "ÉCOLE", "Σ", "Σ"]);
  });

  test("an added token with lstrip takes in the whitespace before it", () => {
    const base = BertTokenizer.fromVocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "x", "y"], {
      doLowerCase: false,
    });
    const json = base.toTokenizerJson();
    json.added_tokens.find((t) => t.content === "[MASK]")!.lstrip = true;
    const tok = BertTokenizer.fromFiles({ tokenizerJson: JSON.stringify(json), source: "test" });
    const enc = tok.encode("x  [MASK] y", { addSpecialTokens: false });
    expect(enc.tokens).toEqual(["x", "[MASK]", "y"]);
    expect(enc.offsets).toEqual([[0, 1], [1, 9], [10, 11]]);
  });

  test("with lowercasing, the SFT letters map to the first-registered added token, as in Rust", () => {
    const tok = BertTokenizer.fromVocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "name"], {
      doLowerCase: true,
    });
    tok.prepareForSft();
    // "A" normalizes to "a": the earlier "a" (id 5) wins over "A"; tokenizers.js alone would pick "A"
    expect(tok.encode("Aa NAME", { addSpecialTokens: false }).ids).toEqual([5, 5, 6]);
  });
});

describe("tokenizer: files", () => {
  test("the synthesised tokenizer.json equals the one transformers saved for model/", async () => {
    const tok = await BertTokenizer.fromDir(join(FIXTURE, "model-bin"));
    const saved = JSON.parse(await readFile(join(FIXTURE, "model", "tokenizer.json"), "utf8"));
    const mine = tok.toTokenizerJson();
    for (const key of ["normalizer", "pre_tokenizer", "post_processor", "decoder", "model", "truncation", "padding"]) {
      expect({ key, value: (mine as unknown as Record<string, unknown>)[key] }).toEqual({ key, value: saved[key] });
    }
    expect(mine.added_tokens).toEqual(saved.added_tokens.filter((t: { id: number }) => t.id <= 4));
    // after the notebook's additions, everything, added tokens included
    tok.prepareForSft();
    expect(JSON.parse(tok.saveFiles()["tokenizer.json"]!)).toEqual(saved);
    expect(tok.saveFiles()["vocab.txt"]).toBe(await readFile(join(FIXTURE, "model", "vocab.txt"), "utf8"));
  });

  test("saveFiles → fromFiles gives the same tokenizer", async () => {
    for (const dir of ["model-bin", "model"]) {
      const tok = await BertTokenizer.fromDir(join(FIXTURE, dir));
      tok.prepareForSft();
      const files = tok.saveFiles();
      expect(Object.keys(files).sort()).toEqual(
        ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"],
      );
      const cfg = JSON.parse(files["tokenizer_config.json"]!);
      expect(cfg.tokenizer_class).toBe("BertTokenizer");
      expect(cfg.pad_token).toBe("<|pad|>");
      expect(cfg.additional_special_tokens).toEqual(["<|im_start|>", "<|im_end|>"]);
      expect(cfg.do_lower_case).toBe(false);
      expect(cfg.model_max_length).toBe(1024);
      expect(cfg.added_tokens_decoder["280"]).toEqual({
        content: "<|pad|>",
        lstrip: false,
        normalized: false,
        rstrip: false,
        single_word: false,
        special: true,
      });
      expect(cfg.added_tokens_decoder["342"].normalized).toBe(true);
      expect(JSON.parse(files["special_tokens_map.json"]!).pad_token).toBe("<|pad|>");
      const back = BertTokenizer.fromFiles({
        tokenizerJson: files["tokenizer.json"],
        tokenizerConfig: files["tokenizer_config.json"],
        specialTokensMap: files["special_tokens_map.json"],
        source: "saved",
      });
      // without tokenizer.json: vocab.txt + the config's added_tokens_decoder rebuild the same tokenizer
      const slow = BertTokenizer.fromFiles({
        vocabTxt: files["vocab.txt"],
        tokenizerConfig: files["tokenizer_config.json"],
        specialTokensMap: files["special_tokens_map.json"],
        source: "saved without tokenizer.json",
      });
      for (const t of [back, slow]) {
        expect(t.vocabSize).toBe(343);
        expect(t.padTokenId).toBe(280);
        expect(t.toTokenizerJson()).toEqual(tok.toTokenizerJson());
        for (const text of allTexts()) expect(t.encode(text)).toEqual(tok.encode(text));
      }
    }
  });

  test("fromDir reads a written dir; a dir without tokenizer.json or vocab.txt is an error", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tok-"));
    try {
      await expect(BertTokenizer.fromDir(dir)).rejects.toThrow("neither tokenizer.json nor vocab.txt");
      const { writeFile } = await import("node:fs/promises");
      const tok = await BertTokenizer.fromDir(join(FIXTURE, "model-bin"));
      tok.prepareForSft();
      for (const [name, text] of Object.entries(tok.saveFiles())) await writeFile(join(dir, name), text);
      const back = await BertTokenizer.fromDir(dir);
      for (const text of allTexts()) expect(back.encode(text).ids).toEqual(tok.encode(text).ids);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("vocab.txt: one token per line as transformers reads it; a duplicate is an error naming lines and token", () => {
    expect(parseVocabTxt("[PAD]\r\n[UNK]\rb\n\nc", "x")).toEqual(["[PAD]", "[UNK]", "b", "", "c"]);
    expect(parseVocabTxt("a\nb\n", "x")).toEqual(["a", "b"]);
    expect(() => parseVocabTxt("[PAD]\n好\nx\n好\n", "models/base")).toThrow(
      'Cannot read vocab.txt (models/base): token "好" appears on lines 2 and 4',
    );
    expect(() => BertTokenizer.fromFiles({ vocabTxt: "[UNK]\na\na\n", source: "dup" })).toThrow("lines 2 and 3");
    expect(() => BertTokenizer.fromVocab(["[UNK]", "a", "a"], { doLowerCase: false })).toThrow("ids 1 and 2");
  });

  test("fromVocab: default special tokens, appended where the vocabulary lacks them", () => {
    const tok = BertTokenizer.fromVocab(["[UNK]", "你", "好"], { doLowerCase: false });
    // transformers' role order: unk, sep, pad, cls, mask
    expect([tok.unkTokenId, tok.sepTokenId, tok.padTokenId, tok.clsTokenId, tok.maskTokenId]).toEqual([0, 3, 4, 5, 6]);
    expect(tok.vocabSize).toBe(7);
    expect(tok.encode("你好吗").ids).toEqual([5, 1, 2, 0, 3]);
    expect(tok.toVocabTxt()).toBe("[UNK]\n你\n好\n");
  });

  test("unsupported tokenizer.json and bad JSON are errors naming the file", () => {
    const json = BertTokenizer.fromVocab(["[UNK]"], { doLowerCase: false }).toTokenizerJson();
    const bad = { ...json, normalizer: { type: "NFKC" } };
    expect(() => BertTokenizer.fromFiles({ tokenizerJson: JSON.stringify(bad), source: "repo" })).toThrow(
      "Unsupported tokenizer.json (repo): normalizer is NFKC, expected BertNormalizer",
    );
    expect(() => BertTokenizer.fromFiles({ tokenizerJson: "{", tokenizerConfig: "{}", source: "repo" })).toThrow(
      "Cannot read tokenizer.json (repo)",
    );
  });
});

describe("tokenizer: decode", () => {
  test("WordPiece decoding with spaces between tokens, ## glued on, clean-up of ' .'", async () => {
    const base = await BertTokenizer.fromDir(join(FIXTURE, "model-bin"));
    const email = base.encode("zhang.qiang@example.com").ids;
    expect(base.decode(email)).toBe("[CLS] zhang. qiang @ example. com [SEP]");
    expect(base.decode(email, { skipSpecialTokens: true })).toBe("zhang. qiang @ example. com");
    // the WordPiece decoder's own cleanup (tokenizer.json "cleanup": true) already glued " ." on
    expect(base.decode(email, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false })).toBe(
      "zhang. qiang @ example. com",
    );
    const sft = await BertTokenizer.fromDir(join(FIXTURE, "model"));
    const ids = sft.encode("<|im_start|>user\n你好<|im_end|>\n").ids;
    expect(sft.decode(ids)).toBe("[CLS] <|im_start|> u s e r 你 好 <|im_end|> [SEP]");
    expect(sft.decode(ids, { skipSpecialTokens: true })).toBe("u s e r 你 好");
    expect(sft.decode([])).toBe("");
    expect(sft.decode([139, 99999, 176])).toBe("你 好");
    // transformers 5 leaves clean_up_tokenization_spaces off unless the config says true (Python's decode of
    // this fixture, which does not say: "[CLS] d o n ' t s t o p. [SEP]")
    const dont = sft.encode("don't stop .").ids;
    expect(dont).toEqual([2, 50, 61, 60, 11, 66, 65, 66, 61, 62, 18, 3]);
    expect(sft.decode(dont)).toBe("[CLS] d o n ' t s t o p. [SEP]");
    expect(sft.decode(dont, { cleanUpTokenizationSpaces: true })).toBe("[CLS] d on't s t o p. [SEP]");
    // saved, the default is written out as false, so Python decodes the saved dir the same way
    const saved = JSON.parse(sft.saveFiles()["tokenizer_config.json"]!);
    expect(saved.clean_up_tokenization_spaces).toBe(false);
    // an explicit true in a loaded config is honoured
    const files = sft.saveFiles();
    const on = BertTokenizer.fromFiles({
      tokenizerJson: files["tokenizer.json"]!,
      tokenizerConfig: JSON.stringify({ ...saved, clean_up_tokenization_spaces: true }),
      source: "test",
    });
    expect(on.decode(dont)).toBe("[CLS] d on't s t o p. [SEP]");
  });
});

interface LowercaseTable {
  base_len: number;
  len: number;
  skipped: { token: string; same_as: string }[];
  added_tokens: { id: number; content: string; special: boolean; normalized: boolean }[];
  token_to_id: Record<string, number>;
  decode_each: string[];
  encodings: { text: string; ids: number[]; decoded: string; decoded_skip_special: string }[];
}

describe("tokenizer: the SFT additions on a lowercasing tokenizer load in Python with the same ids", () => {
  const table = JSON.parse(
    readFileSync(join(import.meta.dirname ?? ".", "fixtures", "tokenizer", "lowercase.json"), "utf8"),
  ) as LowercaseTable;
  const dir = join(FIXTURE, "model-bin");
  const config = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
  const tok = BertTokenizer.fromFiles({
    vocabTxt: readFileSync(join(dir, "vocab.txt"), "utf8"),
    tokenizerConfig: JSON.stringify({ ...config, do_lower_case: true }),
    specialTokensMap: readFileSync(join(dir, "special_tokens_map.json"), "utf8"),
    source: "model-bin with do_lower_case",
  });
  expect(tok.vocabSize).toBe(table.base_len);
  const added = tok.prepareForSft();

  test("one token per normalized form: A…Z, ##A…##Z and od are left out and reported", () => {
    expect(table.skipped.length).toBe(53);
    expect(tok.skippedTokens).toEqual(table.skipped.map((s) => ({ token: s.token, sameAs: s.same_as })));
    expect(added).toBe(table.len - table.base_len);
    expect(tok.vocabSize).toBe(table.len);
    const ours = tok.toTokenizerJson().added_tokens.map((t) => ({
      id: t.id,
      content: t.content,
      special: t.special,
      normalized: t.normalized,
    }));
    expect(ours).toEqual(table.added_tokens);
    for (const [t, id] of Object.entries(table.token_to_id)) {
      expect({ t, id: tok.tokenToId(t) ?? tok.unkTokenId }).toEqual({ t, id });
    }
    const warning = skippedTokensWarning(tok.skippedTokens, "dir")!;
    expect(warning.startsWith("53 of the tokens to add normalize (dir lowercases or strips accents)")).toBe(true);
    expect(warning).toContain('"A" (as "a"), "B" (as "b")');
    expect(warning).toContain('"od" (as "OD")');
    expect(skippedTokensWarning([], "dir")).toBeUndefined();
  });

  test("loading such a model for SFT warns with the tokens left out", async () => {
    const tmp = await mkdtemp(join(tmpdir(), "lower-"));
    try {
      await cp(dir, tmp, { recursive: true });
      await writeFile(join(tmp, "tokenizer_config.json"), JSON.stringify({ ...config, do_lower_case: true }));
      const warnings: string[] = [];
      const { tokenizer, added } = await loadModelAndTokenizer(tmp, new CpuBackend(), {
        warn: (m) => warnings.push(m),
      });
      expect(added).toBe(table.len - table.base_len);
      expect(tokenizer.vocabSize).toBe(table.len);
      expect(warnings.filter((w) => w.startsWith("53 of the tokens to add")).length).toBe(1);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });

  test("encodings and decodings are Python's", () => {
    for (const e of table.encodings) {
      const ids = tok.encode(e.text).ids;
      expect({ text: e.text, ids }).toEqual({ text: e.text, ids: e.ids });
      expect({ text: e.text, decoded: tok.decode(ids) }).toEqual({ text: e.text, decoded: e.decoded });
      expect({ text: e.text, decoded: tok.decode(ids, { skipSpecialTokens: true }) }).toEqual({
        text: e.text,
        decoded: e.decoded_skip_special,
      });
    }
    expect(table.decode_each.length).toBe(tok.vocabSize);
    for (const [id, text] of table.decode_each.entries()) expect({ id, text: tok.decode([id]) }).toEqual({ id, text });
  });

  test("saved and loaded again, the tokenizer is the same", () => {
    const files = tok.saveFiles();
    const again = BertTokenizer.fromFiles({
      tokenizerJson: files["tokenizer.json"],
      tokenizerConfig: files["tokenizer_config.json"],
      specialTokensMap: files["special_tokens_map.json"],
      source: "saved",
    });
    expect(again.vocabSize).toBe(table.len);
    for (const e of table.encodings) expect(again.encode(e.text).ids).toEqual(e.ids);
    expect(again.prepareForSft()).toBe(0);
  });
});
