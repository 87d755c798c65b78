/**
 * LoRA (low-rank adaptation, Hu et al. 2021) as Python's `peft` does it for GPT-2, so that an adapter trained
 * here loads with `PeftModel.from_pretrained(base, dir)` and one trained there loads here.
 *
 * A targeted Conv1D `y = x·W + b` (W [in, out]) gets two small matrices, `lora_A` [r, in] and `lora_B`
 * [out, r], and becomes
 *
 *     y = x·W + b + s · (dropout(x)·Aᵀ)·Bᵀ        s = alpha / r   (alpha / √r with rsLoRA)
 *
 * W and b stay frozen: only A and B train (A starts uniform in ±1/√in, B at zero, so the adapted model starts
 * as the base model). Merging adds the product to the weight: W' = W + s·(B·A)ᵀ.
 *
 * Tokens added for SFT (`<|im_start|>`, `<|im_end|>`, `<|pad|>`) have new, untrained embedding rows; they
 * train as peft's `trainable_token_indices` does: their rows of the (tied) embedding are a trainable tensor
 * `trainable_tokens_delta` [n, C] (the rows themselves, not a difference) that replaces those rows of `wte`
 * for the input embedding and the LM head alike. The rest of `wte` stays frozen.
 *
 * The tensor names in `adapter_model.safetensors` are peft's: `base_model.model.<module>.lora_A.weight`,
 * `….lora_B.weight` and `base_model.model.transformer.wte.token_adapter.trainable_tokens_delta`.
 * @module
 */

import type { GPT2Config } from "./config.ts";
import type { HostTensor } from "./gpt2.ts";

/** The Conv1D modules of a GPT-2 block that LoRA can target, by peft's module-name suffix. */
export const LORA_TARGETS = ["c_attn", "c_proj", "c_fc"] as const;

/** The modules targeted by default: every Conv1D of the blocks (peft's GPT-2 default is c_attn alone). */
export const DEFAULT_LORA_TARGETS: readonly string[] = ["c_attn", "c_proj", "c_fc"];

/** A LoRA setup: what `adapter_config.json` records. */
export interface LoraSpec {
  /** The rank r of A [r, in] and B [out, r]. */
  r: number;
  /** The scale's numerator: s = alpha / r (alpha / √r with `rslora`). */
  alpha: number;
  /** Dropout on the adapter's input in training (peft's `lora_dropout`). */
  dropout: number;
  /** Module-name suffixes: a subset of {@link LORA_TARGETS} (`c_proj` is both attn.c_proj and mlp.c_proj). */
  targets: readonly string[];
  /** rsLoRA's scale alpha / √r (peft's `use_rslora`). */
  rslora?: boolean;
  /** Embedding rows that train (peft's `trainable_token_indices` on `wte`), sorted, distinct; may be empty. */
  tokenIds: readonly number[];
}

/** The adapter's scale s. */
export function loraScale(spec: Pick<LoraSpec, "r" | "alpha" | "rslora">): number {
  return spec.rslora ? spec.alpha / Math.sqrt(spec.r) : spec.alpha / spec.r;
}

/** One adapted module: its HF name (`transformer.h.0.attn.c_attn`) and the Conv1D's in and out features. */
export interface LoraModule {
  module: string;
  inFeatures: number;
  outFeatures: number;
  /** The block it is in. */
  layer: number;
  /** Its place among the block's four Conv1Ds (0 c_attn, 1 attn.c_proj, 2 c_fc, 3 mlp.c_proj). */
  slot: number;
}

/** The prefix peft puts before the base model's module names. */
const PEFT_PREFIX = "base_model.model.";

/** The name of the trainable token rows in `adapter_model.safetensors`. */
export const TOKEN_DELTA_NAME = `${PEFT_PREFIX}transformer.wte.token_adapter.trainable_tokens_delta`;

/** peft's tensor names of a module's A and B. */
export function loraTensorNames(module: string): { a: string; b: string } {
  return { a: `${PEFT_PREFIX}${module}.lora_A.weight`, b: `${PEFT_PREFIX}${module}.lora_B.weight` };
}

/**
 * A tensor name as `adapter_model.safetensors` holds it: peft's parameter names (and some writers' files) carry
 * the adapter's name, "default" (`….lora_A.default.weight`, `…trainable_tokens_delta.default`), which is dropped.
 */
export function savedTensorName(name: string): string {
  return name.replace(/\.default(\.weight)?$/, "$1");
}

/** The modules `spec` adapts in a model of `config`, block by block. */
export function loraModules(config: GPT2Config, spec: Pick<LoraSpec, "targets">): LoraModule[] {
  const C = config.nEmbd, inner = config.nInner ?? 4 * C;
  const slots: [string, string, number, number][] = [
    ["c_attn", "attn.c_attn", C, 3 * C],
    ["c_proj", "attn.c_proj", C, C],
    ["c_fc", "mlp.c_fc", C, inner],
    ["c_proj", "mlp.c_proj", inner, C],
  ];
  const out: LoraModule[] = [];
  for (let layer = 0; layer < config.nLayer; layer++) {
    slots.forEach(([suffix, name, inFeatures, outFeatures], slot) => {
      if (spec.targets.includes(suffix)) {
        out.push({ module: `transformer.h.${layer}.${name}`, inFeatures, outFeatures, layer, slot });
      }
    });
  }
  return out;
}

/** The shapes of every adapter tensor by peft name, in the order they are kept. */
export function adapterShapes(config: GPT2Config, spec: LoraSpec): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  if (spec.tokenIds.length) shapes.set(TOKEN_DELTA_NAME, [spec.tokenIds.length, config.nEmbd]);
  for (const m of loraModules(config, spec)) {
    const { a, b } = loraTensorNames(m.module);
    shapes.set(a, [spec.r, m.inFeatures]);
    shapes.set(b, [m.outFeatures, spec.r]);
  }
  return shapes;
}

/** The number of adapter values (what trains under LoRA). */
export function adapterSize(config: GPT2Config, spec: LoraSpec): number {
  let n = 0;
  for (const [, [a, b]] of adapterShapes(config, spec)) n += a! * b!;
  return n;
}

/** The LoRA settings of a training run (`--lora …`), as its checkpoint records them. */
export interface LoraSettings {
  r: number;
  alpha: number;
  dropout: number;
  targets: string[];
  rslora: boolean;
  /**
   * Which embedding rows train: "added" those of the tokens added for SFT (`<|im_start|>`, `<|im_end|>`,
   * `<|pad|>`, …: the ids the tokenizer added, and any row the embeddings' resize created), "all" every row (the
   * whole embedding and tied head train: for a small vocabulary or a base whose embedding is untrained), "none"
   * no row.
   */
  trainTokens: "added" | "all" | "none";
}

/** `--lora`'s defaults: r 8, alpha 16, dropout 0.05 (TRL's and peft's usual), every Conv1D, the added tokens. */
export const DEFAULT_LORA: Readonly<LoraSettings> = {
  r: 8,
  alpha: 16,
  dropout: 0.05,
  targets: [...DEFAULT_LORA_TARGETS],
  rslora: false,
  trainTokens: "added",
};

/**
 * The spec of `settings` for a model of `vocab` rows whose tokens from `firstNew` on were added for SFT (by the
 * tokenizer, or rows the embeddings' resize created).
 */
export function loraSpecOf(settings: LoraSettings, firstNew: number, vocab: number): LoraSpec {
  const tokenIds: number[] = [];
  const first = settings.trainTokens === "all" ? 0 : settings.trainTokens === "added" ? firstNew : vocab;
  for (let id = first; id < vocab; id++) tokenIds.push(id);
  const { r, alpha, dropout, targets, rslora } = settings;
  return { r, alpha, dropout, targets: LORA_TARGETS.filter((t) => targets.includes(t)), rslora, tokenIds };
}

/** Check a spec against a model's config (rank, targets, token ids); throws naming `where` and the field. */
export function checkLoraSpec(spec: LoraSpec, config: GPT2Config, where = "LoRA"): void {
  const fail = (msg: string): never => {
    throw new Error(`Invalid ${where}: ${msg}`);
  };
  if (!Number.isInteger(spec.r) || spec.r < 1) fail(`r ${spec.r} (expected a whole number ≥ 1)`);
  if (!(Number.isFinite(spec.alpha) && spec.alpha > 0)) fail(`alpha ${spec.alpha} (expected a number > 0)`);
  if (!(spec.dropout >= 0 && spec.dropout < 1)) fail(`dropout ${spec.dropout} (expected 0 ≤ p < 1)`);
  if (spec.targets.length === 0) fail(`no target modules (expected some of ${LORA_TARGETS.join(", ")})`);
  for (const t of spec.targets) {
    if (!(LORA_TARGETS as readonly string[]).includes(t)) {
      fail(`target module "${t}" (GPT-2's Conv1D modules are ${LORA_TARGETS.join(", ")})`);
    }
  }
  const V = config.vocabSize;
  spec.tokenIds.forEach((id, i) => {
    if (!Number.isInteger(id) || id < 0 || id >= V) fail(`trainable token id ${id} (expected 0 ≤ id < ${V})`);
    if (i > 0 && id <= spec.tokenIds[i - 1]!) fail(`trainable token ids must be sorted and distinct (${id})`);
  });
}

/**
 * New adapter tensors, as peft initialises them: A uniform in ±1/√in (`kaiming_uniform_(a=√5)`), B zero, and
 * the trainable token rows copied from `wte` [V, C].
 */
export function initAdapter(
  config: GPT2Config,
  spec: LoraSpec,
  wte: Float32Array,
  rng: () => number,
): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  const C = config.nEmbd;
  for (const [name, shape] of adapterShapes(config, spec)) {
    const data = new Float32Array(shape[0]! * shape[1]!);
    if (name === TOKEN_DELTA_NAME) {
      spec.tokenIds.forEach((id, i) => data.set(wte.subarray(id * C, (id + 1) * C), i * C));
    } else if (name.endsWith(".lora_A.weight")) {
      const bound = 1 / Math.sqrt(shape[1]!);
      for (let i = 0; i < data.length; i++) data[i] = (2 * rng() - 1) * bound;
    }
    out.set(name, { shape, data });
  }
  return out;
}

/**
 * The base model's tensors with the adapter merged in (peft's `merge_and_unload`): every adapted Conv1D weight
 * W [in, out] += s·(B·A)ᵀ, computed in float64, and the trainable token rows written into `wte`. `base` is not
 * changed; untouched tensors are shared.
 */
export function mergeAdapter(
  config: GPT2Config,
  spec: LoraSpec,
  base: ReadonlyMap<string, HostTensor>,
  adapter: ReadonlyMap<string, HostTensor>,
): Map<string, HostTensor> {
  const out = new Map(base);
  const s = loraScale(spec), r = spec.r;
  for (const m of loraModules(config, spec)) {
    const names = loraTensorNames(m.module);
    const A = adapter.get(names.a)!.data, B = adapter.get(names.b)!.data;
    const wName = `${m.module}.weight`;
    const W = base.get(wName)!;
    const merged = new Float32Array(W.data);
    const I = m.inFeatures, O = m.outFeatures;
    for (let i = 0; i < I; i++) {
      for (let o = 0; o < O; o++) {
        let acc = 0;
        for (let k = 0; k < r; k++) acc += B[o * r + k]! * A[k * I + i]!;
        merged[i * O + o] = merged[i * O + o]! + s * acc;
      }
    }
    out.set(wName, { shape: [...W.shape], data: merged });
  }
  if (spec.tokenIds.length) {
    const wte = base.get("transformer.wte.weight")!;
    const C = config.nEmbd;
    const data = new Float32Array(wte.data);
    const delta = adapter.get(TOKEN_DELTA_NAME)!.data;
    spec.tokenIds.forEach((id, i) => data.set(delta.subarray(i * C, (i + 1) * C), id * C));
    out.set("transformer.wte.weight", { shape: [...wte.shape], data });
  }
  return out;
}

/**
 * `adapter_config.json` as peft 0.21 writes it for this spec (the fields peft reads; the others at their
 * defaults). `baseModel` is `base_model_name_or_path`.
 */
export function adapterConfigJson(spec: LoraSpec, baseModel: string): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: "none",
    fan_in_fan_out: true,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: spec.alpha,
    lora_bias: false,
    lora_dropout: spec.dropout,
    modules_to_save: null,
    peft_type: "LORA",
    r: spec.r,
    rank_pattern: {},
    revision: null,
    target_modules: [...spec.targets],
    task_type: "CAUSAL_LM",
    trainable_token_indices: spec.tokenIds.length ? { wte: [...spec.tokenIds] } : null,
    use_dora: false,
    use_rslora: !!spec.rslora,
  };
}

/**
 * Read an `adapter_config.json` (already JSON-parsed) into a spec, refusing what this implementation does not
 * run (another peft type, DoRA, bias training, modules_to_save, rank or alpha patterns, a regex of targets, …)
 * with an error naming `file` and the field.
 */
export function parseAdapterConfig(json: unknown, file: string): { spec: LoraSpec; baseModel?: string } {
  const fail = (msg: string): never => {
    throw new Error(`Cannot read ${file}: ${msg}`);
  };
  if (typeof json !== "object" || json === null || Array.isArray(json)) fail("expected a JSON object");
  const o = json as Record<string, unknown>;
  if (o.peft_type !== "LORA") fail(`peft_type ${JSON.stringify(o.peft_type)} (only "LORA" adapters are supported)`);
  const num = (k: string): number => {
    const v = o[k];
    if (typeof v !== "number" || !Number.isFinite(v)) fail(`field "${k}" is ${JSON.stringify(v)} (expected a number)`);
    return v as number;
  };
  const unsupported = (k: string, ok: (v: unknown) => boolean, what: string) => {
    if (k in o && !ok(o[k])) fail(`field "${k}" is ${JSON.stringify(o[k])}: ${what} is not supported`);
  };
  const empty = (v: unknown) => v === null || v === undefined || (typeof v === "object" && Object.keys(v).length === 0);
  unsupported("use_dora", (v) => v === false || v === null, "DoRA");
  unsupported("bias", (v) => v === "none", "training biases");
  unsupported("lora_bias", (v) => v === false || v === null, "a LoRA bias");
  unsupported("modules_to_save", empty, "modules_to_save");
  unsupported("rank_pattern", empty, "a per-module rank");
  unsupported("alpha_pattern", empty, "a per-module alpha");
  unsupported("layers_to_transform", (v) => v === null, "adapting only some layers");
  unsupported("target_parameters", (v) => v === null || (Array.isArray(v) && v.length === 0), "target_parameters");
  unsupported("layer_replication", (v) => v === null, "layer replication");
  unsupported("fan_in_fan_out", (v) => v === true || v === false, "fan_in_fan_out other than a boolean");
  const targetsRaw = o.target_modules;
  let targets: string[];
  if (typeof targetsRaw === "string") {
    // peft treats a string as a regex over full module names; the plain names of a block's Conv1Ds match
    // exactly those
    if (!(LORA_TARGETS as readonly string[]).includes(targetsRaw)) {
      fail(`field "target_modules" is the pattern ${JSON.stringify(targetsRaw)} (expected a list of module names)`);
    }
    targets = [targetsRaw];
  } else if (Array.isArray(targetsRaw) && targetsRaw.every((t) => typeof t === "string")) {
    targets = [...new Set(targetsRaw as string[])];
  } else {
    return fail(`field "target_modules" is ${JSON.stringify(targetsRaw)} (expected a list of module names)`);
  }
  for (const t of targets) {
    if (!(LORA_TARGETS as readonly string[]).includes(t)) {
      fail(`target module "${t}" is not one of GPT-2's Conv1D modules (${LORA_TARGETS.join(", ")})`);
    }
  }
  targets = LORA_TARGETS.filter((t) => targets.includes(t)); // one order, whatever the file's
  let tokenIds: number[] = [];
  const tti = o.trainable_token_indices;
  if (tti !== null && tti !== undefined) {
    const list = Array.isArray(tti) ? tti : typeof tti === "object" ? (tti as Record<string, unknown>).wte : undefined;
    const keys = Array.isArray(tti) ? [] : Object.keys(tti as object).filter((k) => k !== "wte");
    if (keys.length) fail(`field "trainable_token_indices" names ${keys.join(", ")} (only wte is supported)`);
    if (!Array.isArray(list) || !list.every((x) => Number.isInteger(x) && x >= 0)) {
      fail(`field "trainable_token_indices" is ${JSON.stringify(tti)} (expected {"wte": [token ids]})`);
    }
    tokenIds = [...new Set(list as number[])].sort((a, b) => a - b);
  }
  const spec: LoraSpec = {
    r: num("r"),
    alpha: num("lora_alpha"),
    dropout: "lora_dropout" in o ? num("lora_dropout") : 0,
    targets,
    rslora: o.use_rslora === true,
    tokenIds,
  };
  if (!Number.isInteger(spec.r) || spec.r < 1) fail(`field "r" is ${spec.r} (expected a whole number ≥ 1)`);
  const baseModel = typeof o.base_model_name_or_path === "string" ? o.base_model_name_or_path : undefined;
  return { spec, ...(baseModel !== undefined ? { baseModel } : {}) };
}
