/**
 * Attention on WebGPU, three ways for training (`AttentionKernel`: "matmul", "rows", "flash"), plus the
 * KV-cache attention of inference. A call whose T×T probabilities would not fit one storage binding runs the
 * flash kernels whatever the choice, so that long sequences run instead of failing.
 * @module
 */

import type { AttentionDropout, OpArgs } from "../backend.ts";
import { dropoutParams } from "../dropout_hash.ts";
import type { GpuBuf } from "./buffers.ts";
import { K } from "./kernels.ts";
import type { AttentionKernel } from "./options.ts";
import type { GpuRuntime } from "./runtime.ts";

/**
 * One operand of matmul_batched.wgsl for every (batch row b, head h): element (i, j) of the matrix at
 * `at[0] + b·at[1] + h·at[2] + i·ld + j` (element (j, i) with `trans`), e.g. head h's keys in qkv [B,T,3C]:
 * ld 3C, at [C, T·3C, HS].
 */
interface HeadView {
  buf: GpuBuf;
  ld: number;
  at: readonly [number, number, number];
  trans?: boolean;
}

/** Head h's HS columns from column `col` of a [B,T,ld] buffer (qkv: ld 3C, keys at col C), for every (b, h). */
function headCols(buf: GpuBuf, ld: number, col: number, T: number, HS: number, trans = false): HeadView {
  return { buf, ld, at: [col, T * ld, HS], trans };
}

/** The T×T matrix of (b, h) in a [B,NH,T,T] buffer (the probabilities), for every (b, h). */
function headSquares(buf: GpuBuf, T: number, NH: number, trans = false): HeadView {
  return { buf, ld: T, at: [0, NH * T * T, T * T], trans };
}

/** 1/√HS in float32, as the attention kernels compute it. */
function attentionScale(HS: number): number {
  return Math.fround(1 / Math.fround(Math.sqrt(HS)));
}

/** The head size the flash kernels hold in registers at most (MAX_HS in the WGSL). */
const FLASH_MAX_HS = 128;

/** The attention kernels' dropout uniforms by name and their DROPOUT override (1: on). */
interface Dropout {
  params: { drop_key: number; drop_threshold: number; drop_scale: number };
  on: number;
}

/** No dropout: the uniforms 0, the override off. */
const NO_DROPOUT: Dropout = { params: { drop_key: 0, drop_threshold: 0, drop_scale: 0 }, on: 0 };

/**
 * The attention kernels' dropout uniforms (drop_key, drop_threshold, drop_scale) and their DROPOUT
 * override: off (and the uniforms 0) when there is no dropout or p = 0, so those calls run the undropped
 * pipeline unchanged.
 */
function attentionDropout(dropout: AttentionDropout | undefined, op: string): Dropout {
  if (!dropout) return NO_DROPOUT;
  const d = dropoutParams(dropout.p, dropout.seed, `${op} dropout`);
  if (d.p === 0) return NO_DROPOUT;
  return { params: { drop_key: d.key, drop_threshold: d.threshold, drop_scale: d.scale }, on: 1 };
}

/** The attention ops of one backend, running the training kernels `kernel` names. */
export class Attention {
  readonly #rt: GpuRuntime;
  constructor(rt: GpuRuntime, readonly kernel: AttentionKernel) {
    this.#rt = rt;
  }

  attentionSavedLength(B: number, T: number, NH: number): number {
    return this.#flashFor(B, T, NH) ? 2 * B * NH * T : B * NH * T * T;
  }

  /**
   * Whether a training attention call of this shape runs the flash kernels: always with attention
   * "flash"; with "matmul" or "rows" when its T×T probabilities (B·NH·T² floats) would not fit one storage binding
   * (lavapipe's 128 MiB at B = 4, T = 1024), so that long sequences run instead of failing.
   */
  #flashFor(B: number, T: number, NH: number): boolean {
    return this.kernel === "flash" || B * NH * T * T * 4 > this.#rt.pool.maxBindingBytes;
  }

  attentionForward(args: OpArgs<"attentionForward">): void {
    const op = "attentionForward";
    const { B, T, C, NH } = args;
    const drop = attentionDropout(args.dropout, op);
    const out = this.#rt.buf(args.out, op), att = this.#rt.buf(args.att, op), qkv = this.#rt.buf(args.qkv, op);
    const mask = args.mask ? this.#rt.buf(args.mask, op, "i32") : null;
    const flash = this.#flashAttention(B, T, C, NH, op);
    if (!flash && this.kernel === "matmul") {
      // S = Q·Kᵀ·scale into att; P = softmax(S) in place (what the backward reads); out = P̃·V
      const HS = C / NH, heads = { B, NH, M: T };
      const Q = headCols(qkv, 3 * C, 0, T, HS), Kt = headCols(qkv, 3 * C, C, T, HS, true);
      const V = headCols(qkv, 3 * C, 2 * C, T, HS), P = headSquares(att, T, NH);
      this.#batchedMatmul({ ...heads, N: T, K: HS, alpha: attentionScale(HS), causal: 1, note: "Q·Kᵀ" }, Q, Kt, P);
      this.#rt.dispatch(K.attnSoftmaxFwd, {
        params: { B, T, NH, ...NO_DROPOUT.params },
        bufs: { mask, att, grad: null },
        groups: B * NH * T,
        constants: { HAS_MASK: +(mask !== null) },
      });
      const O = headCols(out, C, 0, T, HS);
      this.#batchedMatmul({ ...heads, N: HS, K: T, alpha: 1, causal: 2, drop, note: "P̃·V" }, P, V, O);
      return;
    }
    this.#rt.dispatch(flash ? K.attnFlashFwd : K.attnFwd, {
      params: { B, T, C, NH, ...drop.params },
      bufs: flash ? { qkv, mask, stats: att, out } : { qkv, mask, att, out },
      // flash: a workgroup per block of 64 queries of one (b, h); rows: a workgroup per query row
      groups: flash ? B * NH * Math.ceil(T / 64) : B * NH * T,
      constants: { HAS_MASK: +(mask !== null), DROPOUT: drop.on },
    });
  }

  /** Whether the flash kernels run ({@link #flashFor}), after checking they can (head size ≤ their registers). */
  #flashAttention(B: number, T: number, C: number, NH: number, op: string): boolean {
    if (!this.#flashFor(B, T, NH)) return false;
    if (C / NH > FLASH_MAX_HS) {
      throw new Error(
        this.kernel === "flash"
          ? `Cannot run ${op} (flash): head size ${C / NH} exceeds ${FLASH_MAX_HS}; use attention "matmul"`
          : `Cannot run ${op}: the attention probabilities (B·NH·T² = ${B * NH * T * T} floats) exceed the device's ` +
            `largest binding, and the flash kernels that avoid them take head sizes up to ${FLASH_MAX_HS}, not ${
              C / NH
            }`,
      );
    }
    return true;
  }

  attentionBackward(args: OpArgs<"attentionBackward">): void {
    const op = "attentionBackward";
    const { B, T, C, NH } = args;
    const drop = attentionDropout(args.dropout, op);
    const dqkv = this.#rt.buf(args.dqkv, op), dout = this.#rt.buf(args.dout, op);
    const qkv = this.#rt.buf(args.qkv, op), att = this.#rt.buf(args.att, op);
    if (this.#flashAttention(B, T, C, NH, op)) {
      // the forward's mask is needed again: the probabilities are recomputed
      const mask = args.mask ? this.#rt.buf(args.mask, op, "i32") : null;
      const bufs = { dout, qkv, mask, stats: att, dqkv };
      const params = { B, T, C, NH, ...drop.params };
      const constants = { HAS_MASK: +(mask !== null), DROPOUT: drop.on };
      const groups = Math.ceil((B * NH * T) / 64); // a row per invocation
      this.#rt.dispatch(K.attnFlashDq, { params, bufs, groups, constants }); // D_t first: dkv reads it
      this.#rt.dispatch(K.attnFlashDkv, { params, bufs, groups, constants });
      return;
    }
    if (this.kernel === "matmul") {
      // dP̃ = dout·Vᵀ into grad; dS = P·(dP − D) in place; dQ = dS·K·scale, dK = dSᵀ·Q·scale, dV = P̃ᵀ·dout
      const HS = C / NH, C3 = 3 * C, scale = attentionScale(HS);
      const grad = this.#rt.acquire(B * NH * T * T, "f32", "attention dS");
      const sq = { B, NH, M: T, N: T, K: HS }, toHead = { B, NH, M: T, N: HS, K: T };
      const Q = headCols(qkv, C3, 0, T, HS), Kh = headCols(qkv, C3, C, T, HS);
      const Vt = headCols(qkv, C3, 2 * C, T, HS, true), dO = headCols(dout, C, 0, T, HS);
      const dQ = headCols(dqkv, C3, 0, T, HS), dK = headCols(dqkv, C3, C, T, HS), dV = headCols(dqkv, C3, 2 * C, T, HS);
      this.#batchedMatmul({ ...sq, alpha: 1, causal: 1, note: "dout·Vᵀ" }, dO, Vt, headSquares(grad, T, NH));
      this.#rt.dispatch(K.attnSoftmaxBwd, {
        params: { B, T, NH, ...drop.params },
        bufs: { mask: null, att, grad },
        groups: B * NH * T,
        constants: { DROPOUT: drop.on },
      });
      const dS = headSquares(grad, T, NH), dSt = headSquares(grad, T, NH, true), Pt = headSquares(att, T, NH, true);
      this.#batchedMatmul({ ...toHead, alpha: scale, causal: 2, note: "dS·K" }, dS, Kh, dQ);
      this.#batchedMatmul({ ...toHead, alpha: scale, causal: 3, note: "dSᵀ·Q" }, dSt, Q, dK);
      this.#batchedMatmul({ ...toHead, alpha: 1, causal: 3, drop, note: "P̃ᵀ·dout" }, Pt, dO, dV);
      this.#rt.release(grad);
      return;
    }
    const dpre = this.#rt.acquire(B * NH * T * T, "f32", "attention dpreatt");
    const bufs = { dout, qkv, att, dqkv, dpre };
    const params = { B, T, C, NH, ...drop.params };
    const constants = { DROPOUT: drop.on };
    this.#rt.dispatch(K.attnBwdDpre, { params, bufs, groups: B * NH * T, constants });
    this.#rt.dispatch(K.attnBwdDq, { params, bufs, groups: Math.ceil((B * T * C) / 256), constants });
    this.#rt.dispatch(K.attnBwdDkv, { params, bufs, groups: Math.ceil((B * T * C) / 256), constants });
    this.#rt.release(dpre);
  }

  /**
   * Attention's products for every (batch row b, head h) in one dispatch of matmul_batched.wgsl:
   * out = alpha · A·B, each operand a {@link HeadView}. `causal` and `drop` as the kernel's CAUSAL and DROP_A.
   */
  #batchedMatmul(
    s: {
      B: number;
      NH: number;
      M: number;
      N: number;
      K: number;
      alpha: number;
      causal: 0 | 1 | 2 | 3;
      drop?: Dropout;
      /** What the product is, for the profiler's table ("Q·Kᵀ", …). */
      note: string;
    },
    a: HeadView,
    b: HeadView,
    out: HeadView,
  ): void {
    if (out.trans) throw new Error("batched matmul: the output view cannot be transposed");
    const [a0, ab, ah] = a.at, [b0, bb, bh] = b.at, [c0, cb, ch] = out.at;
    const drop = s.drop ?? NO_DROPOUT;
    this.#rt.dispatch(K.matmulBatched, {
      params: {
        M: s.M,
        N: s.N,
        K: s.K,
        NH: s.NH,
        lda: a.ld,
        ldb: b.ld,
        ldc: out.ld,
        a_0: a0,
        a_b: ab,
        a_h: ah,
        b_0: b0,
        b_b: bb,
        b_h: bh,
        c_0: c0,
        c_b: cb,
        c_h: ch,
        alpha: s.alpha,
        ...drop.params,
      },
      bufs: { a: a.buf, b: b.buf, out: out.buf },
      groups: [Math.ceil(s.N / 64), Math.ceil(s.M / 64), s.B * s.NH],
      constants: { TRANS_A: +!!a.trans, TRANS_B: +!!b.trans, DROP_A: drop.on, CAUSAL: s.causal },
      profileNote: `${s.note} ${s.B * s.NH}×(${s.M}×${s.N}×${s.K})`,
    });
  }

  attentionCached(args: OpArgs<"attentionCached">): void {
    const op = "attentionCached";
    const { B, Tn, pos0, Tmax, C, NH } = args;
    const out = this.#rt.buf(args.out, op), qkv = this.#rt.buf(args.qkv, op);
    const kcache = this.#rt.buf(args.kcache, op), vcache = this.#rt.buf(args.vcache, op);
    const mask = args.mask ? this.#rt.buf(args.mask, op, "i32") : null;
    const scratch = this.#rt.acquire(B * NH * Tn * Tmax, "f32", "attention cached scores");
    const bufs = { qkv, mask, kcache, vcache, out, scratch };
    const params = { B, Tn, C, NH, pos0, Tmax };
    const constants = { HAS_MASK: +(mask !== null) };
    this.#rt.dispatch(K.attnCachedStore, { params, bufs, groups: Math.ceil((B * Tn * C) / 256), constants });
    this.#rt.dispatch(K.attnCachedAttend, { params, bufs, groups: B * NH * Tn, constants });
    this.#rt.release(scratch);
  }
}
