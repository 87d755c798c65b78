/**
 * One part of a CPU op that the main thread and the helper threads (threads.ts, worker.ts) share:
 * the same SIMD and BLAS code the single-threaded fast path runs, on a slice of the work — a range of
 * elements (GELU, dropout, AdamW), of rows (layernorm), of heads (attention) or of the product's rows or
 * columns (matmul, where the matmul does not thread itself). Every part writes only its own slice of the
 * outputs; layernorm's weight and bias gradients, which every row adds to, go to a part's own accumulators
 * that the caller sums.
 * @module
 */

import type { DropoutParams } from "../dropout_hash.ts";
import { gemmAttentionBackward, gemmAttentionForward, type GemmFn } from "./attention_blas.ts";
import type { FastMath } from "./wasm_math.ts";
import { matmulViaGemm } from "./matmul.ts";

/** The ops that can be split. */
export type PartOp =
  | "gelu"
  | "geluBwd"
  | "dropout"
  | "layernorm"
  | "layernormBwd"
  | "adamw"
  | "attention"
  | "attentionBwd"
  | "matmul";

/** One part: its arrays (slices of the op's) and numbers. */
export interface PartJob {
  op: PartOp;
  arrays: Record<string, Float32Array | Int32Array | undefined>;
  nums: Record<string, number>;
}

/** What a thread runs parts with: its SIMD module and its BLAS. */
export interface PartContext {
  math: FastMath;
  gemm?: GemmFn;
}

/** The dropout constants a part carries in `nums` (p, key, threshold, scale), or undefined for p = 0. */
export function dropoutNums(d: DropoutParams | undefined): Record<string, number> {
  return d ? { p: d.p, key: d.key, threshold: d.threshold, scale: d.scale } : { p: 0 };
}

function dropoutOf(n: Record<string, number>): DropoutParams | undefined {
  return n.p! > 0 ? { p: n.p!, key: n.key!, threshold: n.threshold!, scale: n.scale! } : undefined;
}

/** Run one part on this thread. */
export function runPart(job: PartJob, ctx: PartContext): void {
  const a = job.arrays as Record<string, Float32Array>, n = job.nums;
  const { math } = ctx;
  switch (job.op) {
    case "gelu":
      return math.forward(a.out!, a.inp!, a.out!.length, a.deriv);
    case "geluBwd":
      return math.backward(a.dinp!, a.inp!, a.dout!, a.dinp!.length, n.acc === 1, a.deriv);
    case "dropout": {
      // p = 0 too (threshold 0, scale 1: the identity), unlike attention's optional dropout
      const d = { p: n.p!, key: n.key!, threshold: n.threshold!, scale: n.scale! };
      return math.dropout(a.out!, a.inp!, a.out!.length, d, n.acc === 1, n.offset!);
    }
    case "layernorm": {
      const { out, inp, weight, bias, mean, rstd } = a;
      math.layernormForward({ out: out!, inp: inp!, weight: weight!, bias: bias!, mean, rstd }, n.N!, n.C!, n.eps!);
      return;
    }
    case "layernormBwd": {
      const { dinp, dout, inp, weight, mean, rstd, dweight, dbias } = a;
      const arrays = { dinp: dinp!, dout: dout!, inp: inp!, weight: weight!, mean: mean!, rstd: rstd! };
      math.layernormBackward({ ...arrays, dweight: dweight!, dbias: dbias! }, n.N!, n.C!, n.acc === 1);
      return;
    }
    case "adamw": {
      const c = { clip: n.clip!, decay: n.decay!, w1: n.w1!, beta2: n.beta2!, stepSize: n.stepSize! };
      return math.adamw(a.param!, a.grad!, a.m!, a.v!, a.param!.length, { ...c, bc2Sqrt: n.bc2Sqrt!, eps: n.eps! });
    }
    case "matmul": {
      if (!ctx.gemm) throw new Error("matmul part: no GEMM on this thread");
      const { out, a: A, b: B, bias } = a;
      const { M, N, K, transA, transB, accumulate, cols, lo, hi } = n as Record<string, number>;
      const args = { out: out!, a: A!, b: B!, bias, M: M!, N: N!, K: K!, transA: transA === 1, transB: transB === 1 };
      return matmulViaGemm(ctx.gemm, { ...args, accumulate: accumulate === 1 }, { cols: cols === 1, lo: lo!, hi: hi! });
    }
    case "attention":
    case "attentionBwd": {
      if (!ctx.gemm) throw new Error(`${job.op} part: no BLAS on this thread`);
      const { B, T, C, NH, lo, hi } = n as Record<string, number>;
      const heads: [number, number] = [lo!, hi!];
      const scratch = math.attentionScratch(T!), drop = dropoutOf(n);
      const common = { gemm: ctx.gemm, scratch, B: B!, T: T!, C: C!, NH: NH!, heads, drop };
      const { qkv, att } = a as Record<string, Float32Array>;
      if (job.op === "attention") {
        const mask = job.arrays.mask as Int32Array | undefined;
        const expShift = T! <= 16384 ? math.expShift : undefined;
        gemmAttentionForward({ ...common, expShift, out: a.out!, att: att!, qkv: qkv!, mask });
      } else {
        gemmAttentionBackward({ ...common, dqkv: a.dqkv!, dout: a.dout!, qkv: qkv!, att: att! });
      }
      return;
    }
  }
}
