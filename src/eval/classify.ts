/**
 * The notebook's label classifier: for each candidate label, the mean log-probability of the label's
 * tokens after the prompt; the best-scoring label wins. The prompt runs once into a KV cache and every
 * label continues from it (the notebook runs one full forward per label; the scores are the same).
 * @module
 */

import { type GPT2, KvCache } from "../model/gpt2.ts";

/** log softmax(row)[id], computed in float64. */
function logProb(logits: Float32Array, offset: number, V: number, id: number): number {
  let max = -Infinity;
  for (let i = 0; i < V; i++) max = Math.max(max, logits[offset + i]!);
  let z = 0;
  for (let i = 0; i < V; i++) z += Math.exp(logits[offset + i]! - max);
  return logits[offset + id]! - max - Math.log(z);
}

/**
 * Mean log-probability of each label's token ids after `promptIds` (both without special tokens, as the
 * notebook's `_lm_classify`). A label with no tokens scores −∞.
 */
export async function scoreLabels(
  model: GPT2,
  promptIds: readonly number[],
  labelIds: readonly (readonly number[])[],
): Promise<number[]> {
  if (promptIds.length === 0) throw new Error("Cannot score labels: the prompt has no tokens");
  const V = model.config.vocabSize;
  const longest = Math.max(0, ...labelIds.map((l) => l.length));
  const P = promptIds.length;
  if (P + longest > model.config.nPositions) {
    throw new Error(
      `Cannot score labels: prompt (${P}) + label (${longest}) tokens exceed n_positions ${model.config.nPositions}`,
    );
  }
  const cache = new KvCache(model.be, model.config, 1, P + Math.max(1, longest));
  try {
    const last = await model.forwardCached({
      ids: Int32Array.from(promptIds),
      B: 1,
      Tn: P,
      pos0: 0,
      cache,
      lastOnly: true,
    });
    const scores: number[] = [];
    for (const ids of labelIds) {
      if (ids.length === 0) {
        scores.push(-Infinity);
        continue;
      }
      let total = logProb(last, 0, V, ids[0]!);
      if (ids.length > 1) {
        // the label's tokens but the last, continuing from the prompt: logits at j predict token j+1
        const rest = await model.forwardCached({
          ids: Int32Array.from(ids.slice(0, -1)),
          B: 1,
          Tn: ids.length - 1,
          pos0: P,
          cache,
        });
        for (let j = 1; j < ids.length; j++) total += logProb(rest, (j - 1) * V, V, ids[j]!);
      }
      scores.push(total / ids.length);
    }
    return scores;
  } finally {
    cache.dispose();
  }
}

/** The best label (the first on ties, as the notebook's strict `>`). */
export async function classify(
  model: GPT2,
  promptIds: readonly number[],
  labels: readonly { label: string; ids: readonly number[] }[],
): Promise<{ label: string; scores: number[] }> {
  if (labels.length === 0) throw new Error("Cannot classify: no labels");
  const scores = await scoreLabels(model, promptIds, labels.map((l) => l.ids));
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[best]!) best = i;
  return { label: labels[best]!.label, scores };
}
