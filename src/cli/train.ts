/**
 * The training command line, shared by `train.ts` (`deno task train`) and `phases/05_train.ts`: every flag
 * is checked before anything is loaded, then the model is loaded, given the SFT tokens and trained with
 * `runTraining`.
 * @module
 */

import { join } from "node:path";
import { createBackend, parseBackendName, profileReport } from "../backend/mod.ts";
import { choiceFlag, ENV_HELP, listFlag, numberFlag, parseFlags, SEED_RANGE } from "./args.ts";
import { DATA_FORMATS } from "../data/formats.ts";
import { TRAIN_ON } from "../data/chatml.ts";
import { MASK_MODES } from "../data/sft_dataset.ts";
import {
  CHAT_TEMPLATE_CHOICES,
  CHATML_TEMPLATE,
  readModelChatTemplate,
  resolveChatTemplate,
} from "../data/template.ts";
import { isFile } from "../io/atomic.ts";
import { DEFAULT_MODEL } from "../io/hub.ts";
import { readSettings } from "../env.ts";
import { loadModelAndTokenizer } from "../model/load.ts";
import { noCheckpointError, runTraining, TASKS, type TrainRunOptions } from "../train/run.ts";
import { findCheckpoint, readTrainerState, type TrainerState } from "../train/checkpoint.ts";
import type { RunSettings } from "../train/run_settings.ts";
import { NOTEBOOK_TRAIN_CONFIG, type TrainConfig } from "../train/trainer.ts";
import { LR_DECAYS } from "../train/schedule.ts";
import { tokenizerSanityLines } from "../tokenizer/sanity.ts";
import { DEFAULT_LORA, LORA_TARGETS, type LoraSettings, loraSpecOf } from "../model/lora.ts";

export const TRAIN_HELP = `Usage: deno task train [options]   (also: deno run -A phases/05_train.ts)

The notebook's Part 5: fine-tunes GPT-2 on the SFT data (generated into --data-dir when missing) with the
loss masked to the assistant's tokens, and saves an HF model directory. The same run as deno task train;
the defaults are the notebook's.

Model and data
  --model ID|DIR        hub id, id@revision or local dir (default ${DEFAULT_MODEL})
  --train-file F.jsonl  your own chat data in place of the notebook's task: messages ({"messages": [{"role",
                        "content", "weight"}]}), ShareGPT ({"conversations": [{"from", "value"}]}),
                        prompt/completion, {"text"} (every token trained) or instruction/response
  --val-file V.jsonl    validation data for --train-file (any of the formats)
  --val-split X         or hold out this fraction of --train-file for validation (seeded by --seed; default 0)
  --format NAME         auto | messages | sharegpt | prompt-completion | text | notebook (default auto: from
                        the first record's keys)
  --train-on WHICH      all | last: the assistant turns with loss (default all, as TRL's assistant_only_loss)
  --chat-template T     how --train-file's conversations become text: chatml (default, the notebook's
                        <|im_start|>{role}\n{content}<|im_end|>\n) | model (the chat_template of the model's
                        tokenizer_config.json) | FILE.jinja; the loss is on the {% generation %} blocks where
                        the template has them, else on what each assistant turn adds; the saved model's
                        tokenizer_config.json carries the template (a resumed run keeps the
                        checkpoint's, and refuses another)
  --task NAME           the notebook's presets: classification | json_extraction (default classification)
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
  --packing             pack several examples into each row of --max-length tokens (best-fit decreasing),
                        each attending only to itself, positions from 0 in each: less padding, the same
                        loss per example; batches then count rows (default off)

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
  --gradient-checkpointing
                        recompute each block's activations in the backward pass instead of keeping them: the
                        same gradients in less memory, about a third more compute (default off)
  --no-dropout          train without dropout (default: the config's rates, 0.1 for the base model, as the
                        notebook's model.train())

LoRA (peft's adapters: the base frozen, only the adapters and the added tokens' embedding rows train)
  --lora                train a LoRA adapter instead of every weight; --out gets peft's adapter_config.json and
                        adapter_model.safetensors (PeftModel.from_pretrained loads it) with the SFT tokenizer
  --lora-r N            the rank (default ${DEFAULT_LORA.r})     --lora-alpha X   the scale's alpha (default ${DEFAULT_LORA.alpha}: s = alpha/r)
  --lora-dropout X      dropout on the adapters' inputs (default ${DEFAULT_LORA.dropout})
  --lora-targets LIST   GPT-2's Conv1D modules, as peft names them: c_attn,c_proj,c_fc (default all three;
                        c_proj is both attn.c_proj and mlp.c_proj)
  --lora-rslora         rank-stabilised scale alpha/√r (peft's use_rslora)
  --lora-train-tokens W added | all | none: train the embedding rows of the tokens added for SFT
                        (<|im_start|>, <|im_end|>, …: peft's trainable_token_indices; default added), of
                        every token (the whole embedding and tied head), or none
  --merge               also save the full model with the adapter merged (an HF model directory) in --merge-out
  --merge-out DIR       where --merge saves it (default: --out with -merged appended)

Run
  --backend NAME        auto | cpu | webgpu (default auto: WebGPU on a hardware adapter, else CPU)
  --out DIR             the saved model (default models/ch8_sft_gpt2, the notebook's SFT_SAVE_DIR)
  --run-dir DIR         metrics.jsonl, loss_curve.png/.svg, checkpoint/ (default runs/ch8_sft_gpt2)
  --log-every N         log every N steps (default 20)
  --checkpoint-every N  checkpoint every N steps (default 200; also at the end and on Ctrl-C)
  --eval-every N        also the validation loss every N steps, printed and on the loss curve (default 0: at
                        each epoch's end, as the notebook; with MAX_STEPS 1000 that is once, at step 1000)
  --resume              continue the run whose checkpoint is in --run-dir: every flag left out is taken from
                        the checkpoint (model, data, task, lr, …, --out); only --max-steps, --epochs,
                        --log-every, --checkpoint-every, --eval-every, --backend and --quiet may change
                        (a larger --max-steps trains on, exactly as one longer run would)
  --overwrite           start a new run in a --run-dir that holds a checkpoint, deleting it
  --offline             use only the local Hugging Face cache (as HF_HUB_OFFLINE=1)
  --quiet               no progress bar or step lines
  -h, --help            this text

${ENV_HELP}`;

/**
 * The LoRA settings of `--lora` and its flags (a resumed LoRA run's are the checkpoint's, `was`); none without
 * `--lora` (its flags alone are an error).
 */
function loraFlags(
  v: Record<string, string | boolean | undefined>,
  was: LoraSettings | undefined,
): { lora?: LoraSettings } {
  const names = ["lora-r", "lora-alpha", "lora-dropout", "lora-targets", "lora-rslora", "lora-train-tokens"];
  if (!v.lora && !was) {
    const given = names.find((n) => v[n] !== undefined);
    if (given) throw new Error(`Invalid --${given} without --lora`);
    return {};
  }
  const d = was ?? DEFAULT_LORA;
  const str = (n: string) => v[n] as string | undefined;
  const targets = listFlag("lora-targets", str("lora-targets")) ?? [...d.targets];
  for (const t of targets) {
    if (!(LORA_TARGETS as readonly string[]).includes(t)) {
      throw new Error(`Invalid --lora-targets: "${t}" (GPT-2's Conv1D modules are ${LORA_TARGETS.join(", ")})`);
    }
  }
  return {
    lora: {
      r: numberFlag("lora-r", str("lora-r"), d.r, { integer: true, min: 1 }),
      alpha: numberFlag("lora-alpha", str("lora-alpha"), d.alpha, { min: 0 }),
      dropout: numberFlag("lora-dropout", str("lora-dropout"), d.dropout, { min: 0, max: 0.99 }),
      targets,
      rslora: (v["lora-rslora"] as boolean | undefined) ?? d.rslora,
      trainTokens: choiceFlag(
        "lora-train-tokens",
        str("lora-train-tokens"),
        ["added", "all", "none"] as const,
        d.trainTokens,
      ),
    },
  };
}

/**
 * Parse the training flags and run the training; `argv` as `process.argv.slice(2)`. Returns the exit code
 * (130 when interrupted). `deno task train` and phases/05_train.ts both call this; `hooks` are for tests
 * (a checkpoint file system that is slow or fails).
 */
export async function trainMain(
  argv: string[],
  print: (line: string) => void = console.log,
  hooks: Pick<TrainRunOptions, "checkpointFs"> = {},
): Promise<number> {
  const { values: v } = parseFlags({
    args: argv,
    options: {
      model: { type: "string" },
      "train-file": { type: "string" },
      "val-file": { type: "string" },
      "val-split": { type: "string" },
      format: { type: "string" },
      "train-on": { type: "string" },
      "chat-template": { type: "string" },
      task: { type: "string" },
      plain: { type: "boolean" },
      labels: { type: "string" },
      "data-dir": { type: "string" },
      "limit-train": { type: "string" },
      "limit-val": { type: "string" },
      mask: { type: "string" },
      "max-length": { type: "string" },
      pad: { type: "string" },
      packing: { type: "boolean" },
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
      "no-dropout": { type: "boolean" },
      "gradient-checkpointing": { type: "boolean" },
      lora: { type: "boolean" },
      "lora-r": { type: "string" },
      "lora-alpha": { type: "string" },
      "lora-dropout": { type: "string" },
      "lora-targets": { type: "string" },
      "lora-rslora": { type: "boolean" },
      "lora-train-tokens": { type: "string" },
      merge: { type: "boolean", default: false },
      "merge-out": { type: "string" },
      backend: { type: "string" },
      out: { type: "string" },
      "run-dir": { type: "string", default: "runs/ch8_sft_gpt2" },
      "log-every": { type: "string" },
      "checkpoint-every": { type: "string" },
      "eval-every": { type: "string" },
      resume: { type: "boolean", default: false },
      overwrite: { type: "boolean", default: false },
      offline: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    print(TRAIN_HELP);
    return 0;
  }
  if (v.resume && v.overwrite) throw new Error("Invalid --overwrite with --resume: choose one");
  // --resume: the checkpoint is found (and its settings read) before anything is loaded; its settings are
  // the defaults of every flag left out, so `--resume --run-dir R` alone continues the run
  const runDir = v["run-dir"]!;
  let saved: { dir: string; state: TrainerState } | undefined;
  if (v.resume) {
    const dir = await findCheckpoint(join(runDir, "checkpoint"));
    if (!dir) throw await noCheckpointError(join(runDir, "checkpoint"));
    saved = { dir, state: await readTrainerState(dir) };
  }
  const was: Partial<TrainConfig> = saved?.state.config ?? {};
  const wasRun = (saved?.state.run ?? {}) as Partial<RunSettings>;
  const d: TrainConfig = { ...NOTEBOOK_TRAIN_CONFIG, ...was };
  const givenStr = (name: string, savedValue: unknown): string | undefined =>
    v[name as keyof typeof v] as string | undefined ??
      (savedValue === undefined || savedValue === null ? undefined : String(savedValue));
  const int = { integer: true, min: 1 };
  // every flag is checked before anything is loaded
  const config: TrainConfig = {
    batchSize: numberFlag("batch-size", v["batch-size"], d.batchSize, int),
    gradAccum: numberFlag("grad-accum", v["grad-accum"], was.gradAccum ?? 1, int),
    epochs: numberFlag("epochs", v.epochs, d.epochs, int),
    maxSteps: numberFlag("max-steps", v["max-steps"], d.maxSteps, int),
    lr: numberFlag("lr", v.lr, d.lr, { min: 0 }),
    warmupSteps: numberFlag("warmup-steps", v["warmup-steps"], d.warmupSteps, { integer: true, min: 0 }),
    warmupStartFactor: d.warmupStartFactor,
    lrDecay: choiceFlag("lr-schedule", v["lr-schedule"], LR_DECAYS, d.lrDecay ?? "constant"),
    weightDecay: numberFlag("weight-decay", v["weight-decay"], d.weightDecay, { min: 0 }),
    maxGradNorm: numberFlag("grad-clip", v["grad-clip"], d.maxGradNorm, { min: 0 }),
    logEvery: numberFlag("log-every", v["log-every"], d.logEvery, int),
    seed: numberFlag("seed", v.seed, d.seed, SEED_RANGE),
    pad: choiceFlag("pad", v.pad, ["longest", "max_length"] as const, d.pad),
    maxLength: numberFlag("max-length", v["max-length"], d.maxLength, int),
    dropout: v["no-dropout"] === undefined ? d.dropout : !v["no-dropout"],
    gradientCheckpointing: v["gradient-checkpointing"] ?? d.gradientCheckpointing ?? false,
    packing: v.packing ?? d.packing ?? false,
    ...loraFlags(v, was.lora),
  };
  // your own chat data (--train-file), or the notebook's task presets
  const wasChat = wasRun.task === "chat";
  const trainFile = v["train-file"] ?? (wasChat ? wasRun.dataFiles?.train.path : undefined);
  let chat: TrainRunOptions["chat"];
  if (trainFile !== undefined) {
    for (const f of ["task", "labels", "plain"] as const) {
      if (v[f] !== undefined) {
        throw new Error(`Invalid --${f} with --train-file: --${f} belongs to the notebook's task presets`);
      }
    }
    const valSplit = numberFlag("val-split", givenStr("val-split", wasRun.valSplit), 0, { min: 0, max: 0.99 });
    const valFile = v["val-file"] ?? (wasChat ? wasRun.dataFiles?.val?.path : undefined);
    if (valFile !== undefined && valSplit > 0) throw new Error("Invalid --val-split with --val-file: choose one");
    chat = {
      trainFile,
      ...(valFile !== undefined ? { valFile } : {}),
      valSplit,
      format: choiceFlag("format", givenStr("format", wasRun.format), DATA_FORMATS, "auto"),
      trainOn: choiceFlag("train-on", givenStr("train-on", wasRun.trainOn), TRAIN_ON, "all"),
    };
  } else {
    for (const f of ["val-file", "val-split", "format", "train-on", "chat-template"] as const) {
      if (v[f] !== undefined) throw new Error(`Invalid --${f}: it goes with --train-file (your own chat data)`);
    }
  }
  const chatTemplate = v["chat-template"];
  if (chatTemplate !== undefined && !(CHAT_TEMPLATE_CHOICES as readonly string[]).includes(chatTemplate)) {
    if (!await isFile(chatTemplate)) {
      throw new Error(`Invalid --chat-template ${chatTemplate}: no such file (expected chatml, model or a Jinja file)`);
    }
  }
  const task = chat ? "classification" : choiceFlag("task", givenStr("task", wasRun.task), TASKS, "classification");
  const mask = choiceFlag("mask", givenStr("mask", wasRun.mask), MASK_MODES, "assistant+eos");
  // the saved labels are the checkpoint's own; they are passed on only for the task that has them
  const labels = listFlag("labels", v.labels) ?? (task === "classification" ? wasRun.labels ?? undefined : undefined);
  if (labels && task !== "classification") throw new Error(`Invalid --labels: only the classification task has labels`);
  const limitTrainStr = givenStr("limit-train", wasRun.limitTrain);
  const limitValStr = givenStr("limit-val", wasRun.limitVal);
  const limitTrain = limitTrainStr ? numberFlag("limit-train", limitTrainStr, 0, int) : undefined;
  const limitVal = limitValStr ? numberFlag("limit-val", limitValStr, 0, { integer: true, min: 0 }) : undefined;
  const plain = v.plain ?? wasRun.plain ?? false;
  const modelName = v.model ?? wasRun.model ?? DEFAULT_MODEL;
  const dataDir = v["data-dir"] ?? wasRun.dataDir ?? "data";
  const outDir = v.out ?? wasRun.out ?? "models/ch8_sft_gpt2";
  if (v["merge-out"] !== undefined && !v.merge) throw new Error("Invalid --merge-out without --merge");
  if (v.merge && !config.lora) throw new Error("Invalid --merge: it merges a LoRA adapter; add --lora");
  const mergeOut = v.merge ? v["merge-out"] ?? `${outDir.replace(/[\\/]+$/, "")}-merged` : undefined;
  const checkpointEvery = numberFlag("checkpoint-every", v["checkpoint-every"], wasRun.checkpointEvery ?? 200, {
    integer: true,
    min: 0,
  });
  const evalEvery = numberFlag("eval-every", v["eval-every"], wasRun.evalEvery ?? 0, { integer: true, min: 0 });

  const env = readSettings();
  const be = await createBackend(parseBackendName(v.backend), env.backend);
  print(`Using device: ${be.description}`);
  try {
    print("Adding special tokens...");
    // a resumed run loads its model and tokenizer from the checkpoint, itself a model directory (no hub needed;
    // its weights are the checkpoint's); the recorded source is still checked against --model
    const loadFrom = saved && await isFile(join(saved.dir, "config.json")) ? saved.dir : modelName;
    const { model, tokenizer, added, dir, baseVocab } = await loadModelAndTokenizer(loadFrom, be, {
      hub: { env: env.hub, offline: v.offline || undefined },
    });
    try {
      if (config.lora) {
        // the rows of the tokens added for SFT train with the adapter (ids the tokenizer added, rows the resize made)
        const firstNew = Math.min(baseVocab, tokenizer.vocabSize - added);
        await model.attachLora(loraSpecOf(config.lora, firstNew, model.config.vocabSize), undefined, config.seed);
      }
      if (chat) {
        // a resumed run renders as it was trained: with the template its checkpoint carries (a full run's
        // checkpoint is also the model loaded; a LoRA run's holds the tokenizer beside the adapter)
        const trained = saved ? (await readModelChatTemplate(saved.dir)).source : undefined;
        const given = v["chat-template"];
        const template = given !== undefined
          ? await resolveChatTemplate(given, dir)
          : await resolveChatTemplate(trained !== undefined ? "model" : "chatml", saved?.dir ?? dir);
        if (
          saved && given !== undefined && trained !== undefined && (template?.source ?? CHATML_TEMPLATE) !== trained
        ) {
          throw new Error(
            `Cannot resume from ${saved.dir}: --chat-template ${given} is not the template the checkpoint was ` +
              "trained with (its tokenizer_config.json's chat_template); leave --chat-template out to keep it",
          );
        }
        if (template) chat.template = template;
      }
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
        modelName,
        ...(chat ? { chat } : {}),
        task,
        plain: task === "json_extraction" && plain,
        labels,
        dataDir,
        limitTrain,
        limitVal,
        mask,
        config,
        outDir,
        ...(mergeOut !== undefined ? { mergeOut } : {}),
        runDir,
        resume: v.resume,
        overwrite: v.overwrite,
        ...hooks,
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
