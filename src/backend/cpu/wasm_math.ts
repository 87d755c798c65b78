/**
 * Elementwise maths in WebAssembly SIMD for the CPU backend's fast path ({@link wasmSimdMath}): GELU,
 * exp, the attention softmax and its backward, dropout, layernorm and AdamW over float32 arrays. The
 * kernels, their maths and their accuracy are in wasm_math_kernels.ts; this file runs them.
 *
 * Data is streamed through WASM memory in chunks of 16 K floats (64 KiB per array, so a chunk stays in
 * cache between the copy in, the kernel and the copy out); the softmax works on T×T blocks that BLAS writes
 * into WASM memory directly (`attentionScratch`).
 * @module
 */

import type { DropoutParams } from "../dropout_hash.ts";
import { moduleBytes, UNROLL } from "./wasm_math_kernels.ts";
import type { AdamwConstants } from "./reference.ts";

/** Two T×T float32 blocks in WASM memory for one attention head (BLAS writes into them through FFI). */
export interface AttentionScratch {
  /** The scores, then the probabilities (forward); the probabilities (backward). */
  p: Float32Array;
  /** dP, then dS (backward). */
  d: Float32Array;
  /** p ← the causal softmax of p: row t over its first min(t + 1, len) entries, zeros after. */
  softmax(len: number): void;
  /**
   * The same on the first `rows` rows of p taken `stride` floats apart (rows·stride ≤ T²): row t over its first
   * min(t + 1 + off, len) entries (the KV-cache path: `off` positions before the new rows).
   */
  softmaxRows(rows: number, stride: number, off: number, len: number): void;
  /** d ← p·(d − Σ_{s≤t} p·d) in row t over s ≤ t, zeros after. */
  softmaxBackward(): void;
  /** The dropped probabilities P̃ (a third T×T block, written by `dropP`). */
  pd: Float32Array;
  /** pd ← keep ? p·scale : 0, the head's element k being att's flat index base + k (dropout_hash.ts). */
  dropP(d: DropoutParams, base: number): void;
  /** d ← keep ? d·scale : 0 in place (dP through the dropout, before `softmaxBackward`). */
  dropD(d: DropoutParams, base: number): void;
}

/** GELU forward and backward, exp, the attention softmax and AdamW over float32 arrays, in SIMD. */
export interface FastMath {
  /** out = gelu(inp); with `deriv`, also deriv = gelu'(inp). */
  forward(out: Float32Array, inp: Float32Array, n: number, deriv?: Float32Array): void;
  /** dinp (=|+=) gelu'(inp)·dout, or deriv·dout with the forward's `deriv`. */
  backward(
    dinp: Float32Array,
    inp: Float32Array,
    dout: Float32Array,
    n: number,
    accumulate: boolean,
    deriv?: Float32Array,
  ): void;
  /** out[0 … n) = exp(inp[off + i] − shift), for n ≤ 16384. */
  expShift(out: Float32Array, inp: Float32Array, off: number, n: number, shift: number): void;
  /**
   * The scratch blocks for T×T heads (WASM memory grows to hold them); the arrays stay valid until the next
   * call of this method with a larger T.
   */
  attentionScratch(T: number): AttentionScratch;
  /**
   * Layernorm over N rows of C (see wasm_math_kernels.ts, layernormForwardBody); false (nothing done) unless C is a multiple of 4
   * and at most 4096, for the caller's loops.
   */
  layernormForward(a: LayernormForwardArrays, N: number, C: number, eps: number): boolean;
  /** Layernorm's backward (see layernormBackwardBody); false (nothing done) under the same conditions. */
  layernormBackward(a: LayernormBackwardArrays, N: number, C: number, accumulate: boolean): boolean;
  /**
   * out[i] (=|+=) keep(offset + i) ? inp[i]·scale : 0 over n elements (the dropout of dropout_hash.ts; the
   * arrays are the slice of the tensor from flat index `offset`, default 0): the float32 product and sum, as
   * the loops store them.
   */
  dropout(
    out: Float32Array,
    inp: Float32Array,
    n: number,
    d: DropoutParams,
    accumulate: boolean,
    offset?: number,
  ): void;
  /** One AdamW step in float32 (see wasm_math_kernels.ts, adamwBody; the caller checks w1 = 1−β1 < ½). */
  adamw(
    param: Float32Array,
    grad: Float32Array,
    m: Float32Array,
    v: Float32Array,
    n: number,
    c: AdamwConstants,
  ): void;
}

/** The arrays of a layernorm forward: `mean` and `rstd` [N] are written when given. */
export interface LayernormForwardArrays {
  out: Float32Array;
  inp: Float32Array;
  weight: Float32Array;
  bias: Float32Array;
  mean?: Float32Array;
  rstd?: Float32Array;
}

/** The arrays of a layernorm backward (`dweight` and `dbias` are accumulated into). */
export interface LayernormBackwardArrays {
  dinp: Float32Array;
  dout: Float32Array;
  inp: Float32Array;
  weight: Float32Array;
  mean: Float32Array;
  rstd: Float32Array;
  dweight: Float32Array;
  dbias: Float32Array;
}

/**
 * Whether the SIMD layernorm takes rows of C channels: whole vec4s, and the backward's weight, its two
 * accumulators and a chunk's mean and rstd fit one chunk (3C + 2·⌊CHUNK/C⌋ ≤ CHUNK).
 */
export function simdLayernormFits(C: number): boolean {
  return C % 4 === 0 && C <= 4096;
}

/** Floats per chunk (per array). */
const CHUNK = 16384;

/** The SIMD maths, or the reason it cannot run (no WebAssembly, or no SIMD support). */
export function wasmSimdMath(): FastMath | { reason: string } {
  const mem = new WebAssembly.Memory({ initial: (4 * CHUNK * 4) / 65536 });
  let fwd: (inp: number, out: number, n4: number) => void;
  let bwd: (inp: number, dout: number, dinp: number, n4: number, acc: number) => void;
  let expFn: (inp: number, out: number, n4: number, shift: number) => void;
  let adamwFn: (p: number, g: number, m: number, v: number, n4: number, ...c: number[]) => void;
  let softmaxFn: (p: number, rows: number, stride: number, off: number, len: number) => void;
  let softmaxBwdFn: (p: number, d: number, T: number) => void;
  let lnFwd: (...args: number[]) => void, lnBwd: (...args: number[]) => void, dropFn: (...args: number[]) => void;
  let fwdD: (...args: number[]) => void, mulFn: (...args: number[]) => void;
  try {
    const inst = new WebAssembly.Instance(new WebAssembly.Module(moduleBytes()), { env: { mem } });
    fwd = inst.exports.fwd as typeof fwd;
    bwd = inst.exports.bwd as typeof bwd;
    expFn = inst.exports.exp as typeof expFn;
    adamwFn = inst.exports.adamw as typeof adamwFn;
    softmaxFn = inst.exports.softmax as typeof softmaxFn;
    softmaxBwdFn = inst.exports.softmaxBwd as typeof softmaxBwdFn;
    lnFwd = inst.exports.lnFwd as typeof lnFwd;
    lnBwd = inst.exports.lnBwd as typeof lnBwd;
    dropFn = inst.exports.drop as typeof dropFn;
    fwdD = inst.exports.fwdD as typeof fwdD;
    mulFn = inst.exports.mul as typeof mulFn;
  } catch (e) {
    return { reason: `WebAssembly SIMD is not available: ${e instanceof Error ? e.message : String(e)}` };
  }
  let f = new Float32Array(mem.buffer);
  const A = 0, B = CHUNK, D = 2 * CHUNK, E = 3 * CHUNK; // float offsets of the four arrays
  const HEAD = 4 * CHUNK; // float offset of the attention blocks
  let scratch: { T: number; s: AttentionScratch } | undefined;
  return {
    attentionScratch(T) {
      if (scratch?.T === T) return scratch.s;
      // three blocks p, d, pd, `block` floats apart: room for the last partial vec4 of `drop`
      const block = 4 * Math.ceil(T * T / 4) + 4;
      const bytes = 4 * (HEAD + 3 * block);
      if (bytes > mem.buffer.byteLength) mem.grow(Math.ceil((bytes - mem.buffer.byteLength) / 65536));
      if (f.buffer !== mem.buffer) f = new Float32Array(mem.buffer); // growing detached the old views
      const pOff = HEAD, dOff = HEAD + block, qOff = HEAD + 2 * block, n4 = Math.ceil(T * T / 4);
      const drop = (src: number, dst: number, d: DropoutParams, base: number) =>
        dropFn(4 * src, 4 * dst, n4, base, d.key | 0, d.threshold | 0, d.scale, 0);
      const s: AttentionScratch = {
        p: f.subarray(pOff, pOff + T * T),
        d: f.subarray(dOff, dOff + T * T),
        pd: f.subarray(qOff, qOff + T * T),
        softmax: (len) => softmaxFn(4 * pOff, T, T, 0, Math.max(0, Math.min(len, T))),
        softmaxRows: (rows, stride, off, len) => {
          if (rows * stride > T * T) throw new Error(`softmaxRows: ${rows}×${stride} exceeds the ${T}×${T} block`);
          softmaxFn(4 * pOff, rows, stride, off, Math.max(0, Math.min(len, stride)));
        },
        softmaxBackward: () => softmaxBwdFn(4 * pOff, 4 * dOff, T),
        dropP: (d, base) => drop(pOff, qOff, d, base),
        dropD: (d, base) => drop(dOff, dOff, d, base),
      };
      scratch = { T, s };
      return s;
    },
    layernormForward(a, N, C, eps) {
      if (!simdLayernormFits(C)) return false;
      const rows = Math.floor(CHUNK / C); // rows per chunk; weight and bias at D, mean and rstd at E
      f.set(a.weight.subarray(0, C), D);
      f.set(a.bias.subarray(0, C), D + C);
      for (let r0 = 0; r0 < N; r0 += rows) {
        const m = Math.min(rows, N - r0), o = r0 * C, len = m * C;
        f.set(a.inp.subarray(o, o + len), A);
        lnFwd(4 * A, 4 * B, 4 * D, 4 * (D + C), 4 * E, 4 * (E + rows), m, C, eps);
        a.out.set(f.subarray(B, B + len), o);
        a.mean?.set(f.subarray(E, E + m), r0);
        a.rstd?.set(f.subarray(E + rows, E + rows + m), r0);
      }
      return true;
    },
    layernormBackward(a, N, C, accumulate) {
      if (!simdLayernormFits(C)) return false;
      // at E: weight, dweight, dbias (C each), then a chunk's mean and rstd (3C + 2·rows ≤ CHUNK)
      const rows = Math.floor(CHUNK / C), W = E, DW = E + C, DB = E + 2 * C, MEAN = E + 3 * C, RSTD = MEAN + rows;
      f.set(a.weight.subarray(0, C), W);
      f.set(a.dweight.subarray(0, C), DW);
      f.set(a.dbias.subarray(0, C), DB);
      for (let r0 = 0; r0 < N; r0 += rows) {
        const m = Math.min(rows, N - r0), o = r0 * C, len = m * C;
        f.set(a.inp.subarray(o, o + len), A);
        f.set(a.dout.subarray(o, o + len), B);
        if (accumulate) f.set(a.dinp.subarray(o, o + len), D);
        f.set(a.mean.subarray(r0, r0 + m), MEAN);
        f.set(a.rstd.subarray(r0, r0 + m), RSTD);
        lnBwd(4 * A, 4 * B, 4 * D, 4 * W, 4 * MEAN, 4 * RSTD, 4 * DW, 4 * DB, m, C, accumulate ? 1 : 0);
        a.dinp.set(f.subarray(D, D + len), o);
      }
      a.dweight.set(f.subarray(DW, DW + C));
      a.dbias.set(f.subarray(DB, DB + C));
      return true;
    },
    dropout(out, inp, n, d, accumulate, offset = 0) {
      for (let s = 0; s < n; s += CHUNK) {
        const m = Math.min(CHUNK, n - s);
        f.set(inp.subarray(s, s + m), A);
        if (accumulate) f.set(out.subarray(s, s + m), B);
        // a partial last vec4 computes stale lanes: never copied out
        dropFn(4 * A, 4 * B, Math.ceil(m / 4), offset + s, d.key | 0, d.threshold | 0, d.scale, accumulate ? 1 : 0);
        out.set(f.subarray(B, B + m), s);
      }
    },
    forward(out, inp, n, deriv) {
      for (let s = 0; s < n; s += CHUNK) {
        const m = Math.min(CHUNK, n - s);
        f.set(inp.subarray(s, s + m), A);
        // a partial last vec4 (group) reads stale lanes: never copied out
        if (deriv) fwdD(4 * A, 4 * B, 4 * D, Math.ceil(m / 4));
        else fwd(4 * A, 4 * B, Math.ceil(m / (4 * UNROLL)));
        out.set(f.subarray(B, B + m), s);
        deriv?.set(f.subarray(D, D + m), s);
      }
    },
    backward(dinp, inp, dout, n, accumulate, deriv) {
      for (let s = 0; s < n; s += CHUNK) {
        const m = Math.min(CHUNK, n - s);
        f.set((deriv ?? inp).subarray(s, s + m), A);
        f.set(dout.subarray(s, s + m), B);
        if (accumulate) f.set(dinp.subarray(s, s + m), D);
        if (deriv) mulFn(4 * A, 4 * B, 4 * D, Math.ceil(m / 4), accumulate ? 1 : 0);
        else bwd(4 * A, 4 * B, 4 * D, Math.ceil(m / (4 * UNROLL)), accumulate ? 1 : 0);
        dinp.set(f.subarray(D, D + m), s);
      }
    },
    expShift(out, inp, off, n, shift) {
      if (n > CHUNK) throw new Error(`expShift: ${n} elements exceed one chunk (${CHUNK})`);
      f.set(inp.subarray(off, off + n), A);
      expFn(4 * A, 4 * B, Math.ceil(n / 4), shift);
      out.set(f.subarray(B, B + n));
    },
    adamw(param, grad, m, v, n, c) {
      for (let s = 0; s < n; s += CHUNK) {
        const k = Math.min(CHUNK, n - s);
        f.set(param.subarray(s, s + k), A);
        f.set(grad.subarray(s, s + k), B);
        f.set(m.subarray(s, s + k), D);
        f.set(v.subarray(s, s + k), E);
        // a partial last vec4 computes stale lanes (maybe NaN): never copied out
        adamwFn(
          4 * A,
          4 * B,
          4 * D,
          4 * E,
          Math.ceil(k / 4),
          c.clip,
          c.decay,
          c.w1,
          c.beta2,
          1 - c.beta2,
          c.stepSize,
          c.bc2Sqrt,
          c.eps,
        );
        param.set(f.subarray(A, A + k), s);
        m.set(f.subarray(D, D + k), s);
        v.set(f.subarray(E, E + k), s);
      }
    },
  };
}
