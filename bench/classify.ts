/**
 * The label classifier, three ways on the same backend: the notebook's `_lm_classify` (one full forward of
 * prompt + label per label), ours one prompt at a time (`classify`: the prompt once into a KV cache, every
 * label continues from it) and ours batched (`classifyBatch`: the prefix all prompts share once, prompts of
 * equal length together). Same scores, far less work.
 *
 * Usage: deno run -A bench/classify.ts [--backend auto|cpu|webgpu] [--n 100] [--shape tiny|gpt2] [--json]
 *
 * `--shape tiny` (default): the offline demo's model (n_embd 64, 2 layers). `--shape gpt2`: random weights of
 * the real model's shape (n_embd 768, 12 layers, 12 heads, vocab 21191), with the demo's tokenizer for the
 * prompts. `bench/bench.ts` runs {@link benchClassifier} as its `classify` part.
 * @module
 */

import { fileURLToPath } from "node:url";
import type { Backend } from "../src/backend/backend.ts";
import { createBackend, parseBackendName, profileReport } from "../src/backend/mod.ts";
import { backendSettings } from "../src/env.ts";
import { choiceFlag, numberFlag, parseFlags, runMain, runtimeName } from "../src/cli/args.ts";
import { promptFor } from "../src/data/chatml.ts";
import { generateClassificationRecords, ISSUE_LABELS } from "../src/data/synth.ts";
import { tinyModel } from "../src/demo/tiny.ts";
import { classify, classifyBatch, commonPrefixLength, scoreLabelsNotebook } from "../src/eval/classify.ts";
import { parseConfig } from "../src/model/config.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import type { Tokenizer } from "../src/tokenizer/types.ts";

/** What {@link benchClassifier} measures. */
export interface ClassifierResult {
  shape: "tiny" | "gpt2";
  params: number;
  examples: number;
  labels: number;
  prompt_tokens: number;
  shared_prefix_tokens: number;
  notebook_ms_per_example: number;
  ours_ms_per_example: number;
  batched_ms_per_example: number;
  speedup: number;
  speedup_batched: number;
  same_predictions: number;
}

/**
 * The model the evaluation benchmarks run: the demo's tiny model (trained on 500 records, with its tokenizer),
 * or random weights of the real GPT-2 shape (vocab 21191, 12 layers, C 768) with that same tokenizer.
 */
export async function benchModel(
  be: Backend,
  shape: "tiny" | "gpt2",
): Promise<{ model: GPT2; tokenizer: Tokenizer }> {
  const tiny = await tinyModel(be, {
    configPath: fileURLToPath(new URL("../data/tiny_config.json", import.meta.url)),
    records: generateClassificationRecords(500, 42),
  });
  if (shape === "tiny") return tiny;
  tiny.model.dispose();
  const config = parseConfig({
    model_type: "gpt2",
    vocab_size: 21191,
    n_positions: 1024,
    n_embd: 768,
    n_layer: 12,
    n_head: 12,
    activation_function: "gelu_new",
  }, { file: "bench config (gpt2 shape)" });
  return { model: GPT2.random(be, config, 1), tokenizer: tiny.tokenizer };
}

/** Time the notebook's classifier against ours on `be`: `n` test prompts (seed 44) × the six labels. */
export async function benchClassifier(
  be: Backend,
  opts: { n: number; shape: "tiny" | "gpt2"; log?: (s: string) => void },
): Promise<ClassifierResult> {
  const { n, shape } = opts;
  const records = generateClassificationRecords(n, 44);
  const { model, tokenizer } = await benchModel(be, shape);
  try {
    const labels = ISSUE_LABELS.map((l) => ({ label: l, ids: tokenizer.encode(l, { addSpecialTokens: false }).ids }));
    const prompts = records.map((r) => tokenizer.encode(promptFor(r.instruction), { addSpecialTokens: false }).ids);
    await classify(model, prompts[0]!, labels); // warm up (pipelines, caches)
    let t = performance.now();
    const ours: string[] = [];
    for (const p of prompts) ours.push((await classify(model, p, labels)).label);
    const oursMs = performance.now() - t;
    t = performance.now();
    const batched = (await classifyBatch(model, prompts, labels)).map((r) => r.label);
    const batchedMs = performance.now() - t;
    t = performance.now();
    let agree = 0;
    for (const [i, p] of prompts.entries()) {
      const s = await scoreLabelsNotebook(model, p, labels.map((l) => l.ids));
      const best = s.indexOf(Math.max(...s));
      if (labels[best]!.label === ours[i] && ours[i] === batched[i]) agree++;
    }
    const notebookMs = performance.now() - t;
    const result: ClassifierResult = {
      shape,
      params: model.numParams,
      examples: n,
      labels: labels.length,
      prompt_tokens: Math.round(prompts.reduce((a, p) => a + p.length, 0) / n),
      shared_prefix_tokens: n > 1 ? commonPrefixLength(prompts) : 0,
      notebook_ms_per_example: notebookMs / n,
      ours_ms_per_example: oursMs / n,
      batched_ms_per_example: batchedMs / n,
      speedup: notebookMs / oursMs,
      speedup_batched: notebookMs / batchedMs,
      same_predictions: agree,
    };
    opts.log?.(
      `label classifier, ${n} examples × ${labels.length} labels, ${shape} model ` +
        `(${(result.params / 1e6).toFixed(1)} M parameters; prompts ${result.prompt_tokens} tokens on average, ` +
        `${result.shared_prefix_tokens} shared):\n` +
        `  notebook (one forward per label): ${result.notebook_ms_per_example.toFixed(2)} ms/example\n` +
        `  shared prompt pass + KV cache:    ${result.ours_ms_per_example.toFixed(2)} ms/example ` +
        `(${result.speedup.toFixed(2)}×)\n` +
        `  … prefix once, examples batched:  ${result.batched_ms_per_example.toFixed(2)} ms/example ` +
        `(${result.speedup_batched.toFixed(2)}×)\n` +
        `  the same prediction all three ways on ${agree}/${n}`,
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
      shape: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    console.log(
      "usage: bench/classify.ts [--backend auto|cpu|webgpu] [--n 100] [--shape tiny|gpt2] [--json]\n" +
        "The label classifier the notebook's way (one forward per label) against ours (shared prefix, KV cache,\n" +
        "batched), on --n test prompts × 6 labels; --shape gpt2: random weights of the real model's shape.",
    );
    return 0;
  }
  const n = numberFlag("n", v.n, 100, { integer: true, min: 1 });
  const shape = choiceFlag("shape", v.shape, ["tiny", "gpt2"] as const, "tiny");
  return await runOnBackend(
    "bench/classify",
    v.backend,
    v.json!,
    (be, log) => benchClassifier(be, { n, shape, log }),
    (r) => r.same_predictions === n,
  );
}

/**
 * The rest of an evaluation bench script's `main` once its flags are read: `measure` on a fresh backend
 * (`--backend`), after a header line naming it; with `json` the result as one JSON line last. Exits 0 when
 * `ok(result)` (every prompt answered the same both ways), else 1.
 */
export async function runOnBackend<R extends object>(
  tool: string,
  backendFlag: string | undefined,
  json: boolean,
  measure: (be: Backend, log: (s: string) => void) => Promise<R>,
  ok: (result: R) => boolean,
): Promise<number> {
  const be = await createBackend(parseBackendName(backendFlag), backendSettings());
  try {
    console.log(`${tool}: ${be.name} (${be.description}), ${runtimeName()}`);
    const result = await measure(be, (s) => console.log(s));
    const report = await profileReport(be); // GPT2_SFT_PROFILE=1: where the time went
    if (report) console.log(report);
    if (json) {
      console.log(JSON.stringify({ backend: be.name, device: be.description, runtime: runtimeName(), ...result }));
    }
    return ok(result) ? 0 : 1;
  } finally {
    be.dispose();
  }
}

if (import.meta.main) runMain("bench/classify", main);
