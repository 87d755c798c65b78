/**
 * Loading a tokenizer from a model directory or from file contents: a BERT WordPiece tokenizer
 * (tokenizer.json with a WordPiece model, or vocab.txt) or a byte-level BPE (tokenizer.json with a BPE
 * model, or vocab.json + merges.txt), as one {@link Tokenizer}.
 * @module
 */

import { join } from "node:path";
import { readOptional } from "./added_tokens.ts";
import { ByteLevelBpeTokenizer } from "./byte_level.ts";
import { BertTokenizer } from "./tokenizer.ts";
import type { Tokenizer, TokenizerFiles } from "./types.ts";

/** The files a tokenizer may be read from, in a model directory or a hub repository. */
export const TOKENIZER_FILE_NAMES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "vocab.txt",
  "vocab.json",
  "merges.txt",
] as const;

/** The tokenizer of the files given: byte-level BPE where they describe one, else BERT WordPiece. */
export function tokenizerFromFiles(files: TokenizerFiles): Tokenizer {
  return ByteLevelBpeTokenizer.handles(files) ? ByteLevelBpeTokenizer.fromFiles(files) : BertTokenizer.fromFiles(files);
}

/** Read a model directory's tokenizer files (those present) and build its tokenizer. */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const [tokenizerJson, tokenizerConfig, specialTokensMap, vocabTxt, vocabJson, mergesTxt] = await Promise.all(
    TOKENIZER_FILE_NAMES.map((f) => readOptional(join(dir, f))),
  );
  return tokenizerFromFiles({
    tokenizerJson,
    tokenizerConfig,
    specialTokensMap,
    vocabTxt,
    vocabJson,
    mergesTxt,
    source: dir,
  });
}
