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
 * The choice both generation loops make at each step, as HF's `generate()`: `next` applies the repetition
 * penalty and the no-repeat n-gram ban to a sequence's `logits` (in place), then takes the most likely id
 * or samples one with `random`; `eos` holds the ids that end a sequence.
 */
function tokenChooser(opts: Omit<GenerateOptions, "seed" | "onToken">): {
  next: (logits: Float32Array, seq: readonly number[], random: () => number) => number;
  eos: Set<number>;
} {
  const greedy = !opts.doSample || opts.temperature === 0;
  return {
    next: (logits, seq, random) => {
      applyRepetitionPenalty(logits, seq, opts.repetitionPenalty ?? 1);
      applyNoRepeatNgram(logits, seq, opts.noRepeatNgramSize ?? 0);
      return greedy ? argmax(logits) : sampleFromLogits(logits, { ...opts, random });
    },
    eos: new Set(opts.eosTokenId === undefined ? [] : [opts.eosTokenId].flat()),
  };
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
  const { next, eos } = tokenChooser(opts);
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
      const id = next(logits, seq, random);
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

/** One prompt of {@link generateBatch}: its ids and its sampling seed (as `GenerateOptions.seed`). */
export interface BatchPrompt {
  ids: readonly number[];
  seed?: number;
}

/**
 * {@link generate} for many prompts at once, rows of up to `batchSize` decoded in lockstep: each step
 * reads the weights once for the whole batch (on the CPU a product of `batchSize` rows instead of one, on
 * a GPU a fraction of the dispatches per token). Prompts are sorted by length and each batch is padded
 * on the left with masked positions (HF's way: `position_ids` start at 0 at each row's first token), so
 * every row computes what {@link generate} computes alone, up to float32 rounding of the wider products;
 * a row stops at its eos or its own token budget while the others go on. Returns the new ids per prompt,
 * in the order given. `onToken` is not called (rows advance together).
 */
export async function generateBatch(
  model: GPT2,
  prompts: readonly BatchPrompt[],
  opts: Omit<GenerateOptions, "seed" | "onToken"> & { batchSize?: number },
): Promise<number[][]> {
  const maxPos = model.config.nPositions;
  prompts.forEach((p, i) => {
    if (p.ids.length === 0) throw new Error(`Cannot generate: prompt ${i} has no tokens`);
    if (p.ids.length >= maxPos) {
      throw new Error(
        `Cannot generate: prompt ${i} has ${p.ids.length} tokens, the model's n_positions is ${maxPos}`,
      );
    }
  });
  const size = Math.max(1, Math.floor(opts.batchSize ?? 16));
  const order = prompts.map((_, i) => i).sort((a, b) => prompts[a]!.ids.length - prompts[b]!.ids.length);
  const results: number[][] = prompts.map(() => []);
  for (let s = 0; s < order.length; s += size) {
    const rows = order.slice(s, s + size);
    const outs = await decodeRows(model, rows.map((i) => prompts[i]!), opts);
    rows.forEach((i, r) => results[i] = outs[r]!);
  }
  return results;
}

/**
 * One left-padded batch of {@link generateBatch}. Rows that finish leave the batch once a quarter of its
 * rows have: the live rows' caches are copied into a smaller cache (a copy per layer and row, cheap beside
 * a step), so the later steps do no work for them.
 */
async function decodeRows(
  model: GPT2,
  prompts: readonly BatchPrompt[],
  opts: Omit<GenerateOptions, "seed" | "onToken">,
): Promise<number[][]> {
  const be = model.be, cfg = model.config, V = cfg.vocabSize, maxPos = cfg.nPositions;
  const lens = prompts.map((p) => p.ids.length);
  const L = Math.max(...lens);
  // each row's budget, as generate() gives it alone; the cache holds the longest run
  const room = lens.map((n) => Math.min(opts.maxNewTokens, maxPos - n));
  const steps = Math.max(...room);
  const Tmax = L + steps;
  const { next, eos } = tokenChooser(opts);
  const random = prompts.map((p) => uniformRng(p.seed ?? 0));
  const seqs = prompts.map((p) => [...p.ids]);
  const outs: number[][] = prompts.map(() => []);
  const done = prompts.map(() => false);
  // the prompt behind each row of the cache (finished rows stay until the next compaction)
  let rows = prompts.map((_, b) => b);
  // mask [rows,Tmax]: 0 on each row's left padding; positions from 0 at the row's first real token
  const maskOf = (rows: readonly number[]) => {
    const mask = new Int32Array(rows.length * Tmax).fill(1);
    rows.forEach((b, r) => mask.fill(0, r * Tmax, r * Tmax + L - lens[b]!));
    return mask;
  };
  let mask = maskOf(rows);
  const ids = new Int32Array(rows.length * L), positions = new Int32Array(rows.length * L);
  prompts.forEach((p, b) => {
    const pad = L - lens[b]!;
    for (let t = 0; t < L; t++) {
      ids[b * L + t] = t < pad ? p.ids[0]! : p.ids[t - pad]!; // pads: any valid id, masked
      positions[b * L + t] = Math.max(0, t - pad);
    }
  });
  let cache = new KvCache(be, cfg, rows.length, Tmax);
  try {
    let logits = await model.forwardCached({
      ids,
      B: rows.length,
      Tn: L,
      pos0: 0,
      cache,
      mask,
      positions,
      lastOnly: true,
    });
    for (let i = 0; i < steps; i++) {
      rows.forEach((b, r) => {
        if (done[b]) return;
        const id = next(logits.subarray(r * V, (r + 1) * V), seqs[b]!, random[b]!);
        outs[b]!.push(id);
        seqs[b]!.push(id);
        if (eos.has(id) || outs[b]!.length >= room[b]!) done[b] = true;
      });
      const live = rows.filter((b) => !done[b]);
      if (live.length === 0) break;
      if (live.length <= 0.75 * rows.length) {
        // drop the finished rows: copy the live rows' keys and values into a cache of their own
        const small = new KvCache(be, cfg, live.length, Tmax);
        const block = Tmax * cfg.nEmbd; // one row of [B, NH, Tmax, HS]
        let k = 0;
        rows.forEach((b, r) => {
          if (done[b]) return;
          for (let l = 0; l < cfg.nLayer; l++) {
            be.copy(small.k[l]!, cache.k[l]!, block, k * block, r * block);
            be.copy(small.v[l]!, cache.v[l]!, block, k * block, r * block);
          }
          k++;
        });
        cache.dispose();
        cache = small;
        rows = live;
        mask = maskOf(rows);
      }
      logits = await model.forwardCached({
        ids: Int32Array.from(rows, (b) => seqs[b]!.at(-1)!), // a finished row: its last id (output unused)
        B: rows.length,
        Tn: 1,
        pos0: L + i,
        cache,
        mask,
        positions: Int32Array.from(rows, (b) => Math.min(seqs[b]!.length - 1, maxPos - 1)),
        lastOnly: true,
      });
    }
  } finally {
    cache.dispose();
  }
  return outs;
}
