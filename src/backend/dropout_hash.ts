/**
 * The dropout mask as a stateless counter-based hash, shared by the CPU backend, the WGSL kernels
 * (`lowbias32` and `dropout_hash` in `kernels/common.wgsl`, used by `dropout.wgsl` and the attention kernels,
 * are the same few lines of u32 arithmetic) and the tests. Whether element `i` of a tensor survives depends only on `(seed, p, i)`:
 *
 *   key       = lowbias32(seed ⊕ 0x9E3779B9)                     (once per call, on the host)
 *   h(i)      = lowbias32(lowbias32(i) ⊕ key)                     (per element, u32 arithmetic that wraps)
 *   keep(i)   = h(i) ≥ threshold,  threshold = ⌊p · 2³²⌋           (so P(keep) = 1 − p, to 2⁻³²)
 *   out[i]    = keep(i) ? inp[i] · scale : 0,  scale = fround(1 / (1 − p))   (as torch: kept values scaled)
 *
 * `lowbias32` is Chris Wellons' 32-bit integer finaliser (two multiply–xorshift rounds; bias 0.17). The
 * element index is hashed before the key is mixed in, so the masks of two seeds are not shifted or
 * permuted copies of each other (as they would be with `lowbias32(i ⊕ key)`: seed s₂'s mask would be seed
 * s₁'s at index `i ⊕ key₁ ⊕ key₂`).
 *
 * No mask buffer exists: the backward recomputes `keep(i)` from the same seed. Callers must therefore use
 * a fresh seed per dropout site and per step, and the same seed for a forward and its backward.
 *
 * @example
 * ```ts
 * import { dropoutKeep, dropoutParams } from "./dropout_hash.ts";
 * const d = dropoutParams(0.1, 1234);
 * let kept = 0;
 * for (let i = 0; i < 100_000; i++) if (dropoutKeep(d, i)) kept++;
 * console.log(kept / 100_000); // ≈ 0.9
 * ```
 * @module
 */

/** The golden-ratio constant mixed into the seed, so seed 0 does not give key 0. */
const SEED_MIX = 0x9e3779b9;

/** The per-call constants of one dropout mask (see the module doc). */
export interface DropoutParams {
  /** The drop probability p, 0 ≤ p < 1. */
  readonly p: number;
  /** lowbias32(seed ⊕ 0x9E3779B9), a u32. */
  readonly key: number;
  /** ⌊p · 2³²⌋, a u32: an element is kept when its hash is ≥ threshold. */
  readonly threshold: number;
  /** fround(1 / (1 − p)): the factor applied to kept elements (1 when p = 0). */
  readonly scale: number;
}

/** Chris Wellons' lowbias32 integer hash on u32 (a bijection of [0, 2³²)). Returns a u32 as a number. */
export function lowbias32(x: number): number {
  x = x >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * Check `p` and `seed` and derive the mask constants. `p` must be a number in [0, 1); `seed` an integer
 * (only its value mod 2³² matters). `what` names the caller in errors.
 */
export function dropoutParams(p: number, seed: number, what = "dropout"): DropoutParams {
  if (!(typeof p === "number" && p >= 0 && p < 1)) {
    throw new Error(`Cannot run ${what}: p must be in [0, 1), got ${p}`);
  }
  if (!Number.isSafeInteger(seed)) throw new Error(`Cannot run ${what}: seed must be an integer, got ${seed}`);
  return {
    p,
    key: lowbias32((seed >>> 0) ^ SEED_MIX),
    threshold: Math.floor(p * 4294967296),
    scale: Math.fround(1 / (1 - p)),
  };
}

/** h(i) = lowbias32(lowbias32(i) ⊕ key), a u32. */
export function dropoutHash(key: number, i: number): number {
  return lowbias32(lowbias32(i) ^ key);
}

/** Whether element `i` is kept under the mask `d`. */
export function dropoutKeep(d: DropoutParams, i: number): boolean {
  return dropoutHash(d.key, i) >= d.threshold;
}
