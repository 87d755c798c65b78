/**
 * The GPT-2 configuration, read from and written to a Hugging Face `config.json`.
 *
 * {@link parseConfig} accepts what `GPT2Config` in `transformers` writes (`n_positions` or the older
 * `n_ctx`), checks what this implementation can run (an activation of {@link ACTIVATION_FUNCTIONS}, `n_embd`
 * divisible by `n_head`, the MLP width of `n_inner`, no cross-attention) and keeps every field in `raw` so
 * that {@link configToJson} writes them back.
 * @module
 */

import type { Activation } from "../backend/backend.ts";

/** A GPT-2 configuration (the fields of HF `GPT2Config` this project uses, camelCased). */
export interface GPT2Config {
  vocabSize: number;
  /** Maximum sequence length (`n_positions`, older configs `n_ctx`). */
  nPositions: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  /** The MLP's inner width (`n_inner`); unset: the standard 4·n_embd. */
  nInner?: number;
  layerNormEpsilon: number;
  /** The MLP activation as the config spells it: a key of {@link ACTIVATION_FUNCTIONS}. */
  activationFunction: string;
  /** Unset when absent, null, or outside [0, vocabSize). */
  bosTokenId?: number;
  eosTokenId?: number;
  padTokenId?: number;
  embdPdrop: number;
  residPdrop: number;
  attnPdrop: number;
  tieWordEmbeddings: boolean;
  /** The config.json object as read; {@link configToJson} keeps its fields that this interface does not model. */
  raw: Record<string, unknown>;
}

/** Options of {@link parseConfig}. */
export interface ParseConfigOptions {
  /** The file the JSON came from, for error messages. */
  file: string;
  /** Receives warnings (e.g. a token id outside the vocabulary). */
  warn?: (msg: string) => void;
}

/**
 * The `activation_function` values this implementation runs (transformers' `ACT2FN` names) and the
 * activation each computes (backend.ts {@link Activation}). Names of one function share it: `gelu_new`,
 * `gelu_pytorch_tanh` and `gelu_fast` are the tanh GELU (`gelu_fast` writes √(2/π) as 0.7978845608, 3e-12
 * from the constant used here); `gelu` and `gelu_python` the exact erf GELU; `silu` and `swish` x·σ(x).
 */
export const ACTIVATION_FUNCTIONS: Readonly<Record<string, Activation>> = {
  gelu_new: "gelu_new",
  gelu_pytorch_tanh: "gelu_new",
  gelu_fast: "gelu_new",
  gelu: "gelu",
  gelu_python: "gelu",
  relu: "relu",
  silu: "silu",
  swish: "silu",
  quick_gelu: "quick_gelu",
};

/** The activation that a config's `activation_function` names (see {@link ACTIVATION_FUNCTIONS}); throws on another. */
export function activationOf(name: string): Activation {
  const a = Object.hasOwn(ACTIVATION_FUNCTIONS, name) ? ACTIVATION_FUNCTIONS[name] : undefined;
  if (!a) {
    const known = Object.keys(ACTIVATION_FUNCTIONS).join(", ");
    throw new Error(`Cannot run GPT-2: activation_function ${JSON.stringify(name)} is not supported (${known})`);
  }
  return a;
}

/**
 * Parse an HF GPT-2 `config.json` (already JSON-parsed). Throws on a missing or invalid required field,
 * naming the file and the field: `Cannot read config.json: missing field "n_head"`.
 */
export function parseConfig(json: unknown, opts: ParseConfigOptions): GPT2Config {
  const file = opts.file;
  const fail = (msg: string): never => {
    throw new Error(`Cannot read ${file}: ${msg}`);
  };
  if (typeof json !== "object" || json === null || Array.isArray(json)) fail("expected a JSON object");
  const raw = json as Record<string, unknown>;

  if (raw.model_type !== undefined && raw.model_type !== "gpt2") {
    fail(`model_type is ${JSON.stringify(raw.model_type)}, expected "gpt2"`);
  }

  const posInt = (key: string, v: unknown): number => {
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      fail(`field "${key}" must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v as number;
  };
  const required = (key: string): number => {
    if (raw[key] === undefined || raw[key] === null) fail(`missing field "${key}"`);
    return posInt(key, raw[key]);
  };
  const num = (key: string, dflt: number, min: number, max: number): number => {
    const v = raw[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) {
      fail(`field "${key}" must be a number in [${min}, ${max}], got ${JSON.stringify(v)}`);
    }
    return v as number;
  };

  const vocabSize = required("vocab_size");
  let nPositions: number;
  if (raw.n_positions !== undefined && raw.n_positions !== null) nPositions = posInt("n_positions", raw.n_positions);
  else if (raw.n_ctx !== undefined && raw.n_ctx !== null) nPositions = posInt("n_ctx", raw.n_ctx);
  else return fail(`missing field "n_positions" (or "n_ctx")`);
  const nEmbd = required("n_embd");
  const nLayer = required("n_layer");
  const nHead = required("n_head");
  if (nEmbd % nHead !== 0) fail(`n_embd (${nEmbd}) is not divisible by n_head (${nHead})`);

  const act = raw.activation_function ?? "gelu_new";
  if (typeof act !== "string" || !Object.hasOwn(ACTIVATION_FUNCTIONS, act)) {
    fail(
      `field "activation_function" is ${JSON.stringify(act)}, expected one of ${
        Object.keys(ACTIVATION_FUNCTIONS).map((s) => `"${s}"`).join(", ")
      }`,
    );
  }
  const nInner = raw.n_inner === undefined || raw.n_inner === null ? undefined : posInt("n_inner", raw.n_inner);
  // reorder_and_upcast_attn (HF's mixed-precision guard: the attention scores in float32, scaled before the
  // product) is what this implementation always computes, in float32; accepted as is.
  if (raw.reorder_and_upcast_attn !== undefined && typeof raw.reorder_and_upcast_attn !== "boolean") {
    fail(`field "reorder_and_upcast_attn" must be a boolean, got ${JSON.stringify(raw.reorder_and_upcast_attn)}`);
  }
  // Architecture variants this implementation does not compute: refuse rather than run a different model.
  if (raw.add_cross_attention === true) fail(`field "add_cross_attention" is true; cross-attention is not supported`);
  if (raw.scale_attn_weights === false) fail(`field "scale_attn_weights" is false; only scaled attention is supported`);
  if (raw.scale_attn_by_inverse_layer_idx === true) {
    fail(`field "scale_attn_by_inverse_layer_idx" is true; it is not supported`);
  }

  const layerNormEpsilon = num("layer_norm_epsilon", 1e-5, Number.MIN_VALUE, 1);
  const embdPdrop = num("embd_pdrop", 0.1, 0, 1);
  const residPdrop = num("resid_pdrop", 0.1, 0, 1);
  const attnPdrop = num("attn_pdrop", 0.1, 0, 1);
  const tie = raw.tie_word_embeddings ?? true;
  if (typeof tie !== "boolean") fail(`field "tie_word_embeddings" must be a boolean, got ${JSON.stringify(tie)}`);

  const tokenId = (key: string): number | undefined => {
    const v = raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v)) {
      fail(`field "${key}" must be an integer, got ${JSON.stringify(v)}`);
    }
    if ((v as number) < 0 || (v as number) >= vocabSize) {
      opts.warn?.(`${file}: ${key} ${v} is outside the vocabulary [0, ${vocabSize}); treating it as unset`);
      return undefined;
    }
    return v as number;
  };

  const cfg: GPT2Config = {
    vocabSize,
    nPositions,
    nEmbd,
    nLayer,
    nHead,
    ...(nInner !== undefined ? { nInner } : {}),
    layerNormEpsilon,
    activationFunction: act as string,
    embdPdrop,
    residPdrop,
    attnPdrop,
    tieWordEmbeddings: tie as boolean,
    raw: { ...raw },
  };
  const bos = tokenId("bos_token_id"), eos = tokenId("eos_token_id"), pad = tokenId("pad_token_id");
  if (bos !== undefined) cfg.bosTokenId = bos;
  if (eos !== undefined) cfg.eosTokenId = eos;
  if (pad !== undefined) cfg.padTokenId = pad;
  return cfg;
}

/**
 * An HF-compatible `config.json` object for `cfg`: the fields of `cfg.raw` that this interface does not
 * model are kept, the modelled ones are written from `cfg`, plus `model_type: "gpt2"` and
 * `architectures: ["GPT2LMHeadModel"]`. Unset token ids are written as null (HF's `GPT2Config` would
 * otherwise default them to 50256). A `dtype`/`torch_dtype` field is set to "float32", the dtype
 * `saveModelDir` writes.
 */
export function configToJson(cfg: GPT2Config): Record<string, unknown> {
  const out: Record<string, unknown> = { ...cfg.raw };
  delete out.n_ctx; // superseded by n_positions; transformers maps n_ctx to n_positions on load
  Object.assign(out, {
    model_type: "gpt2",
    architectures: ["GPT2LMHeadModel"],
    activation_function: cfg.activationFunction,
    vocab_size: cfg.vocabSize,
    n_positions: cfg.nPositions,
    n_embd: cfg.nEmbd,
    n_layer: cfg.nLayer,
    n_head: cfg.nHead,
    layer_norm_epsilon: cfg.layerNormEpsilon,
    embd_pdrop: cfg.embdPdrop,
    resid_pdrop: cfg.residPdrop,
    attn_pdrop: cfg.attnPdrop,
    tie_word_embeddings: cfg.tieWordEmbeddings,
    bos_token_id: cfg.bosTokenId ?? null,
    eos_token_id: cfg.eosTokenId ?? null,
    pad_token_id: cfg.padTokenId ?? null,
  });
  if ("dtype" in out) out.dtype = "float32";
  if ("torch_dtype" in out) out.torch_dtype = "float32";
  // Stable, readable output: sorted keys, as transformers writes them.
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * The HF names and shapes of the GPT-2 parameters for `config`, in `model.named_parameters()` order
 * (wte, wpe, per layer ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj — weight then bias —
 * then ln_f). Conv1D weights are [in, out]: `attn.c_attn.weight` is [C, 3C].
 */
export function parameterShapes(config: GPT2Config): Map<string, number[]> {
  const C = config.nEmbd, F = config.nInner ?? 4 * C, m = new Map<string, number[]>();
  m.set("transformer.wte.weight", [config.vocabSize, C]);
  m.set("transformer.wpe.weight", [config.nPositions, C]);
  for (let i = 0; i < config.nLayer; i++) {
    const h = `transformer.h.${i}`;
    m.set(`${h}.ln_1.weight`, [C]);
    m.set(`${h}.ln_1.bias`, [C]);
    m.set(`${h}.attn.c_attn.weight`, [C, 3 * C]);
    m.set(`${h}.attn.c_attn.bias`, [3 * C]);
    m.set(`${h}.attn.c_proj.weight`, [C, C]);
    m.set(`${h}.attn.c_proj.bias`, [C]);
    m.set(`${h}.ln_2.weight`, [C]);
    m.set(`${h}.ln_2.bias`, [C]);
    m.set(`${h}.mlp.c_fc.weight`, [C, F]);
    m.set(`${h}.mlp.c_fc.bias`, [F]);
    m.set(`${h}.mlp.c_proj.weight`, [F, C]);
    m.set(`${h}.mlp.c_proj.bias`, [C]);
  }
  m.set("transformer.ln_f.weight", [C]);
  m.set("transformer.ln_f.bias", [C]);
  return m;
}
