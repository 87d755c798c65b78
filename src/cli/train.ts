/**
 * The training command line, shared by `train.ts` (`deno task train`) and `phases/05_train.ts`: every flag
 * is checked before anything is loaded, then the model is loaded, given the SFT tokens and trained with
 * `runTraining`.
 * @module
 */

import { parseArgs } from "node:util";
import { createBackend, parseBackendName, profileReport } from "../backend/mod.ts";
import { choiceFlag, ENV_HELP, listFlag, numberFlag } from "./args.ts";
import { MASK_MODES } from "../data/sft_dataset.ts";
import { DEFAULT_MODEL } from "../io/hub.ts";
import { loadModelAndTokenizer } from "../model/load.ts";
import { runTraining, TASKS } from "../train/run.ts";
import { NOTEBOOK_TRAIN_CONFIG, type TrainConfig } from "../train/trainer.ts";
import { LR_DECAYS } from "../train/schedule.ts";
import { tokenizerSanityLines } from "../tokenizer/sanity.ts";

export const TRAIN_HELP = `Usage: deno task train [options]   (also: deno run -A phases/05_train.ts)

The notebook's Part 5: fine-tunes GPT-2 on the SFT data (generated into --data-dir when missing) with the
loss masked to the assistant's tokens, and saves an HF model directory. The same run as deno task train;
the defaults are the notebook's.

Model and data
  --model ID|DIR        hub id, id@revision or local dir (default ${DEFAULT_MODEL})
  --task NAME           classification | json_extraction (default classification)
  --plain               json_extraction: answer "姓名：…；邮箱：…；订单号：…" instead of JSON
  --labels A,B,…        classification: the labels (default the notebook's six); for your own data in
                        --data-dir, saved in sft_task.json for eval
  --data-dir DIR        JSONL files (default data)
  --limit-train N       use the first N training records (default all)
  --limit-val N         use the first N validation records (default all)
  --mask MODE           assistant | assistant+eos | none (default assistant+eos, as deno task train: the
                        answer and its closing <|im_end|>, so the model learns to stop; the notebook: assistant)
  --max-length N        truncate examples to N tokens (default 256)
  --pad MODE            longest | max_length (default longest; the notebook pads every row to 256)

Optimisation (torch.optim.AdamW, LinearLR warmup from 0.1, clip_grad_norm_)
  --batch-size N        (default 4)        --epochs N          (default 3)
  --grad-accum N        batches summed per optimizer step (default 1): --batch-size 2 --grad-accum 2
                        computes the notebook's batch of 4 in the memory of 2 (the loss normalised over
                        the supervised tokens of all of them, so the same gradients up to rounding)
  --max-steps N         (default 1000)     --lr X              (default 5e-5)
  --warmup-steps N      (default 50)       --weight-decay X    (default 0.01)
  --lr-schedule NAME    after the warm-up: constant (default, the notebook) | linear | cosine (a decay to 0
                        at the last step, as transformers' get_linear/cosine_schedule_with_warmup)
  --grad-clip X         (default 1.0)      --seed N            (data order and dropout, default 42)
  --no-dropout          train without dropout (default: the config's rates, 0.1 for the base model, as the
                        notebook's model.train())

Run
  --backend NAME        auto | cpu | webgpu (default auto: WebGPU on a hardware adapter, else CPU)
  --out DIR             the saved model (default models/ch8_sft_gpt2, the notebook's SFT_SAVE_DIR)
  --run-dir DIR         metrics.jsonl, loss_curve.png/.svg, checkpoint/ (default runs/ch8_sft_gpt2)
  --log-every N         log every N steps (default 20)
  --checkpoint-every N  checkpoint every N steps (default 200; also at the end and on Ctrl-C)
  --eval-every N        also the validation loss every N steps, printed and on the loss curve (default 0: at
                        each epoch's end, as the notebook; with MAX_STEPS 1000 that is once, at step 1000)
  --resume              continue from the checkpoint in --run-dir
  --offline             use only the local Hugging Face cache (as HF_HUB_OFFLINE=1)
  --quiet               no progress bar or step lines
  -h, --help            this text

${ENV_HELP}`;

/**
 * Parse the training flags and run the training; `argv` as `process.argv.slice(2)`. Returns the exit code
 * (130 when interrupted). `deno task train` and phases/05_train.ts both call this.
 */
export async function trainMain(argv: string[], print: (line: string) => void = console.log): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      model: { type: "string", default: DEFAULT_MODEL },
      task: { type: "string" },
      plain: { type: "boolean", default: false },
      labels: { type: "string" },
      "data-dir": { type: "string", default: "data" },
      "limit-train": { type: "string" },
      "limit-val": { type: "string" },
      mask: { type: "string" },
      "max-length": { type: "string" },
      pad: { type: "string" },
      "batch-size": { type: "string" },
      "grad-accum": { type: "string" },
      epochs: { type: "string" },
      "max-steps": { type: "string" },
      lr: { type: "string" },
      "warmup-steps": { type: "string" },
      "lr-schedule": { type: "string" },
      "weight-decay": { type: "string" },
      "grad-clip": { type: "string" },
      seed: { type: "string" },
      "no-dropout": { type: "boolean", default: false },
      backend: { type: "string" },
      out: { type: "string", default: "models/ch8_sft_gpt2" },
      "run-dir": { type: "string", default: "runs/ch8_sft_gpt2" },
      "log-every": { type: "string" },
      "checkpoint-every": { type: "string" },
      "eval-every": { type: "string" },
      resume: { type: "boolean", default: false },
      offline: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    print(TRAIN_HELP);
    return 0;
  }
  const d = NOTEBOOK_TRAIN_CONFIG;
  const int = { integer: true, min: 1 };
  // every flag is checked before anything is loaded
  const config: TrainConfig = {
    batchSize: numberFlag("batch-size", v["batch-size"], d.batchSize, int),
    gradAccum: numberFlag("grad-accum", v["grad-accum"], 1, int),
    epochs: numberFlag("epochs", v.epochs, d.epochs, int),
    maxSteps: numberFlag("max-steps", v["max-steps"], d.maxSteps, int),
    lr: numberFlag("lr", v.lr, d.lr, { min: 0 }),
    warmupSteps: numberFlag("warmup-steps", v["warmup-steps"], d.warmupSteps, { integer: true, min: 0 }),
    warmupStartFactor: d.warmupStartFactor,
    lrDecay: choiceFlag("lr-schedule", v["lr-schedule"], LR_DECAYS, "constant"),
    weightDecay: numberFlag("weight-decay", v["weight-decay"], d.weightDecay, { min: 0 }),
    maxGradNorm: numberFlag("grad-clip", v["grad-clip"], d.maxGradNorm, { min: 0 }),
    logEvery: numberFlag("log-every", v["log-every"], d.logEvery, int),
    seed: numberFlag("seed", v.seed, d.seed, { integer: true, min: 0 }),
    pad: choiceFlag("pad", v.pad, ["longest", "max_length"] as const, d.pad),
    maxLength: numberFlag("max-length", v["max-length"], d.maxLength, int),
    dropout: !v["no-dropout"],
  };
  const task = choiceFlag("task", v.task, TASKS, "classification");
  const mask = choiceFlag("mask", v.mask, MASK_MODES, "assistant+eos");
  const labels = listFlag("labels", v.labels);
  if (labels && task !== "classification") throw new Error(`Invalid --labels: only the classification task has labels`);
  const limitTrain = v["limit-train"] ? numberFlag("limit-train", v["limit-train"], 0, int) : undefined;
  const limitVal = v["limit-val"] ? numberFlag("limit-val", v["limit-val"], 0, { integer: true, min: 0 }) : undefined;
  const checkpointEvery = numberFlag("checkpoint-every", v["checkpoint-every"], 200, { integer: true, min: 0 });
  const evalEvery = numberFlag("eval-every", v["eval-every"], 0, { integer: true, min: 0 });

  const be = await createBackend(parseBackendName(v.backend));
  print(`Using device: ${be.description}`);
  try {
    print("Adding special tokens...");
    const { model, tokenizer, added } = await loadModelAndTokenizer(v.model!, be, {
      hub: { offline: v.offline || undefined },
    });
    try {
      print(`Added ${added} total tokens (special + ASCII)`);
      for (const line of tokenizerSanityLines(tokenizer)) print(line);
      print(`Vocabulary size: ${tokenizer.vocabSize}`);
      print(`Model parameters: ${model.numParams.toLocaleString("en-US")}`);
      print("Creating SFT dataset...");
      if (mask === "none") {
        print(
          "Warning: mask_prompt=False will train on user tokens; outputs may echo prompts and evaluation will be noisy.",
        );
      }
      const r = await runTraining({
        model,
        tokenizer,
        modelName: v.model!,
        task,
        plain: task === "json_extraction" && v.plain,
        labels,
        dataDir: v["data-dir"]!,
        limitTrain,
        limitVal,
        mask,
        config,
        outDir: v.out!,
        runDir: v["run-dir"]!,
        resume: v.resume,
        checkpointEvery,
        evalEvery,
        quiet: v.quiet,
        print,
      });
      const profile = await profileReport(be);
      if (profile) print(profile);
      return r.stoppedBy === "interrupt" ? 130 : 0;
    } finally {
      model.dispose();
    }
  } finally {
    be.dispose();
  }
}
