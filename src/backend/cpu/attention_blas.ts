/**
 * The CPU backend's attention (forward and backward) with its products through a strided GEMM
 * (`cblas_sgemm` via FFI, matmul.ts): per batch b and head h, q, k, v are read in place from qkv with row
 * stride 3C, the score matrix goes straight into att[b,h], and the outputs go into out (row stride C) and
 * dqkv (row stride 3C). The mask, the softmax, dropout and the softmax backward stay in TypeScript, with
 * exactly the semantics of the reference loops of reference.ts (see `CpuReferenceBackend.attentionForward`). With
 * `scratch` (wasm_math.ts), the score and dP blocks of a head are written by BLAS into WebAssembly
 * memory, and the softmax (forward, where a row's visible keys are a prefix: no mask or right padding), its
 * backward and the dropout masks run there in SIMD, a whole head per call; otherwise the softmax's
 * exponentials may run in SIMD (`expShift`) inside TypeScript loops.
 *
 * Causality: queries are taken in blocks of {@link BLOCK} rows, and a block's products only run over the
 * keys up to its last row (the rest of those rows is zero), which skips about a third of the work at T = 256.
 *
 * Numerics: the products sum in float32 (BLAS's order), the reference in float64, so results agree to about
 * K·ε·Σ|terms| (K = HS for scores and dP, K ≤ T for the rest); the softmax runs in float64 as the reference.
 * @module
 */

import { dropoutHash, type DropoutParams } from "../dropout_hash.ts";
import type { StridedGemmArgs } from "./matmul.ts";
import type { AttentionScratch } from "./wasm_math.ts";
import { keyHidden } from "./reference.ts";

/** Query rows per block of the causal products. */
const BLOCK = 64;

/** A strided GEMM, as `FastMatmul.gemm`. */
export type GemmFn = (args: StridedGemmArgs) => void;

/** The arrays and shapes of {@link gemmAttentionForward}, already checked by the caller. */
export interface GemmAttentionForwardArgs {
  gemm: GemmFn;
  /**
   * out[0 … n) = exp(inp[off + i] − shift) in float32 (wasm_math.ts), for the softmax; without it,
   * Math.exp in float64 as the reference loops.
   */
  expShift?: (out: Float32Array, inp: Float32Array, off: number, n: number, shift: number) => void;
  /** The head's score block and the softmax in WebAssembly SIMD (T×T blocks), used where keys are a prefix. */
  scratch?: AttentionScratch;
  out: Float32Array;
  att: Float32Array;
  qkv: Float32Array;
  mask?: Int32Array;
  B: number;
  T: number;
  C: number;
  NH: number;
  /** The dropout constants, or undefined for none (p = 0). */
  drop?: DropoutParams;
  /** Only the heads bh = b·NH + h in [lo, hi) (a helper thread's share); default all B·NH. */
  heads?: [number, number];
}

/** attentionForward (see `CpuReferenceBackend.attentionForward`) with S = scale·Q·Kᵀ and out = P·V through GEMM. */
export function gemmAttentionForward(args: GemmAttentionForwardArgs): void {
  const { gemm, expShift, scratch, out, att, qkv, mask, B, T, C, NH, drop } = args;
  const heads = args.heads ?? [0, B * NH];
  const HS = C / NH, C3 = 3 * C, scale = 1 / Math.sqrt(HS);
  const e = new Float64Array(T), e32 = new Float32Array(T);
  const visible = visiblePrefix(mask, B, T);
  // the dropped probabilities of one head (att keeps the undropped P), for the heads the SIMD path does
  // not take (it keeps its own in the WASM block)
  const loops = !scratch || visible.some((len) => len < 0);
  const pd = drop && loops ? new Float32Array(T * T) : undefined;
  for (let bh = heads[0]; bh < heads[1]; bh++) {
    const b = Math.floor(bh / NH), h = bh % NH;
    const base = (b * NH + h) * T * T;
    const qo = b * T * C3 + h * HS, ko = qo + C, vo = qo + 2 * C;
    const len = visible[b]!;
    // packed rows: each query's visible keys are still one range (its segment's start … itself)
    const ranges = mask && len < 0 ? segmentRanges(mask, b, T) : undefined;
    // the SIMD softmax takes the scores in the WASM block, else they go straight into att[b,h]
    const simd = scratch && len >= 0 ? scratch : undefined;
    const sc = simd ? simd.p : att, sOff = simd ? 0 : base;
    // S = scale·Q·Kᵀ (block rows [t0,t1), key columns [0,t1))
    for (let t0 = 0; t0 < T; t0 += BLOCK) {
      const t1 = Math.min(T, t0 + BLOCK);
      gemm({
        transA: false,
        transB: true,
        M: t1 - t0,
        N: t1,
        K: HS,
        alpha: scale,
        a: qkv,
        aOffset: qo + t0 * C3,
        lda: C3,
        b: qkv,
        bOffset: ko,
        ldb: C3,
        beta: 0,
        c: sc,
        cOffset: sOff + t0 * T,
        ldc: T,
      });
    }
    // softmax over the visible keys (s ≤ t, not hidden by the mask: keyHidden); everything else 0
    if (simd) {
      simd.softmax(len);
      att.set(simd.p, base);
      if (drop) simd.dropP(drop, base);
    }
    for (let t = 0; t < T && !simd; t++) {
      const row = base + t * T;
      if (len >= 0) {
        // the visible keys are s < n: no per-key mask test, exps in place of a float64 copy
        const n = Math.min(t + 1, len);
        softmaxRange(att, row, 0, n, T, e, e32, expShift);
        if (pd) dropRow(pd, att, drop!, row, t * T, t, T);
        continue;
      }
      if (ranges) {
        softmaxRange(att, row, ranges[2 * t]!, ranges[2 * t + 1]!, T, e, e32, expShift);
        if (pd) dropRow(pd, att, drop!, row, t * T, t, T);
        continue;
      }
      const mt = mask ? mask[b * T + t]! : 0;
      let max = -Infinity;
      for (let s = 0; s <= t; s++) {
        if (mask && keyHidden(mask[b * T + s]!, mt)) continue;
        const x = att[row + s]!;
        if (x > max) max = x;
      }
      let sum = 0;
      if (expShift && max !== -Infinity) {
        expShift(e32, att, row, t + 1, max);
        for (let s = 0; s <= t; s++) {
          const v = mask && keyHidden(mask[b * T + s]!, mt) ? 0 : e32[s]!;
          e[s] = v;
          sum += v;
        }
      } else {
        for (let s = 0; s <= t; s++) {
          const v = mask && keyHidden(mask[b * T + s]!, mt) ? 0 : Math.exp(att[row + s]! - max);
          e[s] = v;
          sum += v;
        }
      }
      const inv = sum > 0 ? 1 / sum : 0; // a row with no visible key stays all zero
      for (let s = 0; s <= t; s++) att[row + s] = e[s]! * inv;
      att.fill(0, row + t + 1, row + T);
      if (pd) dropRow(pd, att, drop!, row, t * T, t, T);
    }
    // out[b,:,h] = P·V (P the dropped probabilities with dropout)
    for (let t0 = 0; t0 < T; t0 += BLOCK) {
      const t1 = Math.min(T, t0 + BLOCK);
      gemm({
        transA: false,
        transB: false,
        M: t1 - t0,
        N: HS,
        K: t1,
        alpha: 1,
        a: simd ? (drop ? simd.pd : simd.p) : pd ?? att,
        aOffset: (simd || pd ? 0 : base) + t0 * T,
        lda: T,
        b: qkv,
        bOffset: vo,
        ldb: C3,
        beta: 0,
        c: out,
        cOffset: (b * T + t0) * C + h * HS,
        ldc: C,
      });
    }
  }
}

/**
 * Per batch row b, n when the visible keys are exactly 0 … n−1 (no mask, or ones then zeros: right
 * padding, as `collate` pads), else −1 (the general per-key test, or packed rows: {@link segmentRanges}).
 */
function visiblePrefix(mask: Int32Array | undefined, B: number, T: number): Int32Array {
  const out = new Int32Array(B).fill(T);
  if (!mask) return out;
  for (let b = 0; b < B; b++) {
    const n = prefixLength(mask, b * T, T);
    // one segment: every real key is visible to every later query
    out[b] = n >= 0 && mask.subarray(b * T, b * T + n).every((m) => m === mask[b * T]) ? n : -1;
  }
  return out;
}

/**
 * Packed row b (segments of equal ids one after the other, then padding): each query's visible keys as
 * one range, lo at 2t and hi (exclusive) at 2t + 1: its segment's first key … itself, or for a padding
 * query every real key. Undefined when the row is not of that form (the per-key test then applies).
 */
function segmentRanges(mask: Int32Array, b: number, T: number): Int32Array | undefined {
  const out = new Int32Array(2 * T);
  const o = b * T;
  let n = 0; // the real tokens, all before the padding
  while (n < T && mask[o + n] !== 0) n++;
  for (let s = n; s < T; s++) if (mask[o + s] !== 0) return undefined;
  const seen = new Set<number>();
  let lo = 0;
  for (let t = 0; t < n; t++) {
    if (t > 0 && mask[o + t] !== mask[o + t - 1]) {
      if (seen.has(mask[o + t]!)) return undefined; // a segment in two pieces
      lo = t;
    }
    seen.add(mask[o + t]!);
    out[2 * t] = lo;
    out[2 * t + 1] = t + 1;
  }
  for (let t = n; t < T; t++) out[2 * t + 1] = n;
  return out;
}

/**
 * att[row … row+T) = softmax of att[row+lo … row+hi) with zeros around it (hi ≤ lo: all zeros), with the
 * same arithmetic as the general loop: exps in float32 through `expShift` (else float64 `Math.exp`), summed
 * in float64.
 */
function softmaxRange(
  att: Float32Array,
  row: number,
  lo: number,
  hi: number,
  T: number,
  e: Float64Array,
  e32: Float32Array,
  expShift: GemmAttentionForwardArgs["expShift"],
): void {
  let max = -Infinity;
  for (let s = lo; s < hi; s++) {
    const x = att[row + s]!;
    if (x > max) max = x;
  }
  let sum = 0;
  if (hi > lo && expShift) {
    expShift(e32, att, row + lo, hi - lo, max);
    for (let s = 0; s < hi - lo; s++) sum += e32[s]!;
    const inv = 1 / sum;
    for (let s = 0; s < hi - lo; s++) att[row + lo + s] = e32[s]! * inv;
  } else if (hi > lo) {
    for (let s = lo; s < hi; s++) {
      const v = Math.exp(att[row + s]! - max);
      e[s] = v;
      sum += v;
    }
    const inv = 1 / sum;
    for (let s = lo; s < hi; s++) att[row + s] = e[s]! * inv;
  }
  att.fill(0, row, row + Math.max(lo, 0));
  att.fill(0, row + Math.max(hi, lo), row + T);
}

/** One row of the dropped probabilities: pd[prow + s] = P·scale where kept, else 0 (s ≤ t; 0 after). */
function dropRow(
  pd: Float32Array,
  att: Float32Array,
  drop: DropoutParams,
  row: number,
  prow: number,
  t: number,
  T: number,
): void {
  for (let s = 0; s <= t; s++) {
    const p = att[row + s]!;
    pd[prow + s] = p !== 0 && dropoutHash(drop.key, row + s) >= drop.threshold ? Math.fround(p * drop.scale) : 0;
  }
  pd.fill(0, prow + t + 1, prow + T);
}

/** The arrays and shapes of {@link gemmAttentionBackward}, already checked by the caller. */
export interface GemmAttentionBackwardArgs {
  gemm: GemmFn;
  /** dP into the WASM block; the dropout masks and the softmax backward in SIMD. */
  scratch?: AttentionScratch;
  dqkv: Float32Array;
  dout: Float32Array;
  qkv: Float32Array;
  att: Float32Array;
  B: number;
  T: number;
  C: number;
  NH: number;
  /** The forward's dropout constants, or undefined for none. */
  drop?: DropoutParams;
  /** Only the heads bh = b·NH + h in [lo, hi); default all B·NH. */
  heads?: [number, number];
}

/**
 * attentionBackward (see `CpuReferenceBackend.attentionBackward`; dqkv assigned) with dP = dOut·Vᵀ, dV = P̃ᵀ·dOut,
 * dQ = scale·dS·K and dK = scale·dSᵀ·Q through GEMM; dS = P ⊙ (dP̃ − rowsum(P ⊙ dP̃)) in TypeScript.
 */
export function gemmAttentionBackward(args: GemmAttentionBackwardArgs): void {
  const { gemm, dqkv, dout, qkv, att, B, T, C, NH, drop } = args;
  const heads = args.heads ?? [0, B * NH];
  const HS = C / NH, C3 = 3 * C, scale = 1 / Math.sqrt(HS);
  const simd = args.scratch;
  const dS = simd ? simd.d : new Float32Array(T * T); // dP, then dS in place
  const g = new Float64Array(T); // one row of dP through the dropout
  // the dropped probabilities P̃ (for dV): in the WASM block with scratch
  const pd = drop ? (simd ? simd.pd : new Float32Array(T * T)) : undefined;
  for (let bh = heads[0]; bh < heads[1]; bh++) {
    const b = Math.floor(bh / NH), h = bh % NH;
    const base = (b * NH + h) * T * T;
    const qo = b * T * C3 + h * HS, ko = qo + C, vo = qo + 2 * C, oo = b * T * C + h * HS;
    // dP = dOut·Vᵀ (causal blocks)
    for (let t0 = 0; t0 < T; t0 += BLOCK) {
      const t1 = Math.min(T, t0 + BLOCK);
      gemm({
        transA: false,
        transB: true,
        M: t1 - t0,
        N: t1,
        K: HS,
        alpha: 1,
        a: dout,
        aOffset: oo + t0 * C,
        lda: C,
        b: qkv,
        bOffset: vo,
        ldb: C3,
        beta: 0,
        c: dS,
        cOffset: t0 * T,
        ldc: T,
      });
    }
    // dS[t,s] = P·(dP·m − Σ_r P·dP·m) for s ≤ t (m the dropout factor), 0 elsewhere
    if (simd) {
      simd.p.set(att.subarray(base, base + T * T));
      if (drop) {
        simd.dropP(drop, base); // P̃ for dV
        simd.dropD(drop, base); // dP·M: through the dropout, into the softmax
      }
      simd.softmaxBackward();
    }
    for (let t = 0; t < T && !simd; t++) {
      const row = t * T, arow = base + t * T;
      let pdp = 0;
      for (let s = 0; s <= t; s++) {
        const p = att[arow + s]!;
        if (p === 0) {
          g[s] = 0; // masked key (or underflow): contributes nothing
          if (pd) pd[row + s] = 0;
          continue;
        }
        let v = dS[row + s]!;
        if (drop) {
          const m = dropoutHash(drop.key, arow + s) >= drop.threshold ? drop.scale : 0;
          pd![row + s] = Math.fround(p * m);
          v *= m;
        }
        g[s] = v;
        pdp += p * v;
      }
      for (let s = 0; s <= t; s++) {
        const p = att[arow + s]!;
        dS[row + s] = p === 0 ? 0 : p * (g[s]! - pdp);
      }
      dS.fill(0, row + t + 1, row + T);
      if (pd) pd.fill(0, row + t + 1, row + T);
    }
    // dV = P̃ᵀ·dOut, dK = scale·dSᵀ·Q: output rows s in [s0,s1) sum over queries t ≥ s0
    for (let s0 = 0; s0 < T; s0 += BLOCK) {
      const s1 = Math.min(T, s0 + BLOCK);
      gemm({
        transA: true,
        transB: false,
        M: s1 - s0,
        N: HS,
        K: T - s0,
        alpha: 1,
        a: pd ?? att,
        aOffset: (pd ? 0 : base) + s0 * T + s0,
        lda: T,
        b: dout,
        bOffset: oo + s0 * C,
        ldb: C,
        beta: 0,
        c: dqkv,
        cOffset: vo + s0 * C3,
        ldc: C3,
      });
      gemm({
        transA: true,
        transB: false,
        M: s1 - s0,
        N: HS,
        K: T - s0,
        alpha: scale,
        a: dS,
        aOffset: s0 * T + s0,
        lda: T,
        b: qkv,
        bOffset: qo + s0 * C3,
        ldb: C3,
        beta: 0,
        c: dqkv,
        cOffset: ko + s0 * C3,
        ldc: C3,
      });
    }
    // dQ = scale·dS·K (causal blocks)
    for (let t0 = 0; t0 < T; t0 += BLOCK) {
      const t1 = Math.min(T, t0 + BLOCK);
      gemm({
        transA: false,
        transB: false,
        M: t1 - t0,
        N: HS,
        K: t1,
        alpha: scale,
        a: dS,
        aOffset: t0 * T,
        lda: T,
        b: qkv,
        bOffset: ko,
        ldb: C3,
        beta: 0,
        c: dqkv,
        cOffset: qo + t0 * C3,
        ldc: C3,
      });
    }
  }
}

/** The arrays and shapes of {@link cachedAttentionBlas}, already checked by the caller. */
export interface CachedAttentionArgs {
  gemm: GemmFn;
  /**
   * The SIMD softmax's blocks for n keys (wasm_math.ts), used for the rows whose visible keys are a prefix
   * (no mask, or ones then zeros); without it, or under another mask, the softmax is the TypeScript loop.
   */
  scratch?: (n: number) => AttentionScratch;
  out: Float32Array;
  qkv: Float32Array;
  kc: Float32Array;
  vc: Float32Array;
  mask?: Int32Array;
  B: number;
  Tn: number;
  pos0: number;
  Tmax: number;
  C: number;
  NH: number;
}

/**
 * attentionCached (see `CpuReferenceBackend.attentionCached`) with the products through GEMM, per batch row b and head
 * h: the new keys and values appended to the cache, S = scale·Q·Kᵀ over the n = pos0 + Tn keys so far (row tn
 * sees keys s ≤ pos0 + tn with mask[b,s] = 1), the softmax in TypeScript (float64, each probability rounded to
 * float32 as the loops do), then out = P·V. The KV-cache inference path of classification and generation.
 */
export function cachedAttentionBlas(args: CachedAttentionArgs): void {
  const { gemm, out, qkv, kc, vc, mask, B, Tn, pos0, Tmax, C, NH } = args;
  const HS = C / NH, C3 = 3 * C, scale = 1 / Math.sqrt(HS), n = pos0 + Tn;
  const e = new Float64Array(n);
  let plain: Float32Array | undefined;
  for (let b = 0; b < B; b++) {
    // keys 0 … len−1 visible among the n so far (a prefix), or −1: the per-key mask test
    const len = mask ? prefixLength(mask, b * Tmax, n) : n;
    const simd = len >= 0 ? args.scratch?.(n) : undefined;
    const scores = simd ? simd.p : (plain ??= new Float32Array(Tn * n));
    for (let h = 0; h < NH; h++) {
      const head = (b * NH + h) * Tmax * HS, q0 = b * Tn * C3 + h * HS;
      // append: cache rows pos0 … n−1 of this head
      for (let tn = 0; tn < Tn; tn++) {
        const src = q0 + tn * C3, dst = head + (pos0 + tn) * HS;
        // a loop: for a head's few floats, cheaper than the two subarrays a .set() needs
        for (let i = 0; i < HS; i++) {
          kc[dst + i] = qkv[src + C + i]!;
          vc[dst + i] = qkv[src + 2 * C + i]!;
        }
      }
      // S = scale·Q·Kᵀ: [Tn, n]
      gemm({
        transA: false,
        transB: true,
        M: Tn,
        N: n,
        K: HS,
        alpha: scale,
        a: qkv,
        aOffset: q0,
        lda: C3,
        b: kc,
        bOffset: head,
        ldb: HS,
        beta: 0,
        c: scores,
        cOffset: 0,
        ldc: n,
      });
      // softmax of each row over its visible keys; 0 elsewhere (a row with none stays all zero)
      if (simd) simd.softmaxRows(Tn, n, pos0, len);
      for (let tn = 0; tn < Tn && !simd; tn++) {
        const row = tn * n, p = pos0 + tn;
        let max = -Infinity;
        for (let s = 0; s <= p; s++) {
          if (mask && mask[b * Tmax + s] === 0) continue;
          if (scores[row + s]! > max) max = scores[row + s]!;
        }
        let sum = 0;
        for (let s = 0; s <= p; s++) {
          const v = mask && mask[b * Tmax + s] === 0 ? 0 : Math.exp(scores[row + s]! - max);
          e[s] = v;
          sum += v;
        }
        const inv = sum > 0 ? 1 / sum : 0;
        for (let s = 0; s <= p; s++) scores[row + s] = e[s]! * inv;
        scores.fill(0, row + p + 1, row + n);
      }
      // out[b, tn, h] = P·V
      gemm({
        transA: false,
        transB: false,
        M: Tn,
        N: HS,
        K: n,
        alpha: 1,
        a: scores,
        aOffset: 0,
        lda: n,
        b: vc,
        bOffset: head,
        ldb: HS,
        beta: 0,
        c: out,
        cOffset: b * Tn * C + h * HS,
        ldc: C,
      });
    }
  }
}

/** n when mask[o … o+n) is all ones, k when it is k ones then zeros, else −1. */
function prefixLength(mask: Int32Array, o: number, n: number): number {
  let k = 0;
  while (k < n && mask[o + k] !== 0) k++;
  for (let s = k; s < n; s++) if (mask[o + s] !== 0) return -1;
  return k;
}
