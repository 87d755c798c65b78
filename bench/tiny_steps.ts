/**
 * Per-step times of the demo's tiny model training (the time-to-accuracy setting: 2000 records, batch 16,
 * per-batch padding, lr 3e-3, 20 warm-up steps), without evaluation: the quickest way to see whether a change
 * to the CPU backend made a step faster. Prints the median, min and 90th percentile of the step times after
 * the first 10 (JIT, pools), and the first 40 of those, so that a slow spell of a loaded machine shows.
 *
 * Usage: deno run -A bench/tiny_steps.ts [--steps 80] [--backend cpu] [--json]
 *        bun bench/tiny_steps.ts …the same flags…
 * Alternate it with the code it is compared with (a `git worktree` of the old commit): on a loaded VM one
 * run's median can move by 30 % from the next's.
 * @module
 */

import { fileURLToPath } from "node:url";
import process from "node:process";
import { createBackend, parseBackendName } from "../src/backend/mod.ts";
import { backendSettings } from "../src/env.ts";
import { numberFlag, parseFlags, runMain, runtimeName } from "../src/cli/args.ts";
import { buildSftDataset } from "../src/data/sft_dataset.ts";
import { generateClassificationRecords, SPLIT_SEEDS, toMessages } from "../src/data/synth.ts";
import { DEMO_TRAIN, tinyModel } from "../src/demo/tiny.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import { NOTEBOOK_TRAIN_CONFIG, trainLoop } from "../src/train/trainer.ts";

/** Run the tool; `argv` as `process.argv.slice(2)`. Returns the exit code. */
export async function tinyStepsMain(argv: string[], print: (line: string) => void = console.log): Promise<number> {
  const { values: v } = parseFlags({
    args: argv,
    options: {
      steps: { type: "string" },
      backend: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    print("usage: bench/tiny_steps.ts [--steps 80] [--backend auto|cpu|webgpu] [--json]");
    return 0;
  }
  const steps = numberFlag("steps", v.steps, 80, { integer: true, min: 12 });
  const be = await createBackend(parseBackendName(v.backend ?? "cpu"), backendSettings());
  try {
    const records = generateClassificationRecords(DEMO_TRAIN.trainRecords, SPLIT_SEEDS.train);
    const tiny = await tinyModel(be, {
      configPath: fileURLToPath(new URL("../data/tiny_config.json", import.meta.url)),
      records,
      seed: 0,
    });
    // the notebook's max length, as time_to_accuracy.ts
    const config = { ...tiny.model.config, nPositions: Math.max(tiny.model.config.nPositions, 256) };
    tiny.model.dispose();
    const model = GPT2.random(be, config, 0);
    const train = buildSftDataset(records.map((r) => toMessages(r)), tiny.tokenizer, {
      maxLength: 256,
      mask: "assistant+eos",
    }).examples;
    const times: number[] = [];
    let last = performance.now();
    const result = await trainLoop({
      model,
      train,
      padId: tiny.tokenizer.padTokenId,
      config: {
        ...NOTEBOOK_TRAIN_CONFIG,
        batchSize: DEMO_TRAIN.batchSize,
        lr: DEMO_TRAIN.lr,
        warmupSteps: DEMO_TRAIN.warmupSteps,
        maxSteps: steps,
        epochs: Math.ceil(steps / Math.ceil(train.length / DEMO_TRAIN.batchSize)),
        logEvery: 1, // onStep after every step (it reads the loss back: the step is finished)
        pad: "longest",
        seed: 0,
        maxLength: 256,
      },
      onStep: () => {
        const t = performance.now();
        times.push(t - last);
        last = t;
      },
    });
    result.optimizer.dispose();
    model.dispose();
    const timed = times.slice(10);
    const sorted = [...timed].sort((a, b) => a - b);
    const q = (f: number) => sorted[Math.min(sorted.length - 1, Math.floor(f * sorted.length))]!;
    const summary = { median_ms: q(0.5), min_ms: sorted[0]!, p90_ms: q(0.9), max_ms: sorted.at(-1)! };
    print(`${be.description} (${runtimeName()})`);
    print(
      `${timed.length} timed steps: median ${summary.median_ms.toFixed(1)} ms, min ${summary.min_ms.toFixed(1)}, ` +
        `p90 ${summary.p90_ms.toFixed(1)}, max ${summary.max_ms.toFixed(1)}`,
    );
    const shown = timed.slice(0, 40);
    print(`first ${shown.length}: ${shown.map((t) => t.toFixed(0)).join(" ")}`);
    if (v.json) {
      print(
        JSON.stringify({
          tool: "tiny_steps",
          runtime: runtimeName(),
          device: be.description,
          ...summary,
          steps_ms: timed,
        }),
      );
    }
    return 0;
  } finally {
    be.dispose();
  }
}

if (import.meta.main) runMain("tiny_steps", () => tinyStepsMain(process.argv.slice(2)));
