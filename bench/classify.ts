/**
 * The label classifier, two ways on the same backend: the notebook's `_lm_classify` (one full forward of
 * prompt + label per label) and ours (`src/eval/classify.ts`: the prompt once into a KV cache, then every
 * label continues from it). Same scores, far less work.
 *
 * Usage: deno run -A bench/classify.ts [--backend auto|cpu|webgpu] [--n 100] [--json]
 * @module
 */

import { parseArgs } from "node:util";
import { createBackend, parseBackendName } from "../src/backend/mod.ts";
import { numberFlag, runMain, runtimeName } from "../src/cli/args.ts";
import { promptFor } from "../src/data/chatml.ts";
import { generateClassificationRecords, ISSUE_LABELS } from "../src/data/synth.ts";
import { tinyModel } from "../src/demo/tiny.ts";
import { classify, classifyBatch, scoreLabelsNotebook } from "../src/eval/classify.ts";

async function main(): Promise<number> {
  const { values: v } = parseArgs({
    options: { backend: { type: "string" }, n: { type: "string" }, json: { type: "boolean", default: false } },
  });
  const n = numberFlag("n", v.n, 100, { integer: true, min: 1 });
  const be = await createBackend(parseBackendName(v.backend));
  const records = generateClassificationRecords(n, 44);
  const { model, tokenizer } = await tinyModel(be, {
    configPath: new URL("../data/tiny_config.json", import.meta.url).pathname,
    records: generateClassificationRecords(500, 42),
  });
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
  const result = {
    backend: be.name,
    device: be.description,
    runtime: runtimeName(),
    examples: n,
    labels: labels.length,
    prompt_tokens: Math.round(prompts.reduce((a, p) => a + p.length, 0) / n),
    notebook_ms_per_example: notebookMs / n,
    ours_ms_per_example: oursMs / n,
    batched_ms_per_example: batchedMs / n,
    speedup: notebookMs / oursMs,
    speedup_batched: notebookMs / batchedMs,
    same_predictions: agree,
  };
  console.log(
    `label classifier, ${n} examples × ${labels.length} labels on ${be.description} (${result.runtime}):\n` +
      `  notebook (one forward per label): ${result.notebook_ms_per_example.toFixed(2)} ms/example\n` +
      `  shared prompt pass + KV cache:    ${result.ours_ms_per_example.toFixed(2)} ms/example ` +
      `(${result.speedup.toFixed(2)}×)\n` +
      `  … and examples batched:           ${result.batched_ms_per_example.toFixed(2)} ms/example ` +
      `(${result.speedup_batched.toFixed(2)}×)\n` +
      `  the same prediction all three ways on ${agree}/${n}`,
  );
  if (v.json) console.log(JSON.stringify(result));
  model.dispose();
  be.dispose();
  return agree === n ? 0 : 1;
}

runMain("bench/classify", main);
