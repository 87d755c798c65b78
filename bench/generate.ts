/**
 * Generation for evaluation (the json_extraction task: 200 test prompts, greedy, up to 120 new tokens per
 * prompt, for the base and the SFT model): one prompt at a time, as the notebook does, against
 * `generateBatch` (rows decoded in lockstep, left-padded). Both run the notebook's decoding settings
 * (greedy, repetition penalty 1.1, no-repeat 3-gram) on the same test prompts (ChatML-wrapped extraction
 * instructions, seed 44); no eos is set, so every prompt generates its full budget and both sides do the
 * same number of tokens. Exits 1 unless every prompt's ids agree both ways.
 *
 * Usage: deno run -A bench/generate.ts [--backend auto|cpu|webgpu] [--n 16] [--new-tokens 32] [--batch 16]
 *                                      [--shape tiny|gpt2] [--json]
 *        bun bench/generate.ts …the same flags…
 * @module
 */

import type { Backend } from "../src/backend/backend.ts";
import { choiceFlag, numberFlag, parseFlags, runMain } from "../src/cli/args.ts";
import { promptFor } from "../src/data/chatml.ts";
import { generateExtractionRecords } from "../src/data/synth.ts";
import { generate, generateBatch } from "../src/model/generate.ts";
import { benchModel, runOnBackend } from "./classify.ts";

/** What {@link benchGeneration} measures. */
export interface GenerationResult {
  shape: "tiny" | "gpt2";
  params: number;
  prompts: number;
  prompt_tokens: number;
  new_tokens: number;
  batch: number;
  one_at_a_time_ms: number;
  batched_ms: number;
  one_at_a_time_tokens_per_s: number;
  batched_tokens_per_s: number;
  speedup: number;
  same_ids: number;
}

/** Time `n` prompts' generation one at a time and batched on `be`. */
export async function benchGeneration(
  be: Backend,
  opts: { n: number; newTokens: number; batch: number; shape: "tiny" | "gpt2"; log?: (s: string) => void },
): Promise<GenerationResult> {
  const { n, newTokens, batch, shape } = opts;
  const { model, tokenizer } = await benchModel(be, shape);
  try {
    const records = generateExtractionRecords(n, 44);
    const prompts = records.map((r) => tokenizer.encode(promptFor(r.instruction)).ids);
    const settings = { maxNewTokens: newTokens, repetitionPenalty: 1.1, noRepeatNgramSize: 3 };
    await generate(model, prompts[0]!, { ...settings, maxNewTokens: 2 }); // warm up (pipelines, pools)
    let t = performance.now();
    const alone: number[][] = [];
    for (const p of prompts) alone.push(await generate(model, p, settings));
    const aloneMs = performance.now() - t;
    t = performance.now();
    const batched = await generateBatch(model, prompts.map((ids) => ({ ids })), { ...settings, batchSize: batch });
    const batchedMs = performance.now() - t;
    const tokens = alone.reduce((a, x) => a + x.length, 0);
    const same = alone.filter((x, i) => x.join() === batched[i]!.join()).length;
    const result: GenerationResult = {
      shape,
      params: model.numParams,
      prompts: n,
      prompt_tokens: Math.round(prompts.reduce((a, p) => a + p.length, 0) / n),
      new_tokens: tokens,
      batch,
      one_at_a_time_ms: aloneMs,
      batched_ms: batchedMs,
      one_at_a_time_tokens_per_s: tokens / (aloneMs / 1000),
      batched_tokens_per_s: tokens / (batchedMs / 1000),
      speedup: aloneMs / batchedMs,
      same_ids: same,
    };
    opts.log?.(
      `generation, ${n} prompts (${result.prompt_tokens} tokens on average) × ${newTokens} new tokens, ${shape} ` +
        `model (${(result.params / 1e6).toFixed(1)} M parameters), greedy with the notebook's penalties:\n` +
        `  one prompt at a time (the notebook): ${(aloneMs / 1000).toFixed(2)} s, ` +
        `${result.one_at_a_time_tokens_per_s.toFixed(1)} tokens/s\n` +
        `  batched, ${batch} rows:              ${(batchedMs / 1000).toFixed(2)} s, ` +
        `${result.batched_tokens_per_s.toFixed(1)} tokens/s (${result.speedup.toFixed(2)}×)\n` +
        `  the same ids both ways for ${same}/${n} prompts`,
    );
    return result;
  } finally {
    model.dispose();
  }
}

async function main(): Promise<number> {
  const { values: v } = parseFlags({
    options: {
      backend: { type: "string" },
      n: { type: "string" },
      "new-tokens": { type: "string" },
      batch: { type: "string" },
      shape: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    console.log(
      "usage: bench/generate.ts [--backend auto|cpu|webgpu] [--n 16] [--new-tokens 32] [--batch 16] " +
        "[--shape tiny|gpt2] [--json]\n" +
        "Greedy generation (the notebook's penalties) for --n extraction prompts, one at a time and batched;\n" +
        "--shape gpt2: random weights of the real model's shape.",
    );
    return 0;
  }
  const n = numberFlag("n", v.n, 16, { integer: true, min: 1 });
  const newTokens = numberFlag("new-tokens", v["new-tokens"], 32, { integer: true, min: 1 });
  const batch = numberFlag("batch", v.batch, 16, { integer: true, min: 1 });
  const shape = choiceFlag("shape", v.shape, ["tiny", "gpt2"] as const, "tiny");
  return await runOnBackend(
    "bench/generate",
    v.backend,
    v.json!,
    (be, log) => benchGeneration(be, { n, newTokens, batch, shape, log }),
    (r) => r.same_ids === n,
  );
}

if (import.meta.main) runMain("bench/generate", main);
