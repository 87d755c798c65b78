/**
 * Float64 references shared by the op tests: what the CPU backend and the kernels must compute.
 * @module
 */

import { dropoutKeep, type DropoutParams } from "../../src/backend/dropout_hash.ts";

/**
 * Causal multi-head attention in float64 over qkv [B,T,3C] with an optional key padding mask [B,T] and an
 * optional dropout on the probabilities (the same hash mask as the backends). Rows that see no key stay 0.
 * `att` holds the undropped probabilities.
 */
export function attention64(
  qkv: ArrayLike<number>,
  mask: ArrayLike<number> | undefined,
  s: { B: number; T: number; C: number; NH: number },
  drop?: DropoutParams,
): { out: Float64Array; att: Float64Array } {
  const { B, T, C, NH } = s;
  const HS = C / NH;
  const out = new Float64Array(B * T * C), att = new Float64Array(B * NH * T * T);
  const at = (b: number, t: number, part: number, h: number, i: number) =>
    qkv[(b * T + t) * 3 * C + part * C + h * HS + i]!;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const sc: number[] = [];
        for (let u = 0; u < T; u++) {
          const visible = u <= t && (!mask || mask[b * T + u] === 1);
          let d = 0;
          for (let i = 0; i < HS; i++) d += at(b, t, 0, h, i) * at(b, u, 1, h, i);
          sc.push(visible ? d / Math.sqrt(HS) : -Infinity);
        }
        const mx = Math.max(...sc);
        if (mx === -Infinity) continue; // no visible key: probabilities and output stay 0
        const e = sc.map((v) => Math.exp(v - mx));
        const z = e.reduce((p, q) => p + q, 0);
        for (let u = 0; u < T; u++) {
          const a = ((b * NH + h) * T + t) * T + u;
          const p = e[u]! / z;
          att[a] = p;
          const m = drop ? (dropoutKeep(drop, a) ? 1 / (1 - drop.p) : 0) : 1;
          for (let i = 0; i < HS; i++) {
            const o = (b * T + t) * C + h * HS + i;
            out[o] = out[o]! + p * m * at(b, u, 2, h, i);
          }
        }
      }
    }
  }
  return { out, att };
}

/** Σ y·w in float64. */
export function dot(y: ArrayLike<number>, w: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += y[i]! * w[i]!;
  return s;
}

/** Central finite differences of f at x, in float64, step h. */
export function numGrad(f: (x: Float64Array) => number, x: Float64Array, h = 1e-5): Float64Array {
  const g = new Float64Array(x.length);
  const xp = x.slice();
  for (let i = 0; i < x.length; i++) {
    xp[i] = x[i]! + h;
    const fp = f(xp);
    xp[i] = x[i]! - h;
    const fm = f(xp);
    xp[i] = x[i]!;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}
