/**
 * Text generation with a KV cache, with Hugging Face `generate()`'s logits processing: repetition penalty,
 * no-repeat n-gram, then (when sampling) temperature, top-k and top-p, in that order. Greedy decoding
 * picks the first maximum, as `torch.argmax` does.
 * @module
 */

import { type GPT2, KvCache } from "./gpt2.ts";
import { uniformRng } from "./rng.ts";

export { uniformRng };

/** Decoding settings; the defaults are the notebook's evaluation settings (greedy). */
export interface GenerateOptions {
  maxNewTokens: number;
  /** Sample instead of taking the most likely token. Default false. */
  doSample?: boolean;
  /** Softmax temperature when sampling (default 1). 0 means greedy. */
  temperature?: number;
  /** Nucleus sampling: keep the smallest set of tokens whose probability reaches topP (default 1). */
  topP?: number;
  /** Keep only the topK most likely tokens when sampling (default 0 = off). */
  topK?: number;
  /** HF RepetitionPenaltyLogitsProcessor: scores of tokens already in the sequence are divided (positive) or multiplied (negative) by this. Default 1. */
  repetitionPenalty?: number;
  /** HF NoRepeatNGramLogitsProcessor: never repeat an n-gram of this size (0 = off). */
  noRepeatNgramSize?: number;
  /** Stop after generating one of these ids (it is included in the output, as HF does). */
  eosTokenId?: number | number[];
  /** Seed for sampling. */
  seed?: number;
  /** Called with each new token id as it is produced (for streaming). */
  onToken?: (id: number) => void;
}

/** Apply the repetition penalty in place over every id in `seq` (each distinct id once). */
export function applyRepetitionPenalty(logits: Float32Array, seq: readonly number[], penalty: number): void {
  if (penalty === 1) return;
  for (const id of new Set(seq)) {
    const s = logits[id]!;
    logits[id] = s < 0 ? s * penalty : s / penalty;
  }
}

/** Ban (set to −∞) every token that would complete an n-gram already present in `seq`. */
export function applyNoRepeatNgram(logits: Float32Array, seq: readonly number[], n: number): void {
  if (n <= 0 || seq.length + 1 < n) return;
  const prefix = seq.slice(seq.length - n + 1);
  for (let i = 0; i + n <= seq.length; i++) {
    let match = true;
    for (let j = 0; j < n - 1 && match; j++) if (seq[i + j] !== prefix[j]) match = false;
    if (match) logits[seq[i + n - 1]!] = -Infinity;
  }
}

/** Index of the first maximum. */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

/** Sample an id from logits after temperature, top-k and top-p (HF's warpers, in that order). */
export function sampleFromLogits(
  logits: Float32Array,
  opts: { temperature?: number; topK?: number; topP?: number; random: () => number },
): number {
  const V = logits.length, temp = opts.temperature ?? 1;
  const scores = Float64Array.from(logits, (x) => x / temp);
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  let keep = V;
  if (opts.topK && opts.topK > 0) keep = Math.min(keep, opts.topK);
  const max = scores[order[0]!]!;
  let z = 0;
  for (let r = 0; r < keep; r++) z += Math.exp(scores[order[r]!]! - max);
  const topP = opts.topP ?? 1;
  if (topP < 1) {
    // HF removes the tokens whose ascending cumulative probability is ≤ 1 − topP; equivalently it keeps,
    // in descending order, tokens until the cumulative probability passes topP (always at least one).
    let cum = 0, r = 0;
    for (; r < keep; r++) {
      if (r > 0 && cum >= topP) break;
      cum += Math.exp(scores[order[r]!]! - max) / z;
    }
    keep = Math.max(1, r);
    z = 0;
    for (let i = 0; i < keep; i++) z += Math.exp(scores[order[i]!]! - max);
  }
  let u = opts.random() * z;
  for (let r = 0; r < keep; r++) {
    u -= Math.exp(scores[order[r]!]! - max);
    if (u <= 0) return order[r]!;
  }
  return order[keep - 1]!;
}

/**
 * Generate up to `maxNewTokens` ids after `promptIds` (one sequence). Returns the new ids only, the eos
 * id included when it was produced.
 */
export async function generate(model: GPT2, promptIds: readonly number[], opts: GenerateOptions): Promise<number[]> {
  if (promptIds.length === 0) throw new Error("Cannot generate: the prompt has no tokens");
  const maxPos = model.config.nPositions;
  const room = Math.min(opts.maxNewTokens, maxPos - promptIds.length);
  if (room <= 0) {
    throw new Error(`Cannot generate: the prompt has ${promptIds.length} tokens, the model's n_positions is ${maxPos}`);
  }
  const eos = new Set(opts.eosTokenId === undefined ? [] : [opts.eosTokenId].flat());
  const greedy = !opts.doSample || opts.temperature === 0;
  const random = uniformRng(opts.seed ?? 0);
  const cache = new KvCache(model.be, model.config, 1, promptIds.length + room);
  const seq = [...promptIds];
  const out: number[] = [];
  try {
    let logits = await model.forwardCached({
      ids: Int32Array.from(promptIds),
      B: 1,
      Tn: promptIds.length,
      pos0: 0,
      cache,
      lastOnly: true,
    });
    for (let i = 0; i < room; i++) {
      applyRepetitionPenalty(logits, seq, opts.repetitionPenalty ?? 1);
      applyNoRepeatNgram(logits, seq, opts.noRepeatNgramSize ?? 0);
      const id = greedy ? argmax(logits) : sampleFromLogits(logits, { ...opts, random });
      out.push(id);
      seq.push(id);
      opts.onToken?.(id);
      if (eos.has(id) || i === room - 1) break;
      logits = await model.forwardCached({
        ids: Int32Array.of(id),
        B: 1,
        Tn: 1,
        pos0: seq.length - 1,
        cache,
        lastOnly: true,
      });
    }
  } finally {
    cache.dispose();
  }
  return out;
}
