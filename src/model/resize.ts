/**
 * New embedding rows as `resize_token_embeddings` draws them (its default mean resizing), and the resize of a
 * model's host tensors (before they go to a device).
 * @module
 */

import type { GPT2Config } from "./config.ts";
import type { HostTensor } from "./gpt2.ts";
import { normalRng } from "./rng.ts";

/**
 * Host tensors by HF name (as `loadModelDir` returns them) with the token embedding resized to `newVocab` rows,
 * as `GPT2.resizeTokenEmbeddings` resizes it on a device: the first rows kept, new ones from
 * {@link sampleLikeRows} with `seed` (the same values). `tensors` is not changed; the other tensors are shared.
 */
export function resizeHostEmbeddings(
  config: GPT2Config,
  tensors: ReadonlyMap<string, HostTensor>,
  newVocab: number,
  seed = 0,
): { config: GPT2Config; tensors: Map<string, HostTensor> } {
  const name = "transformer.wte.weight";
  const V = config.vocabSize, C = config.nEmbd;
  const wte = tensors.get(name);
  if (!wte || wte.shape.join(",") !== `${V},${C}`) {
    throw new Error(
      `Cannot resize the embeddings: ${name} is ${wte ? `[${wte.shape}]` : "missing"}, expected [${V},${C}]`,
    );
  }
  if (newVocab === V) return { config, tensors: new Map(tensors) };
  const data = new Float32Array(newVocab * C);
  data.set(wte.data.subarray(0, Math.min(V, newVocab) * C));
  if (newVocab > V) data.set(sampleLikeRows(wte.data, V, C, newVocab - V, seed), V * C);
  return {
    config: { ...config, vocabSize: newVocab },
    tensors: new Map(tensors).set(name, { shape: [newVocab, C], data }),
  };
}

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
