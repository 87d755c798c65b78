/**
 * Loading a model and its tokenizer for SFT, from a hub id, `id@revision` or a local HF directory: the
 * tokenizer gets the notebook's SFT tokens (unless it has them already) and the model's embeddings are
 * resized to match.
 *
 * A peft LoRA adapter (a directory or hub repo with `adapter_config.json`, given as the model itself or as
 * `adapter`) loads on its base model (`base_model_name_or_path`, or `base`): the base's weights, the adapter's
 * tokenizer where it has one, the embeddings resized to it, and the adapter merged into the weights (for
 * inference: no LoRA cost per token). The resize and the merge are done on the host tensors, so the weights
 * are placed on the device once.
 * @module
 */

import type { Backend } from "../backend/backend.ts";
import { join } from "node:path";
import { PEFT_ADAPTER_FILES, resolveModel, type ResolveModelOptions } from "../io/hub.ts";
import { isAdapterDir, readAdapterConfig, readAdapterTensors } from "../io/adapter_dir.ts";
import { isFile } from "../io/atomic.ts";
import { loadModelDir } from "../io/model_dir.ts";
import { type LoraSpec, mergeAdapter } from "./lora.ts";
import { resizeHostEmbeddings } from "./resize.ts";
import { loadTokenizer } from "../tokenizer/load.ts";
import { skippedTokensWarning } from "../tokenizer/tokenizer.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { GPT2 } from "./gpt2.ts";

/** A model with its tokenizer and where they came from. */
export interface LoadedPair {
  model: GPT2;
  tokenizer: Tokenizer;
  /** The local directory the files were read from (with an adapter: the base model's). */
  dir: string;
  /** The directory the tokenizer was read from: `dir`, or an adapter's own when it has a tokenizer. */
  tokenizerDir: string;
  /** Tokens added by `prepareForSft()` (0 when the tokenizer already had them or `prepare` was false). */
  added: number;
  /** The base model's vocabulary size, before any resize: ids from here on are rows the resize added. */
  baseVocab: number;
  /** The LoRA adapter merged into the weights, when one was loaded. */
  adapter?: { dir: string; spec: LoraSpec; base: string };
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
  /** A peft LoRA adapter (directory or hub id) to merge into the model. */
  adapter?: string;
  /** The adapter's base model, instead of its `base_model_name_or_path`. */
  base?: string;
}

/** Resolve `spec` (hub id or directory), load the weights onto `be` and the tokenizer. */
export async function loadModelAndTokenizer(spec: string, be: Backend, opts: LoadOptions = {}): Promise<LoadedPair> {
  const warn = opts.warn ?? ((m: string) => console.error(`warning: ${m}`));
  // a local adapter directory given as the model loads on its base model (a hub adapter: `adapter`)
  let adapterSpec = opts.adapter;
  let dir = await resolveModel(spec, opts.hub);
  if (adapterSpec === undefined && await isAdapterDir(dir) && !await isFile(join(dir, "config.json"))) {
    adapterSpec = dir;
  }
  let adapter: LoadedPair["adapter"];
  let tokenizerDir = dir;
  if (adapterSpec !== undefined) {
    const adir = adapterSpec === dir
      ? dir
      : await resolveModel(adapterSpec, { ...opts.hub, files: PEFT_ADAPTER_FILES });
    const { spec: lora, baseModel } = await readAdapterConfig(adir);
    const base = opts.base ?? (adapterSpec === dir ? baseModel : spec);
    if (base === undefined) {
      throw new Error(
        `Cannot load the adapter ${adir}: its adapter_config.json names no base model (base_model_name_or_path); ` +
          "pass the base model with --base",
      );
    }
    if (adapterSpec === dir) dir = await resolveModel(base, opts.hub);
    adapter = { dir: adir, spec: lora, base };
    // the adapter's tokenizer (with the SFT tokens its rows were trained for), else the base model's
    const names = ["tokenizer.json", "vocab.txt", "vocab.json"];
    if ((await Promise.all(names.map((n) => isFile(join(adir, n))))).some(Boolean)) tokenizerDir = adir;
  }
  const loaded = await loadModelDir(dir, { warn });
  const tokenizer = await loadTokenizer(tokenizerDir);
  const baseVocab = loaded.config.vocabSize;
  let added = 0;
  if (opts.prepare ?? true) {
    added = tokenizer.prepareForSft();
    const skipped = skippedTokensWarning(tokenizer.skippedTokens, dir);
    if (skipped !== undefined) warn(skipped);
  }
  // as the notebook's resize_token_embeddings(len(tokenizer)) after adding tokens, and the adapter merged, on
  // the host: the weights go to the device once
  let { config, tensors } = loaded;
  if (added > 0 || tokenizer.vocabSize > config.vocabSize) {
    ({ config, tensors } = resizeHostEmbeddings(config, tensors, tokenizer.vocabSize, opts.seed ?? 0));
  }
  if (adapter) {
    const adapterTensors = await readAdapterTensors(adapter.dir, adapter.spec, config);
    tensors = mergeAdapter(config, adapter.spec, tensors, adapterTensors);
  }
  const model = GPT2.fromTensors(be, config, tensors);
  return { model, tokenizer, dir, tokenizerDir, added, baseVocab, ...(adapter ? { adapter } : {}) };
}
