/**
 * GPT-2 (`GPT2LMHeadModel`) with Hugging Face parameter names and layouts: pre-layernorm blocks, learned
 * positions, the config's MLP activation (`gelu_new` in GPT-2; see `activationOf`), Conv1D weights stored [in, out] (`transformer.h.{i}.attn.c_attn.weight` is
 * [C, 3C]) and the LM head tied to `transformer.wte.weight`.
 *
 * One block, two ways in: {@link GPT2.forward} records on a tape for training; {@link GPT2.forwardCached} is
 * the inference path with a KV cache (generation, label scoring). Both run the same embeddings, blocks and
 * LM head; only the attention step differs, over the batch or over the cache it appends to.
 * @module
 */

import { type Backend, type Buf, type BufGroup, freeGroup } from "../backend/backend.ts";
import * as ops from "../autograd/ops.ts";
import { Tape, Tensor } from "../autograd/tensor.ts";
import { activationOf, type GPT2Config, parameterShapes } from "./config.ts";
import { normalRng, uniformRng } from "./rng.ts";
import { dropoutSiteSeed } from "./dropout_sites.ts";
import { shiftLabels, supervisedRuns } from "./labels.ts";
import { sampleLikeRows } from "./resize.ts";
import { Scratch } from "./scratch.ts";
import {
  adapterShapes,
  checkLoraSpec,
  initAdapter,
  loraModules,
  loraScale,
  type LoraSpec,
  loraTensorNames,
  TOKEN_DELTA_NAME,
} from "./lora.ts";

export { normalRng };
export { Scratch } from "./scratch.ts";
export { dropoutSiteSeed, dropoutSiteStride } from "./dropout_sites.ts";
export { shiftLabels, supervisedRuns } from "./labels.ts";

/** A named host tensor (what the I/O layer reads and writes). */
export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

/** One batch for the training forward: row-major [B,T] int32 arrays. */
export interface Batch {
  B: number;
  T: number;
  inputIds: Int32Array;
  /** 1 = real token, 0 = padding. Omitted: all ones. */
  attentionMask?: Int32Array;
  /** HF labels (−100 = not supervised), NOT shifted: position t's label is the token at t. */
  labels: Int32Array;
  /**
   * Packed rows (src/data/packing.ts): per token, 1 + the index of its example in the row, 0 for padding.
   * Attention is then block-diagonal causal: a token sees the earlier tokens of its own example only. It
   * takes the place of `attentionMask` (which it implies: ≠ 0 where the mask is 1).
   */
  segmentIds?: Int32Array;
  /** Position ids (HF's `position_ids`), e.g. restarting at 0 at each packed example; omitted: 0…T−1. */
  positionIds?: Int32Array;
}

/** Arguments of {@link GPT2.forwardCached}. */
export interface CachedForwardArgs {
  ids: Int32Array;
  B: number;
  Tn: number;
  pos0: number;
  cache: KvCache;
  mask?: Int32Array;
  /**
   * Position ids [B,Tn] (HF's `position_ids`); omitted: pos0 … pos0+Tn−1 for every row. Batched generation
   * pads prompts on the left (masked) and gives each row positions from 0 at its own first token.
   */
  positions?: Int32Array;
  lastOnly?: boolean;
}

/**
 * Per-layer KV cache for inference: [B, NH, Tmax, HS] keys and values per layer, and the activation buffers
 * of the forwards that use it (kept from call to call, freed with the cache).
 */
export class KvCache {
  readonly k: Buf[] = [];
  readonly v: Buf[] = [];
  /** The activations of {@link GPT2.forwardCached} calls on this cache. */
  readonly scratch: Scratch;
  constructor(readonly be: Backend, cfg: GPT2Config, readonly B: number, readonly Tmax: number) {
    for (let l = 0; l < cfg.nLayer; l++) {
      this.k.push(be.alloc(B * Tmax * cfg.nEmbd, "f32", `kv cache k ${l}`));
      this.v.push(be.alloc(B * Tmax * cfg.nEmbd, "f32", `kv cache v ${l}`));
    }
    this.scratch = new Scratch(be);
  }
  dispose(): void {
    for (const b of [...this.k, ...this.v]) this.be.free(b);
    this.k.length = 0;
    this.v.length = 0;
    this.scratch.dispose();
  }
}

/**
 * GPT-2 language model on a backend.
 *
 * Where the backend offers `allocGroup`, the parameters live side by side in one group and their gradients
 * in another of the same layout (kept from step to step and zeroed by {@link GPT2.zeroGrad}): AdamW then
 * updates all of them with one dispatch per chunk and reduces the gradient norm in one pass, instead of
 * two dispatches per parameter (148 parameters in the real model).
 */
export class GPT2 {
  #params: Map<string, Tensor>;
  #paramGroup: BufGroup | null;
  #gradGroup: BufGroup | null = null;
  #lora: Attached | null = null;

  private constructor(
    readonly be: Backend,
    public config: GPT2Config,
    params: Map<string, Tensor>,
    group: BufGroup | null,
  ) {
    this.#params = params;
    this.#paramGroup = group;
  }

  /** Build from host tensors by HF name (as `loadModelDir` returns them). Every parameter must be there. */
  static fromTensors(be: Backend, config: GPT2Config, tensors: Map<string, HostTensor>): GPT2 {
    const shapes = parameterShapes(config);
    const problems = shapeProblems(shapes, tensors);
    if (problems.length) throw new Error(`Cannot build GPT-2: ${problems.join("; ")}`);
    const list = [...shapes].map(([name, shape]) => ({ name, shape, from: tensors.get(name)!.data }));
    const { params, group } = GPT2.#place(be, list);
    return new GPT2(be, config, params, group);
  }

  /**
   * Parameters as tensors in one group (when the backend has `allocGroup`) or in buffers of their own,
   * each filled from host data or copied from a device buffer (`from`).
   */
  static #place(
    be: Backend,
    list: readonly { name: string; shape: readonly number[]; from: Float32Array | Buf }[],
    label = "parameters",
  ): { params: Map<string, Tensor>; group: BufGroup | null } {
    const sizes = list.map(({ shape }) => shape.reduce((a, b) => a * b, 1));
    const group = be.allocGroup?.(sizes, label, list.map((p) => p.name)) ?? null;
    const params = new Map<string, Tensor>();
    list.forEach(({ name, shape, from }, i) => {
      let buf: Buf;
      if (from instanceof Float32Array) {
        buf = group ? group.views[i]! : be.upload(from, name);
        if (group) be.write(buf, from);
      } else {
        buf = group ? group.views[i]! : be.alloc(sizes[i]!, "f32", name);
        be.copy(buf, from);
      }
      params.set(name, new Tensor(be, buf, shape, { requiresGrad: true, name }));
    });
    return { params, group };
  }

  /** The parameters' group and the gradients' group, when the backend groups them (see the class doc). */
  get groups(): { params: BufGroup; grads: BufGroup | null } | null {
    const [params, grads] = this.#lora ? [this.#lora.group, this.#lora.gradGroup] : [this.#paramGroup, this.#gradGroup];
    return params ? { params, grads } : null;
  }

  /**
   * A randomly initialised model, as `GPT2LMHeadModel(config)` initialises one: weights N(0, 0.02),
   * the residual projections (`c_proj`) N(0, 0.02/√(2·n_layer)), biases 0, layernorms 1 and 0.
   */
  static random(be: Backend, config: GPT2Config, seed = 0): GPT2 {
    const rng = normalRng(seed);
    const tensors = new Map<string, HostTensor>();
    for (const [name, shape] of parameterShapes(config)) {
      const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
      if (name.includes(".ln_")) {
        if (name.endsWith(".weight")) data.fill(1);
      } else if (name.endsWith(".weight")) {
        const std = name.endsWith("c_proj.weight") ? 0.02 / Math.sqrt(2 * config.nLayer) : 0.02;
        for (let i = 0; i < data.length; i++) data[i] = rng() * std;
      }
      tensors.set(name, { shape, data });
    }
    return GPT2.fromTensors(be, config, tensors);
  }

  /** Parameters by HF name, in `named_parameters()` order. */
  get params(): ReadonlyMap<string, Tensor> {
    return this.#params;
  }

  /** One parameter by HF name. */
  param(name: string): Tensor {
    const t = this.#params.get(name);
    if (!t) throw new Error(`Unknown parameter: ${name}`);
    return t;
  }

  /**
   * The tensors that train, by name: the parameters (HF names), or with a LoRA adapter attached the adapter's
   * tensors (peft names) alone. The optimizer and checkpoints work on these.
   */
  get trainable(): ReadonlyMap<string, Tensor> {
    return this.#lora ? this.#lora.tensors : this.#params;
  }

  /** The attached LoRA adapter's spec, if any (see {@link GPT2.attachLora}). */
  get lora(): LoraSpec | undefined {
    return this.#lora?.spec;
  }

  /**
   * Attach a LoRA adapter (see `model/lora.ts`): the base parameters freeze (they keep no gradients) and the
   * adapter's tensors become {@link GPT2.trainable}. `tensors` (peft names, as `adapter_model.safetensors`
   * holds them) gives its values; omitted, a new adapter is initialised as peft does (A from `seed`, B zero,
   * the trainable token rows copied from the embedding).
   */
  async attachLora(spec: LoraSpec, tensors?: ReadonlyMap<string, HostTensor>, seed = 0): Promise<void> {
    if (this.#lora) throw new Error("Cannot attach a LoRA adapter: the model has one already");
    checkLoraSpec(spec, this.config);
    const shapes = adapterShapes(this.config, spec);
    const values = tensors ??
      initAdapter(this.config, spec, await this.param("transformer.wte.weight").read(), uniformRng(seed));
    const problems = shapeProblems(shapes, values);
    for (const name of values.keys()) if (!shapes.has(name)) problems.push(`unexpected ${name}`);
    if (problems.length) throw new Error(`Cannot attach the LoRA adapter: ${problems.join("; ")}`);
    const list = [...shapes].map(([name, shape]) => ({ name, shape, from: values.get(name)!.data }));
    const { params: adapters, group } = GPT2.#place(this.be, list, "adapter");
    // the base parameters freeze: the same buffers, as tensors without gradients (wte trains its token rows)
    this.#freeGrads();
    for (const [name, t] of this.#params) {
      const trains = name === "transformer.wte.weight" && spec.tokenIds.length > 0;
      this.#params.set(name, new Tensor(this.be, t.buf, t.shape, { requiresGrad: trains, name }));
    }
    const byModule = new Map<string, { a: Tensor; b: Tensor; site: number }>();
    for (const m of loraModules(this.config, spec)) {
      const n = loraTensorNames(m.module);
      byModule.set(m.module, { a: adapters.get(n.a)!, b: adapters.get(n.b)!, site: 4 * m.layer + m.slot });
    }
    this.#lora = {
      spec,
      scale: loraScale(spec),
      tensors: adapters,
      group,
      gradGroup: null,
      byModule,
      delta: adapters.get(TOKEN_DELTA_NAME),
    };
    this.#syncTokenRows();
  }

  /** The adapter's tensors on the host, by peft name (for `adapter_model.safetensors`). */
  async adapterTensors(): Promise<Map<string, HostTensor>> {
    if (!this.#lora) throw new Error("Cannot read the LoRA adapter: none is attached");
    const out = new Map<string, HostTensor>();
    for (const [name, t] of this.#lora.tensors) out.set(name, { shape: [...t.shape], data: await t.read() });
    return out;
  }

  /** The {@link GPT2.trainable} tensors on the host: the parameters, or the adapter's tensors. */
  trainableTensors(): Promise<Map<string, HostTensor>> {
    return this.#lora ? this.adapterTensors() : this.toTensors();
  }

  /** Copy the trainable token rows into the embedding (its rows for the input embedding and the tied head). */
  #syncTokenRows(): void {
    const delta = this.#lora?.delta;
    if (!delta) return;
    const wte = this.param("transformer.wte.weight"), C = this.config.nEmbd;
    this.#lora!.spec.tokenIds.forEach((id, i) => this.be.copy(wte.buf, delta.buf, C, id * C, i * C));
  }

  /** After a backward: the trainable token rows' gradient is those rows of the embedding's gradient. */
  #collectTokenGrads(): void {
    const delta = this.#lora?.delta;
    const grad = this.param("transformer.wte.weight").grad;
    if (!delta || !grad) return;
    const C = this.config.nEmbd, dst = delta.gradBuf();
    this.#lora!.spec.tokenIds.forEach((id, i) => this.be.copy(dst, grad, C, i * C, id * C));
  }

  /** Number of parameters (the tied head counted once, as HF does). */
  get numParams(): number {
    let n = 0;
    for (const t of this.#params.values()) n += t.size;
    return n;
  }

  /** Copy every parameter to the host. */
  async toTensors(): Promise<Map<string, HostTensor>> {
    this.#syncTokenRows();
    const out = new Map<string, HostTensor>();
    for (const [name, t] of this.#params) out.set(name, { shape: [...t.shape], data: await t.read() });
    return out;
  }

  /**
   * Clear the gradients before a backward. Grouped parameters get (once) a gradient group of the same
   * layout, zeroed here with one clear per chunk and kept; otherwise every gradient buffer is released
   * (and made, zero-filled, on first use).
   */
  zeroGrad(): void {
    const lora = this.#lora;
    if (lora) {
      // the embedding's gradient (when token rows train) is kept and zeroed; other frozen ones do not exist
      const wte = this.param("transformer.wte.weight");
      if (wte.grad) this.be.zero(wte.grad);
      lora.gradGroup = this.#zeroGroup(lora.tensors, lora.group, lora.gradGroup);
    } else this.#gradGroup = this.#zeroGroup(this.#params, this.#paramGroup, this.#gradGroup);
  }

  /** {@link GPT2.zeroGrad} of `tensors`, whose values are `group` (or not grouped), gradients in `grads`. */
  #zeroGroup(tensors: ReadonlyMap<string, Tensor>, group: BufGroup | null, grads: BufGroup | null): BufGroup | null {
    if (!group) {
      for (const t of tensors.values()) t.freeGrad();
      return null;
    }
    if (grads) { for (const c of grads.chunks) this.be.zero(c.buf); }
    else grads = this.be.allocGroup!(group.views.map((v) => v.length), "gradients", [...tensors.keys()]);
    const views = grads.views;
    let i = 0;
    for (const t of tensors.values()) {
      const g = views[i++]!;
      if (t.grad !== g) {
        t.freeGrad();
        t.grad = g;
      }
    }
    return grads;
  }

  /** Drop every gradient of the parameters (grouped or not). */
  #freeGrads(): void {
    const grouped = new Set<Buf>(this.#gradGroup?.views ?? []);
    for (const t of this.#params.values()) {
      if (t.grad && !grouped.has(t.grad)) t.freeGrad(); // a view of the group goes with the group
      t.grad = undefined;
    }
    if (this.#gradGroup) freeGroup(this.be, this.#gradGroup);
    this.#gradGroup = null;
  }

  /** Release all backend memory of the model. */
  dispose(): void {
    const lora = this.#lora;
    for (const t of [...this.#params.values(), ...(lora?.tensors.values() ?? [])]) {
      t.freeGrad();
      this.be.free(t.buf);
    }
    for (const g of [this.#paramGroup, this.#gradGroup, lora?.group, lora?.gradGroup]) if (g) freeGroup(this.be, g);
    this.#paramGroup = this.#gradGroup = this.#lora = null;
    this.#params.clear();
  }

  /**
   * Grow (or shrink) the vocabulary, as `resize_token_embeddings` does with its default mean resizing:
   * new rows are drawn from a normal distribution with the old rows' mean and 1e-5 times their covariance
   * (falling back to the mean alone when the covariance is not positive definite). The LM head is tied, so
   * it follows.
   */
  async resizeTokenEmbeddings(newVocab: number, seed = 0): Promise<void> {
    const old = this.param("transformer.wte.weight");
    const [V, C] = [old.shape[0]!, old.shape[1]!];
    if (newVocab === V) return;
    if (this.#lora) throw new Error("Cannot resize the embeddings of a model with a LoRA adapter attached");
    const src = await old.read();
    const data = new Float32Array(newVocab * C);
    data.set(src.subarray(0, Math.min(V, newVocab) * C));
    if (newVocab > V) {
      const rows = sampleLikeRows(src, V, C, newVocab - V, seed);
      data.set(rows, V * C);
    }
    // Rebuild the parameters (a group's layout is fixed): every other one is copied over on the device.
    const name = "transformer.wte.weight";
    const list = [...this.#params].map(([n, t]) =>
      n === name ? { name, shape: [newVocab, C], from: data } : { name: n, shape: t.shape, from: t.buf }
    );
    const { params, group } = GPT2.#place(this.be, list);
    this.dispose();
    this.#params = params;
    this.#paramGroup = group;
    this.config = { ...this.config, vocabSize: newVocab };
  }

  /**
   * The training forward: logits [B,T,V] recorded on `tape` (or not recorded when `tape` is omitted).
   * `ids`, `mask` and `positions` are i32 [B,T] buffers on the backend. `mask` is the key padding mask
   * (1 real, 0 padding) or, for packed rows, the segment ids (see {@link Batch.segmentIds}); `positions`
   * the position ids (omitted: 0…T−1 in every row).
   */
  forward(
    args: {
      ids: Buf;
      mask?: Buf;
      positions?: Buf;
      B: number;
      T: number;
      tape?: Tape;
      rows?: readonly ops.RowRun[];
      /** Training mode: dropout with the config's rates, the masks drawn from this seed. */
      dropoutSeed?: number;
      /** Gradient checkpointing: keep only each block's input, and recompute the block in the backward pass. */
      checkpointing?: boolean;
    },
  ): Tensor {
    const { ids, mask, positions, B, T, tape, rows, dropoutSeed, checkpointing } = args;
    if (T > this.config.nPositions) {
      throw new Error(`Cannot run GPT-2: sequence length ${T} exceeds n_positions ${this.config.nPositions}`);
    }
    const attend = { mask, positions };
    return this.#run({ be: this.be, tape }, { ids, B, T, rows, dropoutSeed, attend, checkpointing });
  }

  /**
   * Mean cross-entropy over supervised positions, labels shifted by one as Hugging Face does
   * (the logits at t predict the token at t+1). `dropoutSeed` turns on training-mode dropout (the config's
   * rates; it needs `backward`). With `backward`, gradients accumulate into the
   * parameters' `.grad`. `normalizer` divides the summed cross-entropy instead of this batch's supervised
   * count: gradient accumulation passes the count of all the batches of a step, so that their losses and
   * gradients add up to those of one big batch. Returns the loss as a 1-element backend buffer (read it
   * only when needed) and the number of supervised tokens.
   */
  loss(
    batch: Batch,
    opts: {
      backward?: boolean;
      allPositions?: boolean;
      dropoutSeed?: number;
      normalizer?: number;
      /** With `backward`: recompute each block's activations in the backward pass (see {@link forward}). */
      checkpointing?: boolean;
      /**
       * A 1-element buffer that the number of supervised positions whose argmax is their target is added to,
       * on the device (the token accuracy: divide by `supervised`).
       */
      correct?: Buf;
    } = {},
  ): { loss: Buf; supervised: number } {
    const { B, T } = batch;
    const { targets, count } = shiftLabels(batch.labels, B, T);
    if (count === 0) {
      throw new Error("Cannot compute the loss: the batch has no supervised token (every label is -100)");
    }
    const normalizer = opts.normalizer ?? count;
    if (!(normalizer >= count)) {
      throw new Error(
        `Invalid loss normalizer: ${normalizer} (expected at least the batch's ${count} supervised tokens)`,
      );
    }
    const be = this.be;
    const ids = be.upload(batch.inputIds, "input ids");
    // packed rows: the segment ids are the attention's mask (block-diagonal causal)
    const maskIds = batch.segmentIds ?? batch.attentionMask;
    const mask = maskIds ? be.upload(maskIds, batch.segmentIds ? "segment ids" : "attention mask") : undefined;
    const positions = batch.positionIds
      ? be.upload(checkPositions(batch, this.config.nPositions), "position ids")
      : undefined;
    // The LM head and the cross-entropy run only where a target exists (`allPositions` keeps them
    // everywhere: the same numbers, slower; the parity check uses both).
    const rows = opts.allPositions ? undefined : supervisedRuns(targets);
    const tgt = be.upload(rows ? targets.filter((y) => y !== -100) : targets, "targets");
    const tape = opts.backward ? new Tape(be) : undefined;
    if (tape && this.#lora && ![...this.#lora.tensors.values()].some((t) => t.requiresGrad)) {
      throw new Error("Cannot train: nothing in the model requires a gradient");
    }
    const logits = this.forward({
      ids,
      mask,
      positions,
      B,
      T,
      tape,
      rows,
      dropoutSeed: opts.dropoutSeed,
      checkpointing: opts.checkpointing,
    });
    const loss = ops.crossEntropy({ be, tape }, logits, tgt, normalizer, { correct: opts.correct });
    if (tape) {
      tape.backward();
      this.#collectTokenGrads();
    } else be.free(logits.buf);
    for (const b of [ids, mask, positions, tgt]) if (b) be.free(b);
    return { loss, supervised: count };
  }

  /**
   * Inference forward with a KV cache: runs `ids` (i32 host array [B,Tn]) at positions pos0…pos0+Tn−1,
   * appending to `cache`, and returns the logits [B,Tn,V] (or only the last position's, [B,V], with
   * `lastOnly`) on the host.
   */
  async forwardCached(args: CachedForwardArgs): Promise<Float32Array> {
    const logits = this.forwardCachedOnDevice(args);
    const out = (await this.be.read(logits)) as Float32Array;
    this.be.free(logits);
    return out;
  }

  /**
   * {@link forwardCached} without the read: the logits stay on the device (the caller frees them). The same
   * blocks as {@link forward}, untaped, their attention step reading and appending to the cache.
   */
  forwardCachedOnDevice(args: CachedForwardArgs): Buf {
    const { B, Tn, pos0, cache, lastOnly } = args;
    const cfg = this.config;
    if (pos0 + Tn > cache.Tmax) {
      throw new Error(`Cannot run GPT-2: position ${pos0 + Tn} exceeds the cache (${cache.Tmax})`);
    }
    // (a reduce, not Math.max(...): a spread of a long array would overflow the call stack)
    const last = args.positions ? args.positions.reduce((m, p) => Math.max(m, p + 1), 0) : pos0 + Tn;
    if (last > cfg.nPositions) {
      throw new Error(`Cannot run GPT-2: position ${last} exceeds n_positions ${cfg.nPositions}`);
    }
    if (args.positions && args.positions.length !== B * Tn) {
      throw new Error(`Cannot run GPT-2: ${args.positions.length} positions for ${B}×${Tn} tokens`);
    }
    const be = this.be;
    const ids = be.upload(args.ids, "input ids");
    const mask = args.mask ? be.upload(args.mask, "attention mask") : undefined;
    const positions = args.positions ? be.upload(args.positions, "position ids") : undefined;
    // lastOnly: the LM head at each row's last position only, [B,V]
    const rows = lastOnly ? Array.from({ length: B }, (_, b) => ({ src: b * Tn + Tn - 1, len: 1 })) : undefined;
    const logits = this.#run({ be }, { ids, B, T: Tn, rows, attend: { mask, cache, pos0, positions } });
    for (const b of [ids, mask, positions]) if (b) be.free(b);
    return logits.buf;
  }

  /**
   * GPT-2 from token ids to logits: embeddings, the blocks ({@link GPT2.#block}), the final layernorm and
   * the tied LM head, at every position or (with `rows`) only at those rows of the flattened [B·T] batch.
   * Training and inference differ only in the tape, `dropoutSeed` and `attend`: with a KV cache the
   * tokens sit at positions pos0… (or `positions`) and attend to everything cached before them.
   */
  #run(
    outer: ops.OpContext,
    args: {
      ids: Buf;
      B: number;
      T: number;
      rows?: readonly ops.RowRun[];
      dropoutSeed?: number;
      attend: Attend;
      checkpointing?: boolean;
    },
  ): Tensor {
    const { B, T, rows, dropoutSeed, attend } = args;
    // untaped, each layer's activations are released as the next ones are made, and reused (a cache keeps
    // them from one call to the next: a generation step needs the same ones as the step before)
    const scratch = outer.tape ? undefined : attend.cache?.scratch ?? new Scratch(this.be);
    const ctx: ops.OpContext = scratch ? { ...outer, alloc: scratch.alloc } : outer;
    const release: Release = (ts) => {
      if (scratch) { for (const t of ts) scratch.release(t.buf); }
    };
    const cfg = this.config, eps = cfg.layerNormEpsilon;
    const p = (n: string) => this.param(n);
    this.#syncTokenRows();
    const emb = ops.embedding(ctx, args.ids, p("transformer.wte.weight"), p("transformer.wpe.weight"), {
      B,
      T,
      pos0: attend.pos0,
      positions: attend.positions,
    });
    let x = this.#drop(ctx, emb, cfg.embdPdrop, { dropoutSeed, site: 0, release });
    for (let l = 0; l < cfg.nLayer; l++) {
      const o = { l, B, T, attend, dropoutSeed, release };
      x = args.checkpointing && ctx.tape ? this.#checkpointedBlock(ctx.tape, x, o) : this.#block(ctx, x, o);
    }
    const xf = ops.layernorm(ctx, x, p("transformer.ln_f.weight"), p("transformer.ln_f.bias"), eps);
    // with `rows`, the LM head runs only at those positions: logits [R,V] instead of [B,T,V]
    const picked = rows ? ops.gatherRows(ctx, xf, rows) : xf;
    // the logits are the caller's: from the backend, not the scratch
    const logits = ops.linear(outer, picked, p("transformer.wte.weight"), undefined, { transW: true });
    release(picked === xf ? [x, xf] : [x, xf, picked]);
    if (scratch !== attend.cache?.scratch) scratch?.dispose();
    return logits;
  }

  /**
   * Block `l` (pre-layernorm): x + attn(ln_1(x)), then that + mlp(ln_2(that)), each branch through its
   * dropout site. The attention step is causal over the batch (training, scoring) or, with `attend.cache`,
   * over the cached keys and values of layer `l` and the new ones it appends (inference).
   */
  #block(
    ctx: ops.OpContext,
    x: Tensor,
    o: { l: number; B: number; T: number; attend: Attend; dropoutSeed?: number; release: Release },
  ): Tensor {
    const { l, B, T, attend, dropoutSeed, release } = o;
    const cfg = this.config, C = cfg.nEmbd, NH = cfg.nHead, eps = cfg.layerNormEpsilon;
    const p = (n: string) => this.param(`transformer.h.${l}.${n}`);
    const drop = (t: Tensor, site: number) => this.#drop(ctx, t, cfg.residPdrop, { dropoutSeed, site, release });
    // a Conv1D, with its LoRA adapter where one is attached
    const lora = this.#lora;
    const linear = (t: Tensor, module: string) => {
      const ad = lora?.byModule.get(`transformer.h.${l}.${module}`);
      const dropout = ad && dropoutSeed !== undefined && lora!.spec.dropout > 0
        ? { p: lora!.spec.dropout, seed: this.#siteSeed(dropoutSeed, 1 + 3 * cfg.nLayer + ad.site) }
        : undefined;
      const opts = ad ? { lora: { a: ad.a, b: ad.b, scale: lora!.scale, dropout } } : {};
      return ops.linear(ctx, t, p(`${module}.weight`), p(`${module}.bias`), opts);
    };
    const ln1 = ops.layernorm(ctx, x, p("ln_1.weight"), p("ln_1.bias"), eps);
    const qkv = linear(ln1, "attn.c_attn");
    const { mask, cache } = attend;
    let att: Tensor;
    if (cache) {
      att = cachedAttention(ctx, qkv, { cache, l, mask, B, Tn: T, pos0: attend.pos0 ?? 0, C, NH });
    } else {
      const dropout = dropoutSeed !== undefined && cfg.attnPdrop > 0
        ? { p: cfg.attnPdrop, seed: this.#siteSeed(dropoutSeed, 1 + 3 * l) }
        : undefined;
      att = ops.attention(ctx, qkv, { B, T, C, NH, mask, dropout });
    }
    const proj = drop(linear(att, "attn.c_proj"), 2 + 3 * l);
    const x2 = ops.add(ctx, x, proj);
    const ln2 = ops.layernorm(ctx, x2, p("ln_2.weight"), p("ln_2.bias"), eps);
    const fc = linear(ln2, "mlp.c_fc");
    const act = ops.gelu(ctx, fc, activationOf(cfg.activationFunction));
    const mlp = drop(linear(act, "mlp.c_proj"), 3 + 3 * l);
    const out = ops.add(ctx, x2, mlp);
    // without a tape nothing needs the intermediates any more
    release([x, ln1, qkv, att, proj, x2, ln2, fc, act, mlp]);
    return out;
  }

  /**
   * Block `l` with gradient checkpointing: the forward runs untaped (its intermediates go back to a scratch
   * at once) and the tape records one op that keeps only the block's input and output. Its backward runs
   * the block again, taped, from the same input with the same dropout masks, and backpropagates through
   * that: the same gradients as {@link GPT2.#block} on the tape, for the memory of one block's activations
   * instead of every block's.
   */
  #checkpointedBlock(
    tape: Tape,
    x: Tensor,
    o: { l: number; B: number; T: number; attend: Attend; dropoutSeed?: number; release: Release },
  ): Tensor {
    const be = this.be;
    const scratch = new Scratch(be);
    const tmp = this.#block({ be, alloc: scratch.alloc }, x, {
      ...o,
      release: (ts) => {
        for (const t of ts) if (t.buf !== x.buf) scratch.release(t.buf);
      },
    });
    const out = new Tensor(be, be.alloc(tmp.size, "f32", `block ${o.l} out`), tmp.shape, { requiresGrad: true });
    be.copy(out.buf, tmp.buf, tmp.size);
    scratch.release(tmp.buf);
    scratch.dispose();
    tape.push({
      op: "checkpoint",
      outputs: [out],
      saved: [],
      backward: () => {
        if (out.grad === undefined) return;
        const sub = new Tape(be);
        // the recomputed block reads x's values and adds its input gradient into x's
        const xr = new Tensor(be, x.buf, x.shape, { requiresGrad: true, name: x.name });
        xr.grad = x.gradBuf();
        const again = this.#block({ be, tape: sub }, xr, { ...o, release: () => {} });
        be.copy(again.gradBuf(), out.grad, out.size);
        sub.backward();
        xr.grad = undefined;
      },
    });
    return out;
  }

  /**
   * Dropout site `site` on `t` in training mode (HF's sites: after the embeddings, on the attention
   * probabilities, on each residual branch before it is added), each site and step with its own seed
   * ({@link dropoutSiteSeed}), the same for its backward; `t` itself in eval mode (no `dropoutSeed`).
   */
  #drop(ctx: ops.OpContext, t: Tensor, p: number, o: { dropoutSeed?: number; site: number; release: Release }): Tensor {
    if (o.dropoutSeed === undefined || p <= 0) return t;
    const out = ops.dropout(ctx, t, p, this.#siteSeed(o.dropoutSeed, o.site));
    o.release([t]); // without a tape nothing needs the undropped values
    return out;
  }

  /**
   * The seed of dropout site `site` ({@link dropoutSiteSeed}); with a LoRA adapter attached there are four more
   * sites per layer (the adapters' inputs, after the 1 + 3·n_layer of the base model).
   */
  #siteSeed(seed: number, site: number): number {
    return dropoutSiteSeed(seed, site, this.config.nLayer, { extraSites: this.#lora ? 4 * this.config.nLayer : 0 });
  }

  /**
   * Copy positions [0, len) of the prompts in `src` into the rows of `dst`: row r of `dst` gets row
   * `srcRow(r)` of `src` (default 0), so that many continuations share one prompt pass. (Two caches: WebGPU
   * cannot copy within one buffer.)
   */
  replicateCache(src: KvCache, dst: KvCache, len: number, srcRow: (row: number) => number = () => 0): void {
    const C = this.config.nEmbd, NH = this.config.nHead, HS = C / NH;
    if (len > src.Tmax || len > dst.Tmax) throw new Error(`Cannot replicate ${len} cache positions`);
    for (const [from, to] of [[src.k, dst.k], [src.v, dst.v]] as const) {
      for (let l = 0; l < from.length; l++) {
        for (let b = 0; b < dst.B; b++) {
          const a = srcRow(b);
          for (let h = 0; h < NH; h++) {
            this.be.copy(to[l]!, from[l]!, len * HS, (b * NH + h) * dst.Tmax * HS, (a * NH + h) * src.Tmax * HS);
          }
        }
      }
    }
  }
}

/** Each of `shapes` that `tensors` lacks or holds in another shape, as a line of an error. */
export function shapeProblems(
  shapes: ReadonlyMap<string, readonly number[]>,
  tensors: ReadonlyMap<string, { shape: readonly number[] }>,
): string[] {
  const problems: string[] = [];
  for (const [name, shape] of shapes) {
    const t = tensors.get(name);
    if (!t) problems.push(`missing ${name}`);
    else if (t.shape.join(",") !== shape.join(",")) problems.push(`${name} is [${t.shape}], expected [${shape}]`);
  }
  return problems;
}

/** A LoRA adapter attached to a model (see {@link GPT2.attachLora}). */
interface Attached {
  spec: LoraSpec;
  scale: number;
  /** Its tensors by peft name, in `adapterShapes` order. */
  tensors: Map<string, Tensor>;
  group: BufGroup | null;
  gradGroup: BufGroup | null;
  /** Each adapted module's A and B and its dropout site within the adapters' sites. */
  byModule: Map<string, { a: Tensor; b: Tensor; site: number }>;
  /** The trainable token rows, when any. */
  delta?: Tensor;
}

/** Hands tensors that an untaped forward no longer needs back to its {@link Scratch} (a no-op when taped). */
type Release = (ts: readonly Tensor[]) => void;

/** What the blocks' attention step attends over (see `GPT2.#block`). */
interface Attend {
  /** Key padding mask, i32: [B,T] over the batch, [B,Tmax] over a cache. */
  mask?: Buf;
  /** Inference: the KV cache that the new tokens read and append to. */
  cache?: KvCache;
  /** With a cache: the position of the first new token (0 without). */
  pos0?: number;
  /** Position ids [B,T] instead of pos0… (see {@link CachedForwardArgs}; training: packed rows). */
  positions?: Buf;
}

/** Attention of the new tokens over layer `l`'s KV cache, which it appends to (inference: nothing is recorded). */
function cachedAttention(
  ctx: ops.OpContext,
  qkv: Tensor,
  o: { cache: KvCache; l: number; mask?: Buf; B: number; Tn: number; pos0: number; C: number; NH: number },
): Tensor {
  if (ctx.tape) throw new Error("Cannot record attention over a KV cache: it has no backward");
  const { cache, l, mask, B, Tn, pos0, C, NH } = o;
  const n = B * Tn * C, name = "attention:out";
  const out = new Tensor(ctx.be, ctx.alloc?.(n, name) ?? ctx.be.alloc(n, "f32", name), [B, Tn, C], { name });
  const { k, v, Tmax } = cache;
  ctx.be.attentionCached({ out: out.buf, qkv: qkv.buf, kcache: k[l]!, vcache: v[l]!, mask, B, Tn, pos0, Tmax, C, NH });
  return out;
}

/** A batch's position ids, checked: one per token, each in [0, nPositions). */
function checkPositions(batch: Batch, nPositions: number): Int32Array {
  const pos = batch.positionIds!;
  if (pos.length !== batch.B * batch.T) {
    throw new Error(`Cannot run GPT-2: ${pos.length} position ids for ${batch.B}×${batch.T} tokens`);
  }
  for (let i = 0; i < pos.length; i++) {
    if (!(pos[i]! >= 0 && pos[i]! < nPositions)) {
      throw new Error(`Cannot run GPT-2: position id ${pos[i]} at token ${i} is outside [0, ${nPositions})`);
    }
  }
  return pos;
}
