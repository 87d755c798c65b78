/**
 * Phase 5 of the notebook, "Part 5：使用 GPT-2 进行真实 SFT 训练": add the SFT tokens, resize the
 * embeddings, build the masked dataset and fine-tune with the notebook's configuration (AdamW 5e-5,
 * batch 4, 3 epochs, at most 1000 steps, LinearLR warmup over 50 steps, clip 1.0), then save the model.
 * The work is `runTraining` (src/train/run.ts), as `deno task train` does; the flags are train.ts's.
 * Run: `deno run -A phases/05_train.ts [--model DIR] [--backend webgpu] [--max-steps N]`.
 * @module
 */

import process from "node:process";
import { runMain } from "../src/cli/args.ts";
import { trainMain } from "../src/cli/train.ts";

/** Run the phase; `argv` as `process.argv.slice(2)`. Returns the exit code (130 when interrupted). */
export function main(argv: string[], print: (line: string) => void = console.log): Promise<number> {
  if (!argv.includes("--help") && !argv.includes("-h")) {
    print("## Part 5：使用 GPT-2 进行真实 SFT 训练\n");
    print("现在开始实际对 GPT-2 做微调！\n");
  }
  return trainMain(argv, print);
}

if (import.meta.main) runMain("phases/05_train", () => main(process.argv.slice(2)));
