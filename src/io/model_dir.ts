/**
 * Hugging Face model directories: load a GPT-2 (`config.json` + `model.safetensors` or
 * `pytorch_model.bin`, sharded or not) and save one that Python `transformers` loads as it is.
 *
 * Loading normalises the checkpoint to this project's parameter set ({@link expectedParamShapes}):
 * names without the `transformer.` prefix (older checkpoints) get it, the legacy causal-mask buffers
 * `attn.bias` / `attn.masked_bias` are dropped, `lm_head.weight` is dropped as tied to
 * `transformer.wte.weight` (with a warning if it differs), every tensor is upcast to float32, and all
 * missing, unexpected and wrongly shaped tensors are reported together in one error.
 * @module
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { configToJson, type GPT2Config, parameterShapes, parseConfig } from "../model/config.ts";
import { atomicWriteDir, isFile } from "./atomic.ts";
import { readSafetensors, type ReadTensor, writeSafetensors } from "./safetensors.ts";
import { readTorchBin } from "./torch_pickle.ts";

/** A float32 tensor by HF name. */
export interface ModelTensor {
  shape: number[];
  data: Float32Array;
}

/** What {@link loadModelDir} returns. */
export interface LoadedModel {
  config: GPT2Config;
  /** The parameters, in {@link expectedParamShapes} order. */
  tensors: Map<string, ModelTensor>;
  /** The weights file read (for a sharded checkpoint, its index file). */
  weightsFile: string;
}

/** Options of {@link loadModelDir}. */
export interface LoadModelDirOptions {
  /** Receives warnings (token ids outside the vocabulary, an untied `lm_head.weight`). */
  warn?: (msg: string) => void;
}

/** What {@link saveModelDir} writes. */
export interface SaveModelDirOptions {
  config: GPT2Config;
  /** Exactly the parameters of {@link expectedParamShapes}; `lm_head.weight` is not saved (tied). */
  tensors: Map<string, ModelTensor>;
  /** generation_config.json; default: the config's bos/eos/pad token ids. */
  generationConfig?: Record<string, unknown>;
  /** More files for the directory by name (tokenizer.json, vocab.txt, …). */
  extraFiles?: Record<string, string | Uint8Array>;
}

/** The weight files looked for, in order of preference. */
const WEIGHT_FILES = [
  "model.safetensors",
  "model.safetensors.index.json",
  "pytorch_model.bin",
  "pytorch_model.bin.index.json",
];

/** The HF names and shapes of the parameters ({@link parameterShapes}), as this module calls them. */
export const expectedParamShapes: (config: GPT2Config) => Map<string, number[]> = parameterShapes;

async function readJson(path: string): Promise<unknown> {
  const text = await readFile(path, "utf8");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`Cannot read ${path}: invalid JSON: ${(e as Error).message}`);
  }
}

async function readWeights(path: string): Promise<Map<string, ReadTensor>> {
  const buf = await readFile(path);
  // A view, not a copy (`new Uint8Array(buffer)` would copy the whole file).
  const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  return path.endsWith(".safetensors") ? readSafetensors(bytes, path) : readTorchBin(bytes, path);
}

/** Read a sharded checkpoint through its index (`{"weight_map": {name: shard file}}`). */
async function readSharded(dir: string, indexPath: string): Promise<Map<string, ReadTensor>> {
  const index = await readJson(indexPath) as { weight_map?: Record<string, string> };
  const map = index?.weight_map;
  if (typeof map !== "object" || map === null) throw new Error(`Cannot read ${indexPath}: no "weight_map" object`);
  const out = new Map<string, ReadTensor>();
  for (const shard of [...new Set(Object.values(map))].sort()) {
    for (const [name, t] of await readWeights(join(dir, shard))) out.set(name, t);
  }
  return out;
}

const LEGACY_BUFFER = /(^|\.)h\.\d+\.attn\.(bias|masked_bias)$/;

function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/**
 * Check `tensors` against the parameter set of `config`. Returns the problems, one line each:
 * missing, unexpected, wrongly shaped, not a float tensor.
 */
function checkTensors(
  tensors: Map<string, { shape: number[]; data: Float32Array | Int32Array; dtype?: string }>,
  config: GPT2Config,
): string[] {
  const expected = expectedParamShapes(config), problems: string[] = [];
  for (const [name, shape] of expected) {
    const t = tensors.get(name);
    if (!t) problems.push(`missing ${name} ${shapeStr(shape)}`);
    else if (t.shape.join(",") !== shape.join(",")) {
      problems.push(`${name} has shape ${shapeStr(t.shape)}, expected ${shapeStr(shape)}`);
    } else if (!(t.data instanceof Float32Array)) {
      problems.push(`${name} has integer dtype ${t.dtype ?? "I32"}, expected a float tensor`);
    }
  }
  for (const [name, t] of tensors) if (!expected.has(name)) problems.push(`unexpected ${name} ${shapeStr(t.shape)}`);
  return problems;
}

function sameValues(a: Float32Array | Int32Array, b: Float32Array | Int32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Load an HF GPT-2 model directory: `config.json` ({@link parseConfig}) and the weights from
 * `model.safetensors`, else `model.safetensors.index.json` (sharded), else `pytorch_model.bin`, else
 * `pytorch_model.bin.index.json`. See the module doc for the normalisation. Throws one error listing
 * every missing, unexpected or wrongly shaped tensor, naming the weights file.
 */
export async function loadModelDir(dir: string, opts: LoadModelDirOptions = {}): Promise<LoadedModel> {
  const configPath = join(dir, "config.json");
  if (!(await isFile(configPath))) throw new Error(`Cannot load model from ${dir}: no config.json`);
  const config = parseConfig(await readJson(configPath), {
    file: configPath,
    ...(opts.warn ? { warn: opts.warn } : {}),
  });

  let weightsFile: string | undefined;
  for (const f of WEIGHT_FILES) {
    if (await isFile(join(dir, f))) {
      weightsFile = join(dir, f);
      break;
    }
  }
  if (!weightsFile) {
    throw new Error(`Cannot load model from ${dir}: no weights file (looked for ${WEIGHT_FILES.join(", ")})`);
  }
  const raw = weightsFile.endsWith(".index.json")
    ? await readSharded(dir, weightsFile)
    : await readWeights(weightsFile);

  // Normalise names: add the `transformer.` prefix where it is missing; drop the legacy mask buffers.
  const expected = expectedParamShapes(config);
  const named = new Map<string, ReadTensor>();
  let lmHead: ReadTensor | undefined;
  for (const [name, t] of raw) {
    if (LEGACY_BUFFER.test(name)) continue;
    if (name === "lm_head.weight") {
      lmHead = t;
      continue;
    }
    const full = !name.startsWith("transformer.") && expected.has(`transformer.${name}`) ? `transformer.${name}` : name;
    if (named.has(full)) throw new Error(`Cannot load model from ${weightsFile}: tensor ${full} appears twice`);
    named.set(full, t);
  }

  const problems = checkTensors(named, config);
  if (problems.length) {
    throw new Error(
      `Cannot load model from ${weightsFile}: ${problems.length} tensor problem${
        problems.length > 1 ? "s" : ""
      } for the config (n_layer ${config.nLayer}, n_embd ${config.nEmbd}, vocab_size ${config.vocabSize}, n_positions ${config.nPositions}):\n  ${
        problems.join("\n  ")
      }`,
    );
  }
  if (!config.tieWordEmbeddings) {
    opts.warn?.(`${configPath}: tie_word_embeddings is false, but this implementation always ties lm_head to wte`);
  }
  const wte = named.get("transformer.wte.weight")!;
  if (lmHead && !sameValues(lmHead.data, wte.data)) {
    opts.warn?.(
      `${weightsFile}: lm_head.weight differs from transformer.wte.weight; it is ignored (the LM head is tied to wte)`,
    );
  }

  const tensors = new Map<string, ModelTensor>();
  for (const name of expected.keys()) {
    const t = named.get(name)!;
    tensors.set(name, { shape: t.shape, data: t.data as Float32Array });
  }
  return { config, tensors, weightsFile };
}

/**
 * The files of an HF model directory that Python `transformers` loads as it is: `config.json`
 * ({@link configToJson}), `generation_config.json`, `model.safetensors` (F32, the parameters of
 * {@link expectedParamShapes}; the tied `lm_head.weight` is not saved, as transformers does) and
 * `extraFiles`. `where` names the directory in errors.
 */
export function modelDirFiles(opts: SaveModelDirOptions, where: string): Record<string, string | Uint8Array> {
  const { config, tensors } = opts;
  const problems = checkTensors(tensors, config);
  if (problems.length) {
    throw new Error(`Cannot save model to ${where}: ${problems.length} tensor problem(s):\n  ${problems.join("\n  ")}`);
  }
  const generation = opts.generationConfig ?? {
    _from_model_config: true,
    ...(config.bosTokenId !== undefined ? { bos_token_id: config.bosTokenId } : {}),
    ...(config.eosTokenId !== undefined ? { eos_token_id: config.eosTokenId } : {}),
    ...(config.padTokenId !== undefined ? { pad_token_id: config.padTokenId } : {}),
  };
  const files: Record<string, string | Uint8Array> = { ...(opts.extraFiles ?? {}) };
  for (const reserved of ["config.json", "generation_config.json", "model.safetensors"]) {
    if (reserved in files) throw new Error(`Cannot save model to ${where}: extraFiles may not contain ${reserved}`);
  }
  files["config.json"] = JSON.stringify(configToJson(config), null, 2) + "\n";
  files["generation_config.json"] = JSON.stringify(generation, null, 2) + "\n";
  files["model.safetensors"] = writeSafetensors(tensors);
  return files;
}

/**
 * Save an HF model directory ({@link modelDirFiles}). The directory is written whole and swapped in
 * atomically (see `atomicWriteDir`): files of an earlier save that are not written again are gone afterwards.
 */
export async function saveModelDir(dir: string, opts: SaveModelDirOptions): Promise<void> {
  await atomicWriteDir(dir, modelDirFiles(opts, dir));
}
