/**
 * peft adapter directories: `adapter_config.json` + `adapter_model.safetensors`, as `PeftModel.save_pretrained`
 * writes them and `PeftModel.from_pretrained(base, dir)` reads them (see `model/lora.ts` for the tensors), plus
 * whatever else the directory holds (the SFT tokenizer, sft_task.json).
 *
 * Reading validates the config (only what this implementation runs) and every tensor's name and shape against
 * the base model's config before anything is allocated on a device.
 * @module
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { GPT2Config } from "../model/config.ts";
import { type HostTensor, shapeProblems } from "../model/gpt2.ts";
import {
  adapterConfigJson,
  adapterShapes,
  checkLoraSpec,
  type LoraSpec,
  parseAdapterConfig,
  savedTensorName,
} from "../model/lora.ts";
import { isFile } from "./atomic.ts";
import { readSafetensors, type ReadTensor, writeSafetensors } from "./safetensors.ts";

/** The two files of a peft adapter. */
export const ADAPTER_CONFIG = "adapter_config.json";
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";

/** Whether `dir` is a peft adapter directory (it has `adapter_config.json`). */
export async function isAdapterDir(dir: string): Promise<boolean> {
  return await isFile(join(dir, ADAPTER_CONFIG));
}

/** An adapter directory's config: the spec and the base model it names (`base_model_name_or_path`). */
export async function readAdapterConfig(dir: string): Promise<{ spec: LoraSpec; baseModel?: string }> {
  const file = join(dir, ADAPTER_CONFIG);
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, "utf8"));
  } catch (e) {
    throw new Error(`Cannot read ${file}: ${e instanceof Error ? e.message : e}`);
  }
  return parseAdapterConfig(json, file);
}

/**
 * Read an adapter's tensors for a base model of `config` (its vocabulary as resized for the adapter's
 * tokenizer): every tensor {@link adapterShapes} names, with that shape, and no other; the `.default` adapter
 * name some writers leave in the names is dropped ({@link savedTensorName}). Float dtypes are upcast to float32.
 */
export async function readAdapterTensors(
  dir: string,
  spec: LoraSpec,
  config: GPT2Config,
): Promise<Map<string, HostTensor>> {
  const file = join(dir, ADAPTER_WEIGHTS);
  checkLoraSpec(spec, config, `${join(dir, ADAPTER_CONFIG)} for this base model`);
  const shapes = adapterShapes(config, spec);
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(file));
  } catch (e) {
    throw new Error(`Cannot read the adapter ${file}: ${e instanceof Error ? e.message : e}`);
  }
  // every known tensor (of any dtype) is checked for presence and shape once, by the model's own check
  const found = new Map<string, ReadTensor>();
  const problems: string[] = [];
  for (const [raw, t] of readSafetensors(bytes, file)) {
    const name = savedTensorName(raw);
    if (shapes.has(name)) found.set(name, t);
    else problems.push(`unexpected tensor ${raw}`);
  }
  problems.push(...shapeProblems(shapes, found));
  const out = new Map<string, HostTensor>();
  for (const [name, t] of found) {
    if (t.data instanceof Float32Array) out.set(name, { shape: t.shape, data: t.data });
    else problems.push(`${name} is ${t.dtype} (expected a float tensor)`);
  }
  if (problems.length) throw new Error(`Cannot load the adapter ${file}: ${problems.join("; ")}`);
  return out;
}

/**
 * The files of an adapter directory: `adapter_config.json` (peft's fields for `spec`, `baseModel` as
 * `base_model_name_or_path`), `adapter_model.safetensors` (F32, peft's names) and `extraFiles`.
 */
export function adapterDirFiles(args: {
  spec: LoraSpec;
  baseModel: string;
  tensors: ReadonlyMap<string, HostTensor>;
  extraFiles?: Record<string, string | Uint8Array>;
}, where: string): Record<string, string | Uint8Array> {
  const files: Record<string, string | Uint8Array> = { ...(args.extraFiles ?? {}) };
  for (const reserved of [ADAPTER_CONFIG, ADAPTER_WEIGHTS, "config.json", "model.safetensors"]) {
    if (reserved in files) {
      throw new Error(`Cannot save the adapter to ${where}: extraFiles may not contain ${reserved}`);
    }
  }
  files[ADAPTER_CONFIG] = JSON.stringify(adapterConfigJson(args.spec, args.baseModel), null, 2) + "\n";
  files[ADAPTER_WEIGHTS] = writeSafetensors(new Map(args.tensors));
  return files;
}
