/**
 * The CPU reference backend: every {@link Backend} op as plain loops over `Float32Array`, written to be read.
 * This file is the spec that the WGSL kernels must match, in the spirit of llm.c's `train_gpt2.c`: each op
 * states its maths, its shapes (B batch, T time, C channels, NH heads, HS = C/NH head size, V vocab,
 * N = B·T rows) and which outputs are assigned (`=`) and which accumulate (`+=`).
 *
 * Numerics: buffers hold float32; the arithmetic is JavaScript's float64, so every reduction (dot
 * products, means, sums, softmax denominators) accumulates in float64 and is rounded to float32 once, when
 * it is stored. A float32 GPU kernel therefore matches this backend to float32 rounding, not bit for bit.
 *
 * Everything runs at once on the calling thread; `sync()` has nothing to wait for.
 *
 * This file is the ops alone, as loops (the buffers and their pool are memory.ts). `CpuBackend` (fast.ts)
 * extends this class with BLAS, WebAssembly SIMD and helper threads where they load, and runs these loops
 * for the rest; with `matmul: "reference"` (or `GPT2_SFT_CPU=reference`) it runs nothing but these loops.
 *
 * @example
 * ```ts
 * import { CpuReferenceBackend, cpuData } from "./reference.ts";
 * const be = new CpuReferenceBackend();
 * const a = be.upload(new Float32Array([1, 2, 3, 4])); // [2,2]
 * const out = be.alloc(4);
 * be.matmul({ out, a, b: a, M: 2, N: 2, K: 2 });
 * console.log(cpuData(out)); // Float32Array [7, 10, 15, 22]
 * ```
 * @module
 */

import { installArgChecks } from "../arg_checks.ts";
import { type AttentionDropout, type Backend, type MatmulArgs, OP_NAMES, type OpArgs } from "../backend.ts";
import { type KernelTime, OpTimer } from "../profile.ts";
import { dropoutHash, type DropoutParams, dropoutParams } from "../dropout_hash.ts";
import { CpuMemory, f32, i32 } from "./memory.ts";
import { activationMath } from "./activation.ts";

/** The target id that cross-entropy ignores (PyTorch's `ignore_index`). */
const IGNORE_INDEX = -100;

/** Options of {@link CpuReferenceBackend}. */
export interface CpuReferenceOptions {
  /**
   * Time every op on the host clock ({@link CpuReferenceBackend.profile}). Default off (the front doors pass
   * `GPT2_SFT_PROFILE=1`).
   */
  profile?: boolean;
}

/** The device line of the reference backend. */
const REFERENCE_DESCRIPTION = "CPU reference (plain TypeScript loops, 1 thread)";

/** The reference backend: synchronous loops over typed arrays on the calling thread. */
export class CpuReferenceBackend extends CpuMemory implements Backend {
  readonly name = "cpu";
  /** The device line (a subclass's may change: fast.ts says "1 thread" once its helper threads fail to start). */
  description: string;
  /** The op timer when profiling (`GPT2_SFT_PROFILE=1`). */
  readonly #timer: OpTimer | undefined;

  /** `description`: the device line, which a subclass with fast paths (fast.ts) passes to say what they are. */
  constructor(options: CpuReferenceOptions = {}, description = REFERENCE_DESCRIPTION) {
    super();
    this.description = description;
    if (options.profile) {
      this.#timer = new OpTimer();
      this.#timer.install(this, OP_NAMES);
      this.description += ", profiling";
    }
    // every op's sizes and arguments checked before it runs (outside the timer), as on WebGPU
    installArgChecks(this);
  }

  /** Whether ops are being timed (the `profile` option, `GPT2_SFT_PROFILE=1`). */
  get profiling(): boolean {
    return this.#timer !== undefined;
  }

  /**
   * Milliseconds per op since the last reset, largest first (matmuls keyed by shape). Async like the WebGPU
   * backend's. Throws when the backend was created without profiling.
   */
  profile(opts: { reset?: boolean } = {}): Promise<KernelTime[]> {
    if (!this.#timer) {
      return Promise.reject(new Error("Cannot report a profile: the backend was created without `profile`"));
    }
    const rows = this.#timer.report();
    if (opts.reset) this.#timer.reset();
    return Promise.resolve(rows);
  }

  // ------------------------------------------------------------------------------------------------
  // elementwise
  // ------------------------------------------------------------------------------------------------

  /** out (=|+=) a + b. `out` may alias `a` (or `b`): each element is read before it is written. */
  add(args: OpArgs<"add">): void {
    const { n } = args;
    const out = f32(args.out, "add out"), a = f32(args.a, "add a"), b = f32(args.b, "add b");
    if (args.accumulate) { for (let i = 0; i < n; i++) out[i] = out[i]! + a[i]! + b[i]!; }
    else for (let i = 0; i < n; i++) out[i] = a[i]! + b[i]!;
  }

  /** buf *= s. */
  scale(args: OpArgs<"scale">): void {
    const { n, s } = args;
    const x = f32(args.buf, "scale buf");
    for (let i = 0; i < n; i++) x[i] = x[i]! * s;
  }

  /**
   * False: the loops recompute gelu'(x) in the backward (geluForward still fills `deriv` when it is given).
   * The fast backend saves it (fast.ts).
   */
  get geluSavesDerivative(): boolean {
    return false;
  }

  /**
   * out = act(x) for the `activation` (default gelu_new = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))); with
   * `deriv`, deriv = act'(x). Each activation's formula and derivative are in activation.ts.
   */
  geluForward(args: OpArgs<"geluForward">): void {
    const { n } = args;
    const { f, df } = activationMath(args.activation, "geluForward");
    const out = f32(args.out, "gelu out"), inp = f32(args.inp, "gelu inp");
    const deriv = args.deriv ? f32(args.deriv, "gelu deriv") : undefined;
    for (let i = 0; i < n; i++) {
      const x = inp[i]!;
      out[i] = f(x);
      if (deriv) deriv[i] = df(x);
    }
  }

  /**
   * dinp (=|+=) act'(x)·dout (activation.ts), or deriv·dout with the forward's `deriv`.
   */
  geluBackward(args: OpArgs<"geluBackward">): void {
    const { n } = args;
    const { df } = activationMath(args.activation, "geluBackward");
    const dinp = f32(args.dinp, "gelu dinp"), inp = f32(args.inp, "gelu inp");
    const dout = f32(args.dout, "gelu dout");
    const deriv = args.deriv ? f32(args.deriv, "gelu deriv") : undefined;
    const accumulate = !!args.accumulate;
    for (let i = 0; i < n; i++) {
      const g = (deriv ? deriv[i]! : df(inp[i]!)) * dout[i]!;
      dinp[i] = accumulate ? dinp[i]! + g : g;
    }
  }

  /**
   * Inverted dropout: out[i] = keep(i) ? inp[i]·scale : 0, with keep(i) = h(seed, i) ≥ ⌊p·2³²⌋ and
   * scale = fround(1/(1−p)) (dropout_hash.ts). The product is rounded to float32 once, as a GPU does, so the
   * WebGPU kernel matches this bit for bit. `out` may be `inp`.
   */
  dropoutForward(args: OpArgs<"dropoutForward">): void {
    const { n } = args;
    const d = dropoutParams(args.p, args.seed, "dropoutForward");
    const out = f32(args.out, "dropout out"), inp = f32(args.inp, "dropout inp");
    const { key, threshold, scale } = d;
    for (let i = 0; i < n; i++) out[i] = dropoutHash(key, i) >= threshold ? inp[i]! * scale : 0;
  }

  /**
   * dinp[i] (=|+=) keep(i) ? dout[i]·scale : 0, the mask recomputed from (p, seed). The product is
   * rounded to float32 before it is added (as the GPU does), so the two backends agree bit for bit.
   */
  dropoutBackward(args: OpArgs<"dropoutBackward">): void {
    const { n } = args;
    const d = dropoutParams(args.p, args.seed, "dropoutBackward");
    const dinp = f32(args.dinp, "dropout dinp"), dout = f32(args.dout, "dropout dout");
    const { key, threshold, scale } = d;
    for (let i = 0; i < n; i++) {
      const g = dropoutHash(key, i) >= threshold ? Math.fround(dout[i]! * scale) : 0;
      dinp[i] = args.accumulate ? dinp[i]! + g : g;
    }
  }

  // ------------------------------------------------------------------------------------------------
  // embedding
  // ------------------------------------------------------------------------------------------------

  /** out[b,t,:] = wte[ids[b,t],:] + wpe[pos0 + t,:]. Token ids outside [0, V) are an error. */
  embeddingForward(args: OpArgs<"embeddingForward">): void {
    const { B, T, C } = args;
    const pos0 = args.pos0 ?? 0;
    const out = f32(args.out, "embedding out"), ids = i32(args.ids, "embedding ids");
    const positions = args.positions ? i32(args.positions, "embedding positions") : null;
    const wte = f32(args.wte, "embedding wte");
    const wpe = f32(args.wpe, "embedding wpe");
    const V = Math.floor(wte.length / C), P = Math.floor(wpe.length / C);
    for (let bt = 0; bt < B * T; bt++) {
      const t = bt % T;
      const id = ids[bt]!;
      if (id < 0 || id >= V) throw new Error(`Cannot embed token: id ${id} at row ${bt} is outside [0, ${V})`);
      const pos = positions ? positions[bt]! : pos0 + t;
      if (pos < 0 || pos >= P) throw new Error(`Cannot embed token: position ${pos} at row ${bt} is outside [0, ${P})`);
      const o = bt * C, e = id * C, p = pos * C;
      for (let c = 0; c < C; c++) out[o + c] = wte[e + c]! + wpe[p + c]!;
    }
  }

  /**
   * dwte[ids[b,t],:] += dout[b,t,:];  dwpe[pos,:] += dout[b,t,:]  (both accumulate), pos = t or, with
   * `positions`, positions[b,t].
   * Deterministic: rows are added in the fixed order b = 0…B−1, t = 0…T−1, so repeated token ids sum in
   * the same order every time. (A GPU kernel gets the same property by grouping rows by token id.)
   */
  embeddingBackward(args: OpArgs<"embeddingBackward">): void {
    const { B, T, C, V } = args;
    const positions = args.positions ? i32(args.positions, "embedding positions") : null;
    const dwte = f32(args.dwte, "embedding dwte");
    const dwpe = f32(args.dwpe, "embedding dwpe"), P = Math.floor(dwpe.length / C);
    const dout = f32(args.dout, "embedding dout"), ids = i32(args.ids, "embedding ids");
    for (let bt = 0; bt < B * T; bt++) {
      const t = positions ? positions[bt]! : bt % T;
      const id = ids[bt]!;
      if (id < 0 || id >= V) throw new Error(`Cannot backprop embedding: id ${id} at row ${bt} is outside [0, ${V})`);
      if (t < 0 || t >= P) {
        throw new Error(`Cannot backprop embedding: position ${t} at row ${bt} is outside [0, ${P})`);
      }
      const o = bt * C, e = id * C, p = t * C;
      for (let c = 0; c < C; c++) {
        const d = dout[o + c]!;
        dwte[e + c] = dwte[e + c]! + d;
        dwpe[p + c] = dwpe[p + c]! + d;
      }
    }
  }

  // ------------------------------------------------------------------------------------------------
  // layernorm
  // ------------------------------------------------------------------------------------------------

  /**
   * Per row n: mean = Σx/C, var = Σ(x − mean)²/C (biased, as torch), rstd = 1/√(var + eps),
   * out = (x − mean)·rstd·weight + bias. Saves mean and rstd [N] for the backward when given.
   */
  layernormForward(args: OpArgs<"layernormForward">): void {
    const { N, C, eps } = args;
    const out = f32(args.out, "layernorm out"), inp = f32(args.inp, "layernorm inp");
    const weight = f32(args.weight, "layernorm weight"), bias = f32(args.bias, "layernorm bias");
    const meanOut = args.mean ? f32(args.mean, "layernorm mean") : undefined;
    const rstdOut = args.rstd ? f32(args.rstd, "layernorm rstd") : undefined;
    for (let n = 0; n < N; n++) {
      const o = n * C;
      // mean over the channels
      let sum = 0;
      for (let c = 0; c < C; c++) sum += inp[o + c]!;
      const mean = sum / C;
      // biased variance, two-pass (subtract the mean first: no cancellation)
      let sq = 0;
      for (let c = 0; c < C; c++) {
        const d = inp[o + c]! - mean;
        sq += d * d;
      }
      const rstd = 1 / Math.sqrt(sq / C + eps);
      // normalise, then scale and shift
      for (let c = 0; c < C; c++) out[o + c] = (inp[o + c]! - mean) * rstd * weight[c]! + bias[c]!;
      if (meanOut) meanOut[n] = mean;
      if (rstdOut) rstdOut[n] = rstd;
    }
  }

  /**
   * With x̂ = (x − mean)·rstd, y = x̂·w + b and g = dout·w (all per row n, per channel c):
   *   dbias   += Σ_n dout                                   (always +=)
   *   dweight += Σ_n dout·x̂                                 (always +=)
   *   dinp    (=|+=) rstd·(g − mean_c(g) − x̂·mean_c(g·x̂))
   * The last line is the chain rule through x̂: ∂x̂_c/∂x_j = rstd·(δ_cj − 1/C − x̂_c·x̂_j/C).
   * Uses the mean and rstd the forward saved (x̂ is recomputed from inp).
   */
  layernormBackward(args: OpArgs<"layernormBackward">): void {
    const { N, C } = args;
    const dinp = f32(args.dinp, "layernorm dinp"), dout = f32(args.dout, "layernorm dout");
    const dweight = f32(args.dweight, "layernorm dweight"), dbias = f32(args.dbias, "layernorm dbias");
    const inp = f32(args.inp, "layernorm inp"), weight = f32(args.weight, "layernorm weight");
    const meanA = f32(args.mean, "layernorm mean"), rstdA = f32(args.rstd, "layernorm rstd");
    for (let n = 0; n < N; n++) {
      const o = n * C;
      const mean = meanA[n]!, rstd = rstdA[n]!;
      // first pass: the two row means the formula needs
      let gSum = 0, gxSum = 0;
      for (let c = 0; c < C; c++) {
        const xhat = (inp[o + c]! - mean) * rstd;
        const g = dout[o + c]! * weight[c]!;
        gSum += g;
        gxSum += g * xhat;
      }
      const gMean = gSum / C, gxMean = gxSum / C;
      // second pass: parameter gradients and the input gradient
      for (let c = 0; c < C; c++) {
        const xhat = (inp[o + c]! - mean) * rstd;
        const dy = dout[o + c]!;
        dbias[c] = dbias[c]! + dy;
        dweight[c] = dweight[c]! + dy * xhat;
        const d = rstd * (dy * weight[c]! - gMean - xhat * gxMean);
        dinp[o + c] = args.accumulate ? dinp[o + c]! + d : d;
      }
    }
  }

  // ------------------------------------------------------------------------------------------------
  // matmul
  // ------------------------------------------------------------------------------------------------

  /**
   * out[M,N] (=|+=) op(A)[M,K]·op(B)[K,N] (+ bias[N]), i.e. out[i,j] = Σ_k A(i,k)·B(k,j) + bias[j].
   * Storage: A(i,k) = a[i·K + k], or a[k·M + i] with transA; B(k,j) = b[k·N + j], or b[j·K + k] with transB.
   * Each output row is summed in float64 (a scratch row), then rounded once when stored.
   * Loop orders keep the innermost loop contiguous in memory:
   * - B not transposed: i-k-j, `acc[j] += A(i,k)·b[k,j]` runs along a row of b.
   * - B transposed: i-j-k, a dot product of row i of A with row j of b (both contiguous over k).
   * A transposed row i is first gathered into a contiguous scratch row.
   */
  matmul(args: MatmulArgs): void {
    const { M, N, K } = args;
    const out = f32(args.out, "matmul out");
    const a = f32(args.a, "matmul a"), b = f32(args.b, "matmul b");
    const bias = args.bias ? f32(args.bias, "matmul bias") : undefined;
    const arow = new Float64Array(K); // row i of A, contiguous
    const acc = new Float64Array(N); // row i of the product, in float64
    for (let i = 0; i < M; i++) {
      // gather A(i, :)
      if (args.transA) { for (let k = 0; k < K; k++) arow[k] = a[k * M + i]!; }
      else for (let k = 0; k < K; k++) arow[k] = a[i * K + k]!;
      // acc = A(i, :)·B
      if (args.transB) rowTimesBt(acc, arow, b, N, K);
      else rowTimesB(acc, arow, b, N, K);
      // store, adding the bias and (when accumulating) what was there
      const o = i * N;
      for (let j = 0; j < N; j++) {
        let v = acc[j]!;
        if (bias) v += bias[j]!;
        out[o + j] = args.accumulate ? out[o + j]! + v : v;
      }
    }
  }

  /** out[j] (=|+=) Σ_i inp[i,j] over M rows (the bias gradient of a linear layer), summed in float64. */
  sumRows(args: OpArgs<"sumRows">): void {
    const { M, N } = args;
    const out = f32(args.out, "sumRows out"), inp = f32(args.inp, "sumRows inp");
    const acc = new Float64Array(N);
    for (let i = 0; i < M; i++) {
      const o = i * N;
      for (let j = 0; j < N; j++) acc[j] = acc[j]! + inp[o + j]!;
    }
    for (let j = 0; j < N; j++) out[j] = args.accumulate ? out[j]! + acc[j]! : acc[j]!;
  }

  // ------------------------------------------------------------------------------------------------
  // attention
  // ------------------------------------------------------------------------------------------------

  /**
   * Causal softmax attention with a key padding mask. For batch b, head h, query t (HS = C/NH; q, k, v
   * of head h are qkv[b,t, h·HS …], qkv[b,t, C + h·HS …], qkv[b,t, 2C + h·HS …]):
   *   visible(s)  = s ≤ t and mask[b,s] ≠ 0           (no mask: every s ≤ t)
   *                 and, when mask[b,t] ≠ 0, mask[b,s] = mask[b,t]   (segment ids of packed rows, {@link keyHidden})
   *   score[s]    = q_t·k_s / √HS                      for visible s
   *   att[b,h,t,s] = exp(score[s] − max) / Σ_visible exp(score − max)   for visible s, else 0
   *   out[b,t,h]  = Σ_s att[b,h,t,s]·v_s
   * A query that sees no key (its whole row masked) gets att 0 and out 0. att is written in full
   * (masked and future entries = 0); it is saved for the backward.
   * With `dropout` (p > 0), pass 3 uses the dropped probabilities instead, each rounded to float32 as torch
   * stores them:  P̃[t,s] = keep(a) ? fround(att[a]·scale) : 0  with a = ((b·NH + h)·T + t)·T + s, the flat
   * index into att (keep and scale as dropoutForward). att itself keeps the undropped P.
   */
  attentionForward(args: OpArgs<"attentionForward">): void {
    const { B, T, C, NH } = args;
    const HS = C / NH;
    const drop = attentionDropout(args.dropout, "attentionForward");
    const out = f32(args.out, "attention out"), att = f32(args.att, "attention att");
    const qkv = f32(args.qkv, "attention qkv");
    const mask = args.mask ? i32(args.mask, "attention mask") : undefined;
    const scale = 1 / Math.sqrt(HS);
    const scores = new Float64Array(T);
    const acc = new Float64Array(HS); // one output head row, in float64
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < NH; h++) {
        for (let t = 0; t < T; t++) {
          const q = (b * T + t) * 3 * C + h * HS;
          const arow = ((b * NH + h) * T + t) * T;
          const mt = mask ? mask[b * T + t]! : 0; // the query's segment (0: padding, or no mask)
          // pass 1: scores of the visible keys and their max
          let max = -Infinity;
          for (let s = 0; s <= t; s++) {
            if (mask && keyHidden(mask[b * T + s]!, mt)) continue;
            const k = (b * T + s) * 3 * C + C + h * HS;
            let dot = 0;
            for (let i = 0; i < HS; i++) dot += qkv[q + i]! * qkv[k + i]!;
            scores[s] = dot * scale;
            if (scores[s]! > max) max = scores[s]!;
          }
          // pass 2: softmax over the visible keys (subtracting the max keeps exp ≤ 1)
          let sum = 0;
          for (let s = 0; s < T; s++) {
            const visible = s <= t && !(mask && keyHidden(mask[b * T + s]!, mt));
            const e = visible ? Math.exp(scores[s]! - max) : 0;
            scores[s] = e;
            sum += e;
          }
          const inv = sum > 0 ? 1 / sum : 0; // a row with no visible key stays all zero
          for (let s = 0; s < T; s++) att[arow + s] = scores[s]! * inv;
          // pass 3: out = Σ_s att·v_s (probabilities as stored, so the backward sees the same numbers;
          // with dropout, the dropped and rescaled ones)
          acc.fill(0);
          for (let s = 0; s <= t; s++) {
            let p = att[arow + s]!;
            if (drop) p = dropoutHash(drop.key, arow + s) >= drop.threshold ? Math.fround(p * drop.scale) : 0;
            if (p === 0) continue; // masked key (or dropped)
            const v = (b * T + s) * 3 * C + 2 * C + h * HS;
            for (let i = 0; i < HS; i++) acc[i] = acc[i]! + p * qkv[v + i]!;
          }
          const o = (b * T + t) * C + h * HS;
          for (let i = 0; i < HS; i++) out[o + i] = acc[i]!;
        }
      }
    }
  }

  /**
   * Gradient of attentionForward; dqkv [B,T,3C] is assigned (=). With P = att (probabilities), for each
   * b, h, query t and key s ≤ t:
   *   dv_s   += P[t,s]·dout_t
   *   dP[t,s] = dout_t·v_s
   *   dS[t,s] = P[t,s]·(dP[t,s] − Σ_r P[t,r]·dP[t,r])       (softmax backward; S = score before softmax)
   *   dq_t   += dS[t,s]·k_s / √HS,   dk_s += dS[t,s]·q_t / √HS
   * Masked entries have P = 0, hence dS = 0: the mask needs no separate handling here.
   * With `dropout` (the forward's), M[t,s] = keep(a) ? scale : 0 (a the flat index into att) and
   * P̃ = fround(P·scale) where kept, 0 where dropped (the probabilities the forward multiplied v by):
   *   dv_s   += P̃[t,s]·dout_t
   *   dP[t,s] = (dout_t·v_s)·M[t,s]                          (through the dropout, into the softmax)
   * and dS as above, with the undropped P: a dropped key still gets dS = −P·Σ_r P·dP ≠ 0.
   */
  attentionBackward(args: OpArgs<"attentionBackward">): void {
    const { B, T, C, NH } = args; // args.mask is not needed: the saved probabilities are already 0 where it hid a key
    const HS = C / NH;
    const drop = attentionDropout(args.dropout, "attentionBackward");
    const dqkv = f32(args.dqkv, "attention dqkv"), dout = f32(args.dout, "attention dout");
    const qkv = f32(args.qkv, "attention qkv"), att = f32(args.att, "attention att");
    const scale = 1 / Math.sqrt(HS);
    const dP = new Float64Array(T);
    dqkv.fill(0, 0, B * T * 3 * C);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < NH; h++) {
        for (let t = 0; t < T; t++) {
          const arow = ((b * NH + h) * T + t) * T;
          const q = (b * T + t) * 3 * C + h * HS;
          const dO = (b * T + t) * C + h * HS;
          // dP[s] = dout_t·v_s, and Σ_r P[t,r]·dP[t,r]; dv_s += P[t,s]·dout_t
          let pdp = 0;
          for (let s = 0; s <= t; s++) {
            const p = att[arow + s]!;
            if (p === 0) {
              dP[s] = 0; // masked key (or underflow): contributes nothing
              continue;
            }
            const v = (b * T + s) * 3 * C + 2 * C + h * HS;
            // m: the dropout factor of this probability (1 without dropout); pd: the probability as used
            const m = !drop ? 1 : dropoutHash(drop.key, arow + s) >= drop.threshold ? drop.scale : 0;
            const pd = m === 1 ? p : Math.fround(p * m);
            let dot = 0;
            for (let i = 0; i < HS; i++) {
              dot += dout[dO + i]! * qkv[v + i]!;
              dqkv[v + i] = dqkv[v + i]! + pd * dout[dO + i]!;
            }
            dP[s] = dot * m;
            pdp += p * dP[s]!;
          }
          // dS and its flow into q and k
          for (let s = 0; s <= t; s++) {
            const p = att[arow + s]!;
            if (p === 0) continue;
            const dS = p * (dP[s]! - pdp) * scale;
            const k = (b * T + s) * 3 * C + C + h * HS;
            for (let i = 0; i < HS; i++) {
              dqkv[q + i] = dqkv[q + i]! + dS * qkv[k + i]!;
              dqkv[k + i] = dqkv[k + i]! + dS * qkv[q + i]!;
            }
          }
        }
      }
    }
  }

  /**
   * Attention with a KV cache (inference). The Tn new tokens sit at positions p = pos0 … pos0+Tn−1.
   * 1. Write each new token's k and v (from qkv [B,Tn,3C]) into kcache, vcache [B,NH,Tmax,HS] at p.
   * 2. Each new query at position p attends to cache positions s ≤ p with mask[b,s] = 1 (mask [B,Tmax]),
   *    exactly as attentionForward: softmax of q·k/√HS, output Σ att·v, 0 for a row with no visible key.
   * out [B,Tn,C] (=).
   */
  attentionCached(args: OpArgs<"attentionCached">): void {
    const { B, Tn, pos0, Tmax, C, NH } = args;
    const { HS, out, qkv, kc, vc, mask } = cachedAttentionViews(args);
    const scale = 1 / Math.sqrt(HS);
    // 1. append the new keys and values
    for (let b = 0; b < B; b++) {
      for (let tn = 0; tn < Tn; tn++) {
        const src = (b * Tn + tn) * 3 * C;
        for (let h = 0; h < NH; h++) {
          const dst = ((b * NH + h) * Tmax + pos0 + tn) * HS;
          for (let i = 0; i < HS; i++) {
            kc[dst + i] = qkv[src + C + h * HS + i]!;
            vc[dst + i] = qkv[src + 2 * C + h * HS + i]!;
          }
        }
      }
    }
    // 2. attend
    const probs = new Float64Array(Tmax);
    const acc = new Float64Array(HS);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < NH; h++) {
        const head = (b * NH + h) * Tmax;
        for (let tn = 0; tn < Tn; tn++) {
          const p = pos0 + tn;
          const q = (b * Tn + tn) * 3 * C + h * HS;
          let max = -Infinity;
          for (let s = 0; s <= p; s++) {
            if (mask && mask[b * Tmax + s] === 0) continue;
            const k = (head + s) * HS;
            let dot = 0;
            for (let i = 0; i < HS; i++) dot += qkv[q + i]! * kc[k + i]!;
            probs[s] = dot * scale;
            if (probs[s]! > max) max = probs[s]!;
          }
          let sum = 0;
          for (let s = 0; s <= p; s++) {
            const e = mask && mask[b * Tmax + s] === 0 ? 0 : Math.exp(probs[s]! - max);
            probs[s] = e;
            sum += e;
          }
          const inv = sum > 0 ? 1 / sum : 0; // a row with no visible key stays all zero
          acc.fill(0);
          for (let s = 0; s <= p; s++) {
            // rounded to float32 like attentionForward's stored att, so both paths agree closely
            const w = Math.fround(probs[s]! * inv);
            if (w === 0) continue; // masked key
            const v = (head + s) * HS;
            for (let i = 0; i < HS; i++) acc[i] = acc[i]! + w * vc[v + i]!;
          }
          const o = (b * Tn + tn) * C + h * HS;
          for (let i = 0; i < HS; i++) out[o + i] = acc[i]!;
        }
      }
    }
  }

  // ------------------------------------------------------------------------------------------------
  // loss
  // ------------------------------------------------------------------------------------------------

  /**
   * Fused softmax + masked cross-entropy, per row n with target y = targets[n]:
   *   lse       = max + log Σ_v exp(logits[n,v] − max)            (log-sum-exp, stable)
   *   losses[n] = lse − logits[n,y]                               (= −log softmax(logits[n])[y])
   *   dlogits[n,v] = (exp(logits[n,v] − lse) − [v = y])·scale
   * Rows with y = −100 are ignored: loss 0, dlogits row 0. dlogits may be the logits buffer itself: each
   * row's loss is taken before the row is overwritten, and each element is read before it is written.
   */
  crossEntropy(args: OpArgs<"crossEntropy">): void {
    const { N, V, scale } = args;
    const losses = f32(args.losses, "crossEntropy losses"), logits = f32(args.logits, "crossEntropy logits");
    const targets = i32(args.targets, "crossEntropy targets");
    const dlogits = args.dlogits ? f32(args.dlogits, "crossEntropy dlogits") : undefined;
    const correct = args.correct ? f32(args.correct, "crossEntropy correct") : undefined;
    for (let n = 0; n < N; n++) {
      const o = n * V;
      const y = targets[n]!;
      if (correct) correct[n] = 0;
      if (y === IGNORE_INDEX) {
        losses[n] = 0;
        if (dlogits) dlogits.fill(0, o, o + V);
        continue;
      }
      if (y < 0 || y >= V) {
        throw new Error(`Cannot compute cross-entropy: target ${y} at row ${n} is outside [0, ${V})`);
      }
      // log-sum-exp with the max subtracted
      let max = -Infinity;
      let argmax = 0; // the first index of the largest logit
      for (let v = 0; v < V; v++) {
        if (logits[o + v]! > max) {
          max = logits[o + v]!;
          argmax = v;
        }
      }
      if (correct) correct[n] = argmax === y ? 1 : 0;
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(logits[o + v]! - max);
      const lse = max + Math.log(sum);
      losses[n] = lse - logits[o + y]!;
      if (!dlogits) continue;
      // gradient: softmax minus one-hot, scaled (in place is safe: logits[o+v] is read before the write)
      for (let v = 0; v < V; v++) {
        const prob = Math.exp(logits[o + v]! - lse);
        dlogits[o + v] = (prob - (v === y ? 1 : 0)) * scale;
      }
    }
  }

  /** out[0] (=|+=) s·Σ_i inp[i], summed in float64. */
  sum(args: OpArgs<"sum">): void {
    const { n } = args;
    const out = f32(args.out, "sum out"), inp = f32(args.inp, "sum inp");
    let acc = 0;
    for (let i = 0; i < n; i++) acc += inp[i]!;
    acc *= args.s ?? 1;
    out[0] = args.accumulate ? out[0]! + acc : acc;
  }

  // ------------------------------------------------------------------------------------------------
  // optimizer
  // ------------------------------------------------------------------------------------------------

  /** out[0] = √(Σ_bufs Σ_i x²), summed in float64 over every element of every buffer. */
  globalNorm(args: OpArgs<"globalNorm">): void {
    const out = f32(args.out, "globalNorm out");
    let sq = 0;
    for (const [j, buf] of args.bufs.entries()) {
      const x = f32(buf, `globalNorm bufs[${j}]`);
      // four running sums (float64): one sum waits on each addition before the next, four keep the adder
      // busy — ≈ 3× faster over GPT-2's 102 M gradients, the same value to float64 rounding
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      const n4 = x.length - (x.length % 4);
      for (let i = 0; i < n4; i += 4) {
        const a = x[i]!, b = x[i + 1]!, c = x[i + 2]!, d = x[i + 3]!;
        s0 += a * a;
        s1 += b * b;
        s2 += c * c;
        s3 += d * d;
      }
      for (let i = n4; i < x.length; i++) s0 += x[i]! * x[i]!;
      sq += (s0 + s1) + (s2 + s3);
    }
    out[0] = Math.sqrt(sq);
  }

  /**
   * One AdamW step in torch.optim.AdamW's order of operations (single-tensor path), with
   * torch.nn.utils.clip_grad_norm_ folded in:
   *   clip       = min(1, maxNorm / (norm + 1e-6))       (1 when no norm is given)
   *   g          = grad·clip
   *   param     *= 1 − lr·weightDecay                    (decoupled weight decay, before the moments)
   *   m          = lerp(m, g, 1 − β1)                     (= β1·m + (1 − β1)·g)
   *   v          = β2·v + (1 − β2)·g²
   *   stepSize   = lr / (1 − β1^step)
   *   denom      = √v / √(1 − β2^step) + eps
   *   param     −= stepSize · m / denom
   * grad is not modified. `step` counts from 1.
   */
  adamw(args: OpArgs<"adamw">): void {
    const { n, beta2, eps } = args;
    const param = f32(args.param, "adamw param"), grad = f32(args.grad, "adamw grad");
    const m = f32(args.m, "adamw m"), v = f32(args.v, "adamw v");
    const { clip, decay, w1, stepSize, bc2Sqrt } = adamwScalars(args);
    for (let i = 0; i < n; i++) {
      const g = grad[i]! * clip;
      const p = param[i]! * decay;
      // torch.lerp(start, end, w): start + w·(end − start) for w < 0.5, else end − (end − start)·(1 − w)
      const mi = w1 < 0.5 ? m[i]! + w1 * (g - m[i]!) : g - (g - m[i]!) * (1 - w1);
      const vi = v[i]! * beta2 + (1 - beta2) * g * g;
      m[i] = mi;
      v[i] = vi;
      // the moments as stored (float32), as torch reads them back
      const denom = Math.sqrt(v[i]!) / bc2Sqrt + eps;
      param[i] = p - stepSize * (m[i]! / denom);
    }
  }
}

/** The scalars of one AdamW step, as {@link adamwScalars} computes them. */
export type AdamwConstants = {
  clip: number;
  decay: number;
  w1: number;
  beta2: number;
  stepSize: number;
  bc2Sqrt: number;
  eps: number;
};

/**
 * The scalars of one AdamW step (the formulas of {@link CpuReferenceBackend.adamw}): the clip factor (reading
 * `norm`), the weight decay factor, the lerp weight w1 = 1 − β1, the step size and √(1 − β2^step), with β2
 * and eps as given.
 */
export function adamwScalars(args: OpArgs<"adamw">): AdamwConstants {
  const { lr, beta1, beta2, eps, weightDecay, step } = args;
  let clip = 1;
  if (args.norm) {
    const norm = f32(args.norm, "adamw norm")[0]!;
    clip = Math.min(1, args.maxNorm! / (norm + 1e-6));
  }
  const decay = 1 - lr * weightDecay;
  const stepSize = lr / (1 - beta1 ** step);
  const bc2Sqrt = Math.sqrt(1 - beta2 ** step);
  const w1 = 1 - beta1; // the lerp weight
  return { clip, decay, w1, beta2, stepSize, bc2Sqrt, eps };
}

/**
 * Whether the training attention's mask hides a key whose mask value is `ms` from a query whose value is
 * `mt`: padding keys (0) are hidden from every query; under segment ids (packed rows) a real query sees only
 * the keys of its own segment; a padding query (0) sees every real key. A 0/1 mask is the key padding mask.
 */
export function keyHidden(ms: number, mt: number): boolean {
  return ms === 0 || (mt !== 0 && ms !== mt);
}

/** The mask constants of an attention dropout, or undefined when there is none (absent or p = 0). */
export function attentionDropout(dropout: AttentionDropout | undefined, what: string): DropoutParams | undefined {
  if (!dropout) return undefined;
  const d = dropoutParams(dropout.p, dropout.seed, `${what} dropout`);
  return d.p === 0 ? undefined : d;
}

/** attentionCached's arguments checked (head size, positions within the cache, buffer lengths) and viewed. */
export function cachedAttentionViews(args: OpArgs<"attentionCached">): {
  HS: number;
  out: Float32Array;
  qkv: Float32Array;
  kc: Float32Array;
  vc: Float32Array;
  mask: Int32Array | undefined;
} {
  const HS = args.C / args.NH;
  return {
    HS,
    out: f32(args.out, "attentionCached out"),
    qkv: f32(args.qkv, "attentionCached qkv"),
    kc: f32(args.kcache, "attentionCached kcache"),
    vc: f32(args.vcache, "attentionCached vcache"),
    mask: args.mask ? i32(args.mask, "attentionCached mask") : undefined,
  };
}

/**
 * acc[j] = Σ_k arow[k]·b[k·N + j] (b stored [K,N]): k outer, j inner, so the inner loop runs along a
 * contiguous row of b. Four k at a time, so acc is loaded and stored a quarter as often.
 */
function rowTimesB(acc: Float64Array, arow: Float64Array, b: Float32Array, N: number, K: number): void {
  acc.fill(0);
  let k = 0;
  for (; k + 3 < K; k += 4) {
    const a0 = arow[k]!, a1 = arow[k + 1]!, a2 = arow[k + 2]!, a3 = arow[k + 3]!;
    const b0 = k * N, b1 = b0 + N, b2 = b1 + N, b3 = b2 + N;
    for (let j = 0; j < N; j++) {
      acc[j] = acc[j]! + a0 * b[b0 + j]! + a1 * b[b1 + j]! + a2 * b[b2 + j]! + a3 * b[b3 + j]!;
    }
  }
  for (; k < K; k++) {
    const ak = arow[k]!, bk = k * N;
    for (let j = 0; j < N; j++) acc[j] = acc[j]! + ak * b[bk + j]!;
  }
}

/**
 * acc[j] = Σ_k arow[k]·b[j·K + k] (b stored [N,K]): one dot product per output, contiguous over k.
 * Four outputs at a time, so each arow[k] is loaded once for four rows of b.
 */
function rowTimesBt(acc: Float64Array, arow: Float64Array, b: Float32Array, N: number, K: number): void {
  let j = 0;
  for (; j + 3 < N; j += 4) {
    const b0 = j * K, b1 = b0 + K, b2 = b1 + K, b3 = b2 + K;
    let d0 = 0, d1 = 0, d2 = 0, d3 = 0;
    for (let k = 0; k < K; k++) {
      const ak = arow[k]!;
      d0 += ak * b[b0 + k]!;
      d1 += ak * b[b1 + k]!;
      d2 += ak * b[b2 + k]!;
      d3 += ak * b[b3 + k]!;
    }
    acc[j] = d0;
    acc[j + 1] = d1;
    acc[j + 2] = d2;
    acc[j + 3] = d3;
  }
  for (; j < N; j++) {
    const bj = j * K;
    let dot = 0;
    for (let k = 0; k < K; k++) dot += arow[k]! * b[bj + k]!;
    acc[j] = dot;
  }
}
