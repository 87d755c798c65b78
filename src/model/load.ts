/**
 * Loading a model and its tokenizer for SFT, from a hub id, `id@revision` or a local HF directory: the
 * tokenizer gets the notebook's SFT tokens (unless it has them already) and the model's embeddings are
 * resized to match.
 * @module
 */

import type { Backend } from "../backend/backend.ts";
import { resolveModel, type ResolveModelOptions } from "../io/hub.ts";
import { loadModelDir } from "../io/model_dir.ts";
import { loadTokenizer } from "../tokenizer/load.ts";
import { skippedTokensWarning } from "../tokenizer/tokenizer.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { GPT2 } from "./gpt2.ts";

/** A model with its tokenizer and where they came from. */
export interface LoadedPair {
  model: GPT2;
  tokenizer: Tokenizer;
  /** The local directory the files were read from. */
  dir: string;
  /** Tokens added by `prepareForSft()` (0 when the tokenizer already had them or `prepare` was false). */
  added: number;
}

/** Options of {@link loadModelAndTokenizer}. */
export interface LoadOptions {
  /** Add the notebook's SFT tokens and resize the embeddings (default true). */
  prepare?: boolean;
  /** Hub options (cache, offline, token, progress). */
  hub?: ResolveModelOptions;
  /** Warnings (config ids outside the vocab, …); default stderr. */
  warn?: (msg: string) => void;
  /** Seed for the new embedding rows. */
  seed?: number;
}

/** Resolve `spec` (hub id or directory), load the weights onto `be` and the tokenizer. */
export async function loadModelAndTokenizer(spec: string, be: Backend, opts: LoadOptions = {}): Promise<LoadedPair> {
  const warn = opts.warn ?? ((m: string) => console.error(`warning: ${m}`));
  const dir = await resolveModel(spec, opts.hub);
  const loaded = await loadModelDir(dir, { warn });
  const tokenizer = await loadTokenizer(dir);
  const model = GPT2.fromTensors(be, loaded.config, loaded.tensors);
  let added = 0;
  if (opts.prepare ?? true) {
    added = tokenizer.prepareForSft();
    const skipped = skippedTokensWarning(tokenizer.skippedTokens, dir);
    if (skipped !== undefined) warn(skipped);
  }
  // as the notebook's resize_token_embeddings(len(tokenizer)) after adding tokens
  if (added > 0 || tokenizer.vocabSize > model.config.vocabSize) {
    await model.resizeTokenEmbeddings(tokenizer.vocabSize, opts.seed ?? 0);
  }
  return { model, tokenizer, dir, added };
}
