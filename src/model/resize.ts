/**
 * New embedding rows as `resize_token_embeddings` draws them (its default mean resizing).
 * @module
 */

import { normalRng } from "./rng.ts";

/**
 * `n` new rows like the `V` rows of `src` [V,C]: mean + L·z with L the Cholesky factor of 1e-5·cov
 * (Hugging Face's mean resizing); the mean alone when the covariance is not positive definite.
 */
export function sampleLikeRows(src: Float32Array, V: number, C: number, n: number, seed: number): Float32Array {
  const mean = new Float64Array(C);
  for (let r = 0; r < V; r++) for (let c = 0; c < C; c++) mean[c]! += src[r * C + c]! / V;
  const cov = new Float64Array(C * C);
  const d = new Float64Array(C);
  for (let r = 0; r < V; r++) {
    for (let c = 0; c < C; c++) d[c] = src[r * C + c]! - mean[c]!;
    for (let i = 0; i < C; i++) {
      const di = d[i]!;
      for (let j = 0; j <= i; j++) cov[i * C + j]! += di * d[j]!;
    }
  }
  for (let i = 0; i < C; i++) for (let j = 0; j <= i; j++) cov[i * C + j]! *= 1e-5 / V;
  // Cholesky (lower), in place on the lower triangle
  let pd = true;
  for (let j = 0; j < C && pd; j++) {
    let s = cov[j * C + j]!;
    for (let k = 0; k < j; k++) s -= cov[j * C + k]! ** 2;
    if (!(s > 0)) {
      pd = false;
      break;
    }
    const ljj = Math.sqrt(s);
    cov[j * C + j] = ljj;
    for (let i = j + 1; i < C; i++) {
      let t = cov[i * C + j]!;
      for (let k = 0; k < j; k++) t -= cov[i * C + k]! * cov[j * C + k]!;
      cov[i * C + j] = t / ljj;
    }
  }
  const rng = normalRng(seed);
  const out = new Float32Array(n * C);
  const z = new Float64Array(C);
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < C; c++) z[c] = rng();
    for (let i = 0; i < C; i++) {
      let v = mean[i]!;
      if (pd) { for (let k = 0; k <= i; k++) v += cov[i * C + k]! * z[k]!; }
      out[r * C + i] = v;
    }
  }
  return out;
}
