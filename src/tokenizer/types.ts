/**
 * What every tokenizer of the project is to the rest of it: the {@link Tokenizer} interface that the BERT
 * WordPiece tokenizer (uer's Chinese GPT-2s, tokenizer.ts) and the byte-level BPE (the original GPT-2s,
 * byte_level.ts) both implement, and the types of their inputs and outputs. Nothing outside src/tokenizer/
 * needs to know which of the two it has; {@link loadTokenizer} (load.ts) picks it from the files.
 * @module
 */

import type { SpecialRole } from "./bert_json.ts";

/** The result of {@link Tokenizer.encode}. */
export interface Encoding {
  ids: number[];
  /** The vocabulary entry of each id (`convert_ids_to_tokens`). */
  tokens: string[];
  /** [start, end) of each token in the input, in UTF-16 indices; [0, 0] for `[CLS]` / `[SEP]`. */
  offsets: [number, number][];
}

/** Options of {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /** Frame with the post-processor's tokens (`[CLS] … [SEP]`). Default true. */
  addSpecialTokens?: boolean;
  /**
   * Truncate to at most this many ids, special tokens included, as HF's `truncation=True, max_length`:
   * the content is cut from the right to make room for the framing.
   */
  maxLength?: number;
}

/** Options of {@link Tokenizer.decode}. */
export interface DecodeOptions {
  /** Leave out special tokens (`[CLS]`, `<|im_end|>`, …). Default false. */
  skipSpecialTokens?: boolean;
  /** Apply transformers' `clean_up_tokenization` (" ." → "." …). Default: the config's, else false (transformers 5). */
  cleanUpTokenizationSpaces?: boolean;
}

/** A tokenizer's files, as text (what a model dir or the hub gives). */
export interface TokenizerFiles {
  tokenizerJson?: string;
  tokenizerConfig?: string;
  /** A WordPiece vocabulary (BERT), one token per line. */
  vocabTxt?: string;
  /** A byte-level BPE's vocabulary and merges (GPT-2), where there is no tokenizer.json. */
  vocabJson?: string;
  mergesTxt?: string;
  specialTokensMap?: string;
  /** Where the files came from (a dir or repo id), for error messages. */
  source: string;
}

/** A token {@link Tokenizer.addTokens} left out, and the added token it normalizes like. */
export interface SkippedToken {
  token: string;
  sameAs: string;
}

/** The notebook's `add_special_tokens` call before SFT. */
export const SFT_SPECIAL_TOKENS: { pad_token: string; additional_special_tokens: readonly string[] } = {
  pad_token: "<|pad|>",
  additional_special_tokens: ["<|im_start|>", "<|im_end|>"],
};

/** transformers' `clean_up_tokenization`: " ." → ".", " n't" → "n't", … (off by default in transformers 5). */
export function cleanUpTokenization(text: string): string {
  return text.replaceAll(" .", ".").replaceAll(" ?", "?").replaceAll(" !", "!").replaceAll(" ,", ",")
    .replaceAll(" ' ", "'").replaceAll(" n't", "n't").replaceAll(" 'm", "'m").replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
}

/** A tokenizer with Hugging Face (transformers 5 + Rust tokenizers) behaviour. */
export interface Tokenizer {
  /** Where the tokenizer was loaded from. */
  readonly source: string;
  /** `len(tokenizer)`: distinct ids of the vocabulary and the added tokens. */
  readonly vocabSize: number;
  /** The pad token's id (an error where there is none: {@link prepareForSft} adds one). */
  readonly padTokenId: number;
  /** The unknown token's id, where there is one. */
  readonly unkTokenId: number | undefined;
  /** The id a saved config.json names as `bos_token_id` (`[CLS]` for a BERT tokenizer, as the notebook). */
  readonly bosTokenId: number | undefined;
  /** The id a saved config.json names as `eos_token_id` (`[SEP]` for a BERT tokenizer). */
  readonly eosTokenId: number | undefined;
  /** Ids of all special added tokens, ascending. */
  readonly specialTokenIds: number[];
  /** The additional special tokens (`<|im_start|>`, `<|im_end|>` after {@link prepareForSft}). */
  readonly additionalSpecialTokens: readonly string[];
  /** The tokens the last {@link addTokens} left out (each normalizes like one already added). */
  readonly skippedTokens: readonly SkippedToken[];
  /** The vocabulary entry of an id (`convert_ids_to_tokens`). */
  idToToken(id: number): string | undefined;
  /** The id of a vocabulary entry or added token. */
  tokenToId(token: string): number | undefined;
  /** The token set for a role (`pad_token`, …), or undefined. */
  specialToken(role: SpecialRole): string | undefined;
  /** `tokenizer(text, add_special_tokens=…, truncation=True, max_length=…, return_offsets_mapping=True)`. */
  encode(text: string, opts?: EncodeOptions): Encoding;
  /** `tokenizer.decode(ids, skip_special_tokens=…)`. */
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  /** `add_special_tokens({...})`; returns the number of new ids. */
  addSpecialTokens(
    map: Partial<Record<SpecialRole, string>> & { additional_special_tokens?: readonly string[] },
  ): number;
  /** `add_tokens([...])`; returns the number of new ids. */
  addTokens(tokens: readonly string[]): number;
  /** The additions before SFT (the pad and ChatML tokens, and for WordPiece the notebook's ASCII tokens). */
  prepareForSft(): number;
  /** The files of the tokenizer in a saved model directory, by name. */
  saveFiles(): Record<string, string>;
}
