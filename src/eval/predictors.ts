/**
 * How a model answers a test item (the notebook's `run_model`): {@link labelClassifier} scores every label
 * (classification), {@link generator} generates with the decoding settings (other tasks). Both answer a
 * chunk of items ahead of their calls where they can, batched on the device.
 * @module
 */

import { IM_END, promptFor } from "../data/chatml.ts";
import { generate, generateBatch } from "../model/generate.ts";
import type { GPT2 } from "../model/gpt2.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { classify, classifyBatch } from "./classify.ts";
import { pyStrip } from "./metrics.ts";
import type { DecodingOptions } from "./plan.ts";

/**
 * A model with its tokenizer, answering one instruction. `prefetch`, where present, answers a whole chunk
 * of upcoming instructions at once (batched on the device); the calls that follow return those answers.
 */
export type Predictor = ((instruction: string, index: number) => Promise<string>) & {
  /** Answer `instructions`, the test items `first`, `first + 1`, …, ahead of their calls. */
  prefetch?: (instructions: readonly string[], first: number) => Promise<void>;
  /** How many items one prefetch takes (default {@link PREFETCH}): the progress display moves by this much. */
  prefetchSize?: number;
  /** The label classifier: the labels' scores behind the last answer (mean log-probability per token). */
  lastScores?: () => number[] | undefined;
};

/** How many test items a batched predictor answers at once. */
export const PREFETCH = 32;
/**
 * The notebook's `_lm_classify`, with every label scored from one shared prompt pass and the test items
 * batched (`classifyBatch`; the same scores as one item at a time).
 */
export function labelClassifier(
  model: GPT2,
  tokenizer: Tokenizer,
  opts: { labels: readonly string[]; chatml: boolean },
): Predictor {
  const labels = opts.labels.map((label) => ({ label, ids: tokenizer.encode(label, { addSpecialTokens: false }).ids }));
  const promptIds = (instruction: string) =>
    tokenizer.encode(opts.chatml ? promptFor(instruction) : instruction, { addSpecialTokens: false }).ids;
  const ready = new Map<string, { label: string; scores?: number[] }>();
  let last: number[] | undefined;
  const predict: Predictor = async (instruction) => {
    let done = ready.get(instruction);
    if (!done) {
      const ids = promptIds(instruction);
      // `if not prompt_ids: return labels[0]` (no scores then)
      done = ids.length === 0 ? { label: labels[0]!.label } : await classify(model, ids, labels);
    }
    last = done.scores;
    return done.label;
  };
  predict.lastScores = () => last;
  predict.prefetch = async (instructions) => {
    ready.clear();
    const todo = [...new Set(instructions)].map((text) => ({ text, ids: promptIds(text) })).filter((x) => x.ids.length);
    const results = await classifyBatch(model, todo.map((x) => x.ids), labels);
    for (const [i, x] of todo.entries()) ready.set(x.text, results[i]!);
  };
  return predict;
}

/**
 * The ids of `text` with the tokenizer's framing before it (`[CLS]` for a BERT tokenizer, nothing for GPT-2's
 * byte-level BPE) and none after it: a prompt the answer continues, as in the training sequences.
 */
export function openPromptIds(tokenizer: Tokenizer, text: string): number[] {
  const full = tokenizer.encode(text).ids;
  const bare = tokenizer.encode(text, { addSpecialTokens: false }).ids;
  const framing = tokenizer.encode("").ids.length;
  for (let p = 0; p <= framing; p++) {
    if (bare.every((id, i) => full[p + i] === id)) return full.slice(0, p + bare.length);
  }
  return bare;
}

/**
 * The notebook's `generate_text` (base model: `chatml` false) or `generate_response` (SFT model: `chatml`
 * true), with the decoding settings given. With `raw`, each instruction is the whole prompt text, used as it
 * is (the free-form evaluation's ChatML conversations); `chatml` then says only how the answer ends and is
 * cleaned.
 */
export function generator(
  model: GPT2,
  tokenizer: Tokenizer,
  opts: { chatml: boolean; decoding: Required<DecodingOptions>; raw?: boolean },
): Predictor {
  const d = opts.decoding;
  let eos: number | undefined;
  if (opts.chatml) {
    // eos_id = convert_tokens_to_ids('<|im_end|>'), falling back to the tokenizer's eos (BERT has none)
    const id = tokenizer.tokenToId(IM_END);
    eos = id !== undefined && id !== tokenizer.unkTokenId ? id : model.config.eosTokenId;
  } else {
    eos = model.config.eosTokenId; // generation_config.eos_token_id
  }
  const { seed: _seed, batchSize: _batchSize, ...decoding } = d; // the seed goes per item, the batch size to prefetch
  const settings = { ...decoding, eosTokenId: eos };
  // tok(prompt): [CLS] … [SEP], as the notebook's generate_response; a raw conversation prompt keeps only the
  // framing that comes before the text (the model was trained on [CLS] … assistant\n answer, not on a [SEP]
  // after "assistant\n")
  const promptIds = (instruction: string) =>
    opts.raw
      ? openPromptIds(tokenizer, instruction)
      : tokenizer.encode(opts.chatml ? promptFor(instruction) : instruction).ids;
  const text = (ids: number[]) =>
    opts.chatml
      ? cleanResponse(tokenizer.decode(ids, { skipSpecialTokens: false }))
      : pyStrip(tokenizer.decode(ids, { skipSpecialTokens: true }));
  // answers generated ahead by `prefetch`, by item index (the seed depends on it)
  const ready = new Map<number, { instruction: string; answer: string }>();
  const predict: Predictor = async (instruction, index) => {
    const done = ready.get(index);
    if (done?.instruction === instruction) return done.answer;
    return text(await generate(model, promptIds(instruction), { ...settings, seed: d.seed + index }));
  };
  if (d.batchSize > 1) {
    predict.prefetchSize = d.batchSize; // one batch at a time, so that the progress moves batch by batch
    predict.prefetch = async (instructions, first) => {
      ready.clear();
      const prompts = instructions.map((x, k) => ({ ids: promptIds(x), seed: d.seed + first + k }));
      const outs = await generateBatch(model, prompts, { ...settings, batchSize: d.batchSize });
      instructions.forEach((instruction, k) => ready.set(first + k, { instruction, answer: text(outs[k]!) }));
    };
  }
  return predict;
}

/** generate_response's clean-up: drop `[CLS]`/`[SEP]`, strip, cut at `<|im_end|>`, strip. */
export function cleanResponse(text: string): string {
  let t = pyStrip(text.replaceAll("[CLS]", "").replaceAll("[SEP]", ""));
  const end = t.indexOf(IM_END);
  if (end >= 0) t = t.slice(0, end);
  return pyStrip(t);
}
