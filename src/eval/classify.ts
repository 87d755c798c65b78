/**
 * The notebook's label classifier: for each candidate label, the mean log-probability of the label's
 * tokens after the prompt; the best-scoring label wins. The prompt runs once into a KV cache and every
 * label continues from it (the notebook runs one full forward per label; the scores are the same).
 * @module
 */

import { type GPT2, KvCache } from "../model/gpt2.ts";

/** log softmax(row)[id], computed in float64. */
function logProb(logits: Float32Array, offset: number, V: number, id: number): number {
  return logits[offset + id]! - logSumExp(logits, offset, V);
}

/** log Σ exp(row), computed in float64. */
function logSumExp(logits: Float32Array, offset: number, V: number): number {
  let max = -Infinity;
  for (let i = 0; i < V; i++) max = Math.max(max, logits[offset + i]!);
  let z = 0;
  for (let i = 0; i < V; i++) z += Math.exp(logits[offset + i]! - max);
  return max + Math.log(z);
}

/**
 * The notebook's `_lm_classify` scores as it computes them: one full forward of prompt + label per label, the
 * mean log-probability of the label's tokens. Slow; the reference that {@link scoreLabels} must equal and
 * the baseline of `bench/classify.ts`.
 */
export async function scoreLabelsNotebook(
  model: GPT2,
  promptIds: readonly number[],
  labelIds: readonly (readonly number[])[],
): Promise<number[]> {
  const V = model.config.vocabSize, P = promptIds.length, scores: number[] = [];
  for (const ids of labelIds) {
    const all = [...promptIds, ...ids];
    const cache = new KvCache(model.be, model.config, 1, all.length);
    try {
      const logits = await model.forwardCached({ ids: Int32Array.from(all), B: 1, Tn: all.length, pos0: 0, cache });
      let total = 0;
      for (let j = 0; j < ids.length; j++) total += logProb(logits, (P - 1 + j) * V, V, ids[j]!);
      scores.push(ids.length ? total / ids.length : -Infinity);
    } finally {
      cache.dispose();
    }
  }
  return scores;
}

/**
 * Mean log-probability of each label's token ids after `promptIds` (both without special tokens, as the
 * notebook's `_lm_classify`). A label with no tokens scores −∞. See {@link scoreLabelsBatch}.
 */
export async function scoreLabels(
  model: GPT2,
  promptIds: readonly number[],
  labelIds: readonly (readonly number[])[],
): Promise<number[]> {
  return (await scoreLabelsBatch(model, [promptIds], labelIds))[0]!;
}

/**
 * {@link scoreLabels} for many prompts at once, with the same results.
 *
 * How: the tokens every prompt starts with (the chat template and the task's instruction, typically
 * more than half of each prompt) run once into a KV cache of one row. Prompts of equal length then run
 * together as one batch (no padding needed), each row's cache starting as a copy of that shared prefix;
 * each prompt's keys and values are copied into one cache row per label; then every (prompt, label) pair
 * continues at once (the label's tokens but the last, right-padded: a padded position comes after every
 * real one, so no mask is needed). The device is read once per batch. The notebook instead runs
 * prompt + label through the whole model once per label and prompt.
 */
export async function scoreLabelsBatch(
  model: GPT2,
  prompts: readonly (readonly number[])[],
  labelIds: readonly (readonly number[])[],
  opts: { maxRows?: number; sharePrefix?: boolean } = {},
): Promise<number[][]> {
  const be = model.be, V = model.config.vocabSize, nl = labelIds.length;
  const longest = Math.max(0, ...labelIds.map((l) => l.length));
  const rest = Math.max(0, longest - 1); // label tokens fed after the prompt (the last is only predicted)
  const byLength = new Map<number, number[]>();
  for (const [i, p] of prompts.entries()) {
    if (p.length === 0) throw new Error(`Cannot score labels: prompt ${i} has no tokens`);
    if (p.length + longest > model.config.nPositions) {
      throw new Error(
        `Cannot score labels: prompt (${p.length}) + label (${longest}) tokens exceed n_positions ${model.config.nPositions}`,
      );
    }
    byLength.set(p.length, [...(byLength.get(p.length) ?? []), i]);
  }
  const perBatch = Math.max(1, Math.floor((opts.maxRows ?? 192) / Math.max(nl, 1)));
  // The shared prefix, at most each prompt's length − 1 (every prompt keeps a token to predict from).
  const L = prompts.length > 1 && opts.sharePrefix !== false ? commonPrefixLength(prompts) : 0;
  let prefixCache: KvCache | undefined;
  if (L > 0) {
    prefixCache = new KvCache(be, model.config, 1, L);
    const ids = Int32Array.from(prompts[0]!.slice(0, L));
    be.free(model.forwardCachedOnDevice({ ids, B: 1, Tn: L, pos0: 0, cache: prefixCache, lastOnly: true }));
  }
  const out: number[][] = new Array(prompts.length);
  try {
    for (const [P, all] of byLength) {
      for (let s = 0; s < all.length; s += perBatch) {
        const group = all.slice(s, s + perBatch), k = group.length, S = P - L;
        const promptCache = new KvCache(be, model.config, k, P);
        const cache = rest > 0 ? new KvCache(be, model.config, k * nl, P + rest) : undefined;
        let lastBuf, restBuf;
        try {
          if (prefixCache) model.replicateCache(prefixCache, promptCache, L);
          const pids = new Int32Array(k * S);
          for (const [e, i] of group.entries()) pids.set(prompts[i]!.slice(L), e * S);
          lastBuf = model.forwardCachedOnDevice({
            ids: pids,
            B: k,
            Tn: S,
            pos0: L,
            cache: promptCache,
            lastOnly: true,
          });
          if (cache) {
            // row e·nl + b continues prompt e with label b
            model.replicateCache(promptCache, cache, P, (row) => Math.floor(row / nl));
            const ids = new Int32Array(k * nl * rest); // padding with token 0: never attended by a real position
            for (let e = 0; e < k; e++) {
              for (const [b, l] of labelIds.entries()) ids.set(l.slice(0, -1), (e * nl + b) * rest);
            }
            restBuf = model.forwardCachedOnDevice({ ids, B: k * nl, Tn: rest, pos0: P, cache });
          }
          const last = (await be.read(lastBuf)) as Float32Array;
          const restLogits = restBuf ? (await be.read(restBuf)) as Float32Array : undefined;
          for (const [e, i] of group.entries()) {
            const lse = logSumExp(last, e * V, V); // one prompt row serves every label's first token
            out[i] = labelIds.map((ids, b) => {
              if (ids.length === 0) return -Infinity;
              let total = last[e * V + ids[0]!]! - lse;
              // pair (e, b), position j−1 of the continuation predicts label token j
              const row = (e * nl + b) * rest;
              for (let j = 1; j < ids.length; j++) total += logProb(restLogits!, (row + j - 1) * V, V, ids[j]!);
              return total / ids.length;
            });
          }
        } finally {
          for (const b of [lastBuf, restBuf]) if (b) be.free(b);
          promptCache.dispose();
          cache?.dispose();
        }
      }
    }
  } finally {
    prefixCache?.dispose();
  }
  return out;
}

/** The number of leading tokens all prompts share, at most the shortest prompt's length − 1. */
export function commonPrefixLength(prompts: readonly (readonly number[])[]): number {
  const first = prompts[0]!;
  let L = Math.min(...prompts.map((p) => p.length)) - 1;
  for (const p of prompts) {
    let i = 0;
    while (i < L && p[i] === first[i]) i++;
    L = i;
  }
  return Math.max(0, L);
}

/** The index of the best score (the first on ties, as the notebook's strict `>`). */
function best(scores: readonly number[]): number {
  let b = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[b]!) b = i;
  return b;
}

/** {@link classify} for many prompts, batched ({@link scoreLabelsBatch}). */
export async function classifyBatch(
  model: GPT2,
  prompts: readonly (readonly number[])[],
  labels: readonly { label: string; ids: readonly number[] }[],
): Promise<{ label: string; scores: number[] }[]> {
  if (labels.length === 0) throw new Error("Cannot classify: no labels");
  const all = await scoreLabelsBatch(model, prompts, labels.map((l) => l.ids));
  return all.map((scores) => ({ label: labels[best(scores)]!.label, scores }));
}

/** The best label (the first on ties, as the notebook's strict `>`). */
export async function classify(
  model: GPT2,
  promptIds: readonly number[],
  labels: readonly { label: string; ids: readonly number[] }[],
): Promise<{ label: string; scores: number[] }> {
  return (await classifyBatch(model, [promptIds], labels))[0]!;
}
