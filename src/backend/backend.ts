/**
 * The Backend interface: every numeric operation GPT-2 training and inference needs, as a thin connector
 * that the CPU reference (`cpu.ts`) and the WebGPU backend (`webgpu.ts`) both implement.
 *
 * Shape vocabulary (used in every doc comment here and in every kernel header):
 * B batch, T time (sequence), C channels (n_embd), NH heads, HS head size (C / NH), V vocab,
 * N = B·T rows, OC output channels. All float data is float32, row-major. Token ids and masks are int32.
 *
 * Conventions:
 * - Outputs named `out`/`d…` are written with `=` unless the option `accumulate` is true, in which case
 *   they are `+=`. Parameter gradients accumulate; activation gradients are assigned.
 * - No operation reads back to the host; only `read()` does.
 * - Ops are issued in order; a backend may queue them (WebGPU) or run them at once (CPU).
 *
 * @module
 */

/**
 * The MLP activations the backends compute, by the Hugging Face name of each (`ACT2FN` in transformers;
 * the config spellings that mean the same function are mapped in model/config.ts):
 * - `gelu_new`: GELU, tanh form, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) — GPT-2's;
 * - `gelu`: GELU, exact, x·Φ(x) = 0.5·x·(1 + erf(x/√2));
 * - `relu`: max(x, 0);
 * - `silu`: x·σ(x), σ(x) = 1/(1 + e^−x);
 * - `quick_gelu`: x·σ(1.702·x).
 */
export type Activation = "gelu_new" | "gelu" | "relu" | "silu" | "quick_gelu";

/** Every {@link Activation}, in the order of the WebGPU kernels' `ACTIVATION` selector (0, 1, …). */
export const ACTIVATIONS: readonly Activation[] = ["gelu_new", "gelu", "relu", "silu", "quick_gelu"];

/** Element type of a buffer. */
export type DType = "f32" | "i32";

/** An opaque handle to backend memory holding `length` elements of `dtype`. */
export interface Buf {
  readonly length: number;
  readonly dtype: DType;
}

/**
 * Buffers side by side in a few large allocations ("chunks"), made by {@link Backend.allocGroup}: the
 * model's parameters, their gradients and AdamW's two moments. An op given a chunk sees all of that chunk's
 * buffers at once, which is how the optimizer updates every parameter with one AdamW dispatch per chunk
 * (one in all where a binding holds every parameter) instead of one per parameter, and reduces the gradient
 * norm in one pass.
 */
export interface BufGroup {
  /** One zero-filled buffer per requested length, in order. They live and die with their chunks. */
  readonly views: readonly Buf[];
  /** The allocations: chunk c holds `views[first … first+count−1]` at aligned offsets, zeros between. */
  readonly chunks: readonly { readonly buf: Buf; readonly first: number; readonly count: number }[];
}

/** Where {@link groupLayout} puts buffers: per chunk its views and length, per view its element offset. */
export interface GroupLayout {
  chunks: { first: number; count: number; length: number }[];
  offsets: number[];
}

/**
 * The layout both backends give a {@link BufGroup}: views in order, each starting at a multiple of `align`
 * elements (the GPU's storage-binding offset alignment), a new chunk whenever the next view would take a
 * chunk past `maxChunk` elements (the GPU's largest binding). A pure function of its arguments, so two
 * groups of the same lengths on the same backend (gradients and parameters, AdamW's m and v) line up
 * element for element.
 */
export function groupLayout(
  lengths: readonly number[],
  align: number,
  maxChunk: number,
  label: string,
  names?: readonly string[],
): GroupLayout {
  const chunks: GroupLayout["chunks"] = [];
  const offsets: number[] = [];
  let cur: GroupLayout["chunks"][number] | undefined;
  lengths.forEach((n, i) => {
    const which = names?.[i] ? `"${names[i]}"` : `buffer ${i}`;
    if (!Number.isInteger(n) || n < 1) throw new Error(`Cannot allocate group "${label}": ${which} has length ${n}`);
    if (n > maxChunk) {
      throw new Error(
        `Cannot allocate group "${label}": ${which} has ${n} elements, more than one binding holds (${maxChunk})`,
      );
    }
    const at = cur ? Math.ceil(cur.length / align) * align : 0;
    if (!cur || at + n > maxChunk) {
      chunks.push(cur = { first: i, count: 0, length: 0 });
      offsets.push(0);
      cur.length = n;
    } else {
      offsets.push(at);
      cur.length = at + n;
    }
    cur.count++;
  });
  // chunks end on the alignment too, so a view's whole 16-byte-rounded binding stays inside its chunk
  for (const c of chunks) c.length = Math.ceil(c.length / align) * align;
  return { chunks, offsets };
}

/** The label of view `i` of group `label` in errors: its name when given (a parameter's), else its index. */
export function groupViewLabel(label: string, names: readonly string[] | undefined, i: number): string {
  return names?.[i] ? `${label}: ${names[i]}` : `${label}[${i}]`;
}

/** Whether two groups line up element for element (same chunks, same views at the same offsets). */
export function sameGroupLayout(a: BufGroup, b: BufGroup): boolean {
  return a.views.length === b.views.length && a.chunks.length === b.chunks.length &&
    a.views.every((v, i) => v.length === b.views[i]!.length) &&
    a.chunks.every((c, i) => {
      const d = b.chunks[i]!;
      return c.first === d.first && c.count === d.count && c.buf.length === d.buf.length;
    });
}

/** Release a group: its chunks, and with them its views. */
export function freeGroup(be: Backend, group: BufGroup): void {
  for (const c of group.chunks) be.free(c.buf);
}

/** `out[M,N] (=|+=) op(A)[M,K] · op(B)[K,N] (+ bias[N])`, over buffers of type `T`. */
export interface MatmulArgsOf<T> {
  out: T;
  a: T;
  b: T;
  bias?: T;
  M: number;
  N: number;
  K: number;
  /** When true, `a` is stored [K, M] (so A(m,k) = a[k·M + m]); else [M, K]. */
  transA?: boolean;
  /** When true, `b` is stored [N, K] (so B(k,n) = b[n·K + k]); else [K, N]. */
  transB?: boolean;
  accumulate?: boolean;
}

/** {@link MatmulArgsOf} on backend buffers: what {@link Backend.matmul} takes. */
export type MatmulArgs = MatmulArgsOf<Buf>;

/**
 * Dropout on the attention probabilities: drop probability `p` in [0, 1) and an integer `seed` (mod 2³²),
 * the same for a forward and its backward. See {@link Backend.attentionForward}.
 */
export interface AttentionDropout {
  p: number;
  seed: number;
}

/** Which training-time numeric ops a backend offers. Every one is required. */
export interface Backend {
  /** "cpu" or "webgpu". */
  readonly name: string;
  /** A one-line description of the device (adapter name, threads, …). */
  readonly description: string;

  // ---- memory ----
  /** A new zero-filled buffer. `label` names it in errors (out of memory, limits). */
  alloc(length: number, dtype?: DType, label?: string): Buf;
  /**
   * Optional: like `alloc`, but the contents are undefined (a pooled buffer keeps what it held), for an
   * output that the op writing it fills in full before anything reads it. Saves zeroing memory that is
   * overwritten at once (the CPU backend's forward activations: ≈ 50 MB a step of the tiny demo model).
   */
  allocUninit?(length: number, dtype?: DType, label?: string): Buf;
  /**
   * Optional: zero-filled buffers of `lengths` side by side in as few allocations as the device allows
   * (see {@link BufGroup} and {@link groupLayout}); `names` label the views in errors (a parameter's name).
   * `free` on one of the views does nothing; free the
   * group with {@link freeGroup}. A view may be bound writable beside other views of its chunk, but not
   * beside a read of the same chunk in one op (WebGPU forbids it): the model keeps parameters, gradients
   * and moments in separate groups, so no op does.
   */
  allocGroup?(lengths: readonly number[], label?: string, names?: readonly string[]): BufGroup;
  /** A new buffer holding a copy of `data`. */
  upload(data: Float32Array | Int32Array, label?: string): Buf;
  /** Overwrite `buf[offset … offset+data.length)` with `data`. */
  write(buf: Buf, data: Float32Array | Int32Array, offset?: number): void;
  /** Copy the buffer to the host (waits for queued work). */
  read(buf: Buf): Promise<Float32Array | Int32Array>;
  /** Fill with zeros. */
  zero(buf: Buf): void;
  /** `dst[dstOffset + i] = src[srcOffset + i]` for i < length (element offsets). */
  copy(dst: Buf, src: Buf, length?: number, dstOffset?: number, srcOffset?: number): void;
  /** Release the buffer (it may go back to a pool). */
  free(buf: Buf): void;
  /** Wait until queued work is done. */
  sync(): Promise<void>;
  /** Release every resource. */
  dispose(): void;

  // ---- elementwise ----
  /**
   * `out[i] = a[i] + b[i]` (residual add) for i < n; with accumulate `out[i] += a[i] + b[i]`.
   * `out` may be the same buffer as `a` (in-place `out += b`); no other op's output aliases an input
   * unless its doc says so.
   */
  add(args: { out: Buf; a: Buf; b: Buf; n: number; accumulate?: boolean }): void;
  /** `buf[i] *= s` for i < n. */
  scale(args: { buf: Buf; n: number; s: number }): void;
  /**
   * `out[i] = act(inp[i])`, the MLP activation: `activation` (default `gelu_new`, the tanh form
   * 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))), see {@link Activation}. With `deriv` (only on a backend whose
   * `geluSavesDerivative` is true) also `deriv[i] = act'(inp[i])`, for the backward.
   */
  geluForward(args: { out: Buf; inp: Buf; n: number; deriv?: Buf; activation?: Activation }): void;
  /**
   * `dinp[i] (=|+=) act'(inp[i]) · dout[i]` for the forward's `activation` (default `gelu_new`); with `deriv`
   * (what the forward saved) `deriv[i] · dout[i]`, without recomputing the derivative from `inp`.
   */
  geluBackward(
    args: { dinp: Buf; inp: Buf; dout: Buf; n: number; accumulate?: boolean; deriv?: Buf; activation?: Activation },
  ): void;
  /**
   * Optional: true when geluForward can save the derivative (`deriv`) so that the backward is one product
   * (the CPU backend beside a fast matmul, where recomputing it was a third of GELU's time); the autograd then
   * keeps one more activation per GELU for the backward.
   */
  readonly geluSavesDerivative?: boolean;
  /**
   * Inverted dropout, as torch.nn.functional.dropout in training mode:
   * `out[i] = keep(i) ? inp[i] · scale : 0` for i < n, with `scale = fround(1/(1−p))` and
   * `keep(i) = h(seed, i) ≥ ⌊p·2³²⌋`, the counter-based hash of `dropout_hash.ts` (identical on every
   * backend, so a mask is reproducible and no mask buffer is kept). `p` in [0, 1) (p = 0 is the identity);
   * `seed` an integer (mod 2³²): use a fresh one per dropout site and step. `out` may be `inp` (in place).
   */
  dropoutForward(args: { out: Buf; inp: Buf; n: number; p: number; seed: number }): void;
  /**
   * Gradient of dropoutForward with the same `p` and `seed` (the mask is recomputed from them):
   * `dinp[i] (=|+=) keep(i) ? dout[i] · scale : 0`. `dinp` may be `dout` (in place).
   */
  dropoutBackward(args: { dinp: Buf; dout: Buf; n: number; p: number; seed: number; accumulate?: boolean }): void;

  // ---- embedding ----
  /**
   * `out[b,t,:] = wte[ids[b,t],:] + wpe[pos0 + t,:]`; out [B,T,C], ids i32 [B,T], wte [V,C], wpe [P,C].
   * With `positions` (i32 [B,T], HF's `position_ids`) the position of token (b,t) is `positions[b,t]`
   * instead: batched generation pads prompts on the left and starts each row's positions at its first token.
   */
  embeddingForward(
    args: { out: Buf; ids: Buf; wte: Buf; wpe: Buf; B: number; T: number; C: number; pos0?: number; positions?: Buf },
  ): void;
  /**
   * `dwte[ids[b,t],:] += dout[b,t,:]`, `dwpe[t,:] += dout[b,t,:]`, deterministically (the order of
   * the additions does not depend on scheduling). With `positions` (the forward's, i32 [B,T]: packed rows)
   * `dwpe[positions[b,t],:] += dout[b,t,:]` instead.
   */
  embeddingBackward(
    args: { dwte: Buf; dwpe: Buf; dout: Buf; ids: Buf; B: number; T: number; C: number; V: number; positions?: Buf },
  ): void;

  // ---- layernorm ----
  /**
   * Per row n < N: `mean = Σx/C`, `rstd = 1/√(Σ(x−mean)²/C + eps)`, `out = (x−mean)·rstd·weight + bias`.
   * out, inp [N,C]; mean, rstd [N] (saved for backward; may be omitted at inference); weight, bias [C].
   */
  layernormForward(
    args: {
      out: Buf;
      mean?: Buf;
      rstd?: Buf;
      inp: Buf;
      weight: Buf;
      bias: Buf;
      N: number;
      C: number;
      eps: number;
    },
  ): void;
  /**
   * Layernorm gradient. dinp [N,C] (=|+= by `accumulate`); dweight, dbias [C] always `+=`.
   * With x̂ = (x−mean)·rstd and g = dout·weight: dinp = rstd·(g − mean(g) − x̂·mean(g·x̂)).
   */
  layernormBackward(
    args: {
      dinp: Buf;
      dweight: Buf;
      dbias: Buf;
      dout: Buf;
      inp: Buf;
      weight: Buf;
      mean: Buf;
      rstd: Buf;
      N: number;
      C: number;
      accumulate?: boolean;
    },
  ): void;

  // ---- matmul ----
  /** See {@link MatmulArgs}. */
  matmul(args: MatmulArgs): void;
  /** `out[j] (=|+=) Σ_i inp[i,j]` over M rows: the bias gradient of a linear layer. inp [M,N], out [N]. */
  sumRows(args: { out: Buf; inp: Buf; M: number; N: number; accumulate?: boolean }): void;

  // ---- attention ----
  /**
   * Floats of the `att` buffer that attentionForward fills and attentionBackward reads: B·NH·T² (the
   * probabilities) unless the backend saves less (WebGPU's "flash" kernels: one log-sum-exp and one D per
   * row). Optional: absent means B·NH·T².
   */
  attentionSavedLength?(B: number, T: number, NH: number): number;
  /**
   * Causal multi-head softmax attention with a key padding mask, as GPT-2 computes it.
   * qkv [B,T,3C] (q, k, v concatenated on the channel axis, heads of HS contiguous within each);
   * mask i32 [B,T] (1 = real token, 0 = padding) or omitted; out [B,T,C]; att [B,NH,T,T] (the softmax
   * probabilities, saved for backward). Key s is visible to query t when s ≤ t and mask[b,s] = 1.
   * The mask may also hold segment ids (packed rows: 1, 2, … per example, 0 for padding): then key s is
   * visible to query t when s ≤ t, mask[b,s] ≠ 0 and mask[b,s] = mask[b,t] (block-diagonal causal); a
   * padding query (mask[b,t] = 0) sees every earlier non-padding key, as it does under a 0/1 mask.
   * Scores are q·k / √HS. A query row that sees no key gets probabilities 0 and output 0.
   *
   * With `dropout` (HF's attn_dropout on the probabilities, training mode): `att` still receives the
   * undropped softmax P (the backward needs it), and `out = (P ⊙ keep · scale)·v` where keep and scale are
   * those of {@link Backend.dropoutForward} with the element index i = the flat index into att [B,NH,T,T],
   * i.e. ((b·NH + h)·T + t)·T + s. `dropout` absent or p = 0: exactly the undropped op.
   */
  attentionForward(
    args: {
      out: Buf;
      att: Buf;
      qkv: Buf;
      mask?: Buf;
      B: number;
      T: number;
      C: number;
      NH: number;
      dropout?: AttentionDropout;
    },
  ): void;
  /**
   * Gradient of attentionForward: dqkv [B,T,3C] assigned (=). Pass the forward's `dropout` unchanged:
   * then dv uses the dropped probabilities P ⊙ keep · scale, and the gradient flowing into the softmax is
   * `(dout·vᵀ) ⊙ keep · scale` (the softmax Jacobian itself uses the saved, undropped P).
   */
  attentionBackward(
    args: {
      dqkv: Buf;
      dout: Buf;
      qkv: Buf;
      att: Buf;
      /** The forward's key padding mask (a backend that recomputes the probabilities needs it again). */
      mask?: Buf;
      B: number;
      T: number;
      C: number;
      NH: number;
      dropout?: AttentionDropout;
    },
  ): void;
  /**
   * Inference attention with a KV cache. qkv [B,Tn,3C] for the Tn new tokens at positions pos0…pos0+Tn−1;
   * kcache, vcache [B,NH,Tmax,HS]; the new keys and values are written into the caches at pos0…, then
   * each new query attends causally to cache positions ≤ its own (mask i32 [B,Tmax] optional, as above).
   * out [B,Tn,C].
   */
  attentionCached(
    args: {
      out: Buf;
      qkv: Buf;
      kcache: Buf;
      vcache: Buf;
      mask?: Buf;
      B: number;
      Tn: number;
      pos0: number;
      Tmax: number;
      C: number;
      NH: number;
    },
  ): void;

  // ---- loss ----
  /**
   * Fused softmax + masked cross-entropy. logits [N,V]; targets i32 [N] (−100 = ignored).
   * losses [N]: `−log softmax(logits[n])[targets[n]]`, 0 where ignored.
   * dlogits [N,V]: `(softmax(logits[n]) − onehot(targets[n])) · scale`, 0 for ignored rows; it may be the
   * same buffer as `logits` (computed in place). `scale` is usually 1/(number of supervised rows).
   * correct [N] (optional): 1 where the row's argmax (the first index of its largest logit, as torch.argmax) is
   * its target, else 0 (0 where ignored): the token accuracy, read from the logits before any is overwritten.
   */
  crossEntropy(
    args: {
      losses: Buf;
      dlogits?: Buf;
      logits: Buf;
      targets: Buf;
      N: number;
      V: number;
      scale: number;
      correct?: Buf;
    },
  ): void;
  /** `out[0] (=|+=) Σ_i inp[i] · s` for i < n (s default 1). */
  sum(args: { out: Buf; inp: Buf; n: number; s?: number; accumulate?: boolean }): void;

  // ---- optimizer ----
  /** `out[0] = √(Σ over all bufs of Σ x²)`: the global L2 norm of many buffers (grad-norm for clipping). */
  globalNorm(args: { out: Buf; bufs: readonly Buf[] }): void;
  /**
   * One AdamW step, exactly as torch.optim.AdamW, with gradient clipping folded in:
   * `g = grad · min(1, maxNorm / (norm[0] + 1e-6))` (torch.nn.utils.clip_grad_norm_; no clipping when
   * `norm` is omitted), `param −= lr·weightDecay·param`, `m = β1·m + (1−β1)·g`, `v = β2·v + (1−β2)·g²`,
   * `param −= lr · (m / (1−β1^step)) / (√(v / (1−β2^step)) + eps)`. `step` counts from 1.
   */
  adamw(
    args: {
      param: Buf;
      grad: Buf;
      m: Buf;
      v: Buf;
      n: number;
      lr: number;
      beta1: number;
      beta2: number;
      eps: number;
      weightDecay: number;
      step: number;
      norm?: Buf;
      maxNorm?: number;
    },
  ): void;
}

/** The numeric ops of {@link Backend}: the methods that take one `args` object. */
export type OpName =
  | "add"
  | "scale"
  | "geluForward"
  | "geluBackward"
  | "dropoutForward"
  | "dropoutBackward"
  | "embeddingForward"
  | "embeddingBackward"
  | "layernormForward"
  | "layernormBackward"
  | "matmul"
  | "sumRows"
  | "attentionForward"
  | "attentionBackward"
  | "attentionCached"
  | "crossEntropy"
  | "sum"
  | "globalNorm"
  | "adamw";

/**
 * A buffer pool's size class for `n` (elements or bytes): `n` rounded up to the next quarter step between
 * powers of two (at most 25 % more), so that buffers of nearby sizes share a class. Both backends' pools
 * use it.
 */
export function quarterStepClass(n: number): number {
  const p = 2 ** Math.floor(Math.log2(n));
  const step = p / 4;
  return Math.ceil(n / step) * step;
}

/** Every {@link OpName}, for code that wraps all ops (the CPU backend's op timer). */
export const OP_NAMES: readonly OpName[] = Object.keys(
  {
    add: 1,
    scale: 1,
    geluForward: 1,
    geluBackward: 1,
    dropoutForward: 1,
    dropoutBackward: 1,
    embeddingForward: 1,
    embeddingBackward: 1,
    layernormForward: 1,
    layernormBackward: 1,
    matmul: 1,
    sumRows: 1,
    attentionForward: 1,
    attentionBackward: 1,
    attentionCached: 1,
    crossEntropy: 1,
    sum: 1,
    globalNorm: 1,
    adamw: 1,
  } satisfies Record<OpName, 1>,
) as OpName[];

/**
 * The argument object of op `K`, as {@link Backend} declares it (with its field docs): the backends write
 * `geluForward(args: OpArgs<"geluForward">)` instead of spelling the fields out again.
 */
export type OpArgs<K extends OpName> = Parameters<Backend[K]>[0];
