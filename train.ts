/**
 * `deno task train`: the notebook's SFT training run (Part 5) with its defaults. See `--help`.
 * @module
 */

import { parseArgs } from "node:util";
import { createBackend, parseBackendName } from "./src/backend/mod.ts";
import { choiceFlag, numberFlag, runMain } from "./src/cli/args.ts";
import { MASK_MODES } from "./src/data/sft_dataset.ts";
import { DEFAULT_MODEL } from "./src/io/hub.ts";
import { loadModelAndTokenizer } from "./src/model/load.ts";
import { runTraining, TASKS } from "./src/train/run.ts";
import { NOTEBOOK_TRAIN_CONFIG, type TrainConfig } from "./src/train/trainer.ts";

const HELP = `Usage: deno task train [options]

Fine-tunes GPT-2 on the notebook's SFT data (generated into --data-dir when missing), masking the loss to
the assistant's tokens, and saves an HF model directory. Defaults are the notebook's.

Model and data
  --model ID|DIR        hub id, id@revision or local dir (default ${DEFAULT_MODEL})
  --task NAME           classification | json_extraction (default classification)
  --plain               json_extraction: answer "姓名：…；邮箱：…；订单号：…" instead of JSON
  --data-dir DIR        JSONL files (default data)
  --limit-train N       use the first N training records (default all)
  --limit-val N         use the first N validation records (default all)
  --mask MODE           assistant | assistant+eos | none (default assistant+eos: the assistant's answer and
                        the <|im_end|> that closes it, so the model learns to stop; the notebook: assistant)
  --max-length N        truncate examples to N tokens (default 256)
  --pad MODE            longest | max_length (default longest; the notebook pads every row to 256)

Optimisation (torch.optim.AdamW, LinearLR warmup from 0.1, clip_grad_norm_)
  --batch-size N        (default 4)        --epochs N          (default 3)
  --max-steps N         (default 1000)     --lr X              (default 5e-5)
  --warmup-steps N      (default 50)       --weight-decay X    (default 0.01)
  --grad-clip X         (default 1.0)      --seed N            (data order, default 42)

Run
  --backend NAME        auto | cpu | webgpu (default auto: WebGPU on a hardware adapter, else CPU)
  --out DIR             the saved model (default models/ch8_sft_gpt2)
  --run-dir DIR         metrics.jsonl, loss_curve.png/.svg, checkpoint/ (default runs/ch8_sft_gpt2)
  --log-every N         log every N steps (default 20)
  --checkpoint-every N  checkpoint every N steps (default 200; also at the end and on Ctrl-C)
  --resume              continue from the checkpoint in --run-dir (weights, optimizer, step, data order)
  --offline             use only the local Hugging Face cache (as HF_HUB_OFFLINE=1)
  --quiet               no progress bar or step lines
  -h, --help            this text
`;

async function main(): Promise<number> {
  const { values: v } = parseArgs({
    options: {
      model: { type: "string", default: DEFAULT_MODEL },
      task: { type: "string" },
      plain: { type: "boolean", default: false },
      "data-dir": { type: "string", default: "data" },
      "limit-train": { type: "string" },
      "limit-val": { type: "string" },
      mask: { type: "string" },
      "max-length": { type: "string" },
      pad: { type: "string" },
      "batch-size": { type: "string" },
      epochs: { type: "string" },
      "max-steps": { type: "string" },
      lr: { type: "string" },
      "warmup-steps": { type: "string" },
      "weight-decay": { type: "string" },
      "grad-clip": { type: "string" },
      seed: { type: "string" },
      backend: { type: "string" },
      out: { type: "string", default: "models/ch8_sft_gpt2" },
      "run-dir": { type: "string", default: "runs/ch8_sft_gpt2" },
      "log-every": { type: "string" },
      "checkpoint-every": { type: "string" },
      resume: { type: "boolean", default: false },
      offline: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  const d = NOTEBOOK_TRAIN_CONFIG;
  const int = { integer: true, min: 1 };
  // every flag is checked before anything is loaded
  const config: TrainConfig = {
    batchSize: numberFlag("batch-size", v["batch-size"], d.batchSize, int),
    epochs: numberFlag("epochs", v.epochs, d.epochs, int),
    maxSteps: numberFlag("max-steps", v["max-steps"], d.maxSteps, int),
    lr: numberFlag("lr", v.lr, d.lr, { min: 0 }),
    warmupSteps: numberFlag("warmup-steps", v["warmup-steps"], d.warmupSteps, { integer: true, min: 0 }),
    warmupStartFactor: d.warmupStartFactor,
    weightDecay: numberFlag("weight-decay", v["weight-decay"], d.weightDecay, { min: 0 }),
    maxGradNorm: numberFlag("grad-clip", v["grad-clip"], d.maxGradNorm, { min: 0 }),
    logEvery: numberFlag("log-every", v["log-every"], d.logEvery, int),
    seed: numberFlag("seed", v.seed, d.seed, { integer: true, min: 0 }),
    pad: choiceFlag("pad", v.pad, ["longest", "max_length"] as const, d.pad),
    maxLength: numberFlag("max-length", v["max-length"], d.maxLength, int),
  };
  const task = choiceFlag("task", v.task, TASKS, "classification");
  const mask = choiceFlag("mask", v.mask, MASK_MODES, "assistant+eos");
  const limitTrain = v["limit-train"] ? numberFlag("limit-train", v["limit-train"], 0, int) : undefined;
  const limitVal = v["limit-val"] ? numberFlag("limit-val", v["limit-val"], 0, { integer: true, min: 0 }) : undefined;
  const checkpointEvery = numberFlag("checkpoint-every", v["checkpoint-every"], 200, { integer: true, min: 0 });
  const be = await createBackend(parseBackendName(v.backend));
  console.log(`Using backend: ${be.description}`);
  try {
    console.log(`Loading ${v.model}...`);
    const { model, tokenizer, added } = await loadModelAndTokenizer(v.model!, be, {
      hub: { offline: v.offline || undefined },
    });
    console.log(`Added ${added} total tokens (special + ASCII)`);
    console.log(`Vocabulary size: ${tokenizer.vocabSize}`);
    console.log(`Model parameters: ${model.numParams.toLocaleString("en-US")}`);
    const r = await runTraining({
      model,
      tokenizer,
      modelName: v.model!,
      task,
      plain: v.plain,
      dataDir: v["data-dir"]!,
      limitTrain,
      limitVal,
      mask,
      config,
      outDir: v.out!,
      runDir: v["run-dir"]!,
      resume: v.resume,
      checkpointEvery,
      quiet: v.quiet,
    });
    return r.stoppedBy === "interrupt" ? 130 : 0;
  } finally {
    be.dispose();
  }
}

runMain("train", main);
