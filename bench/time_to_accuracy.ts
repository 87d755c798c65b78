/**
 * Time to accuracy: how long training takes until the label classifier reaches a target accuracy on
 * held-out data, with per-batch padding (`--pad longest`, ours) or the notebook's fixed padding to 256
 * (`--pad max_length`), or both from the same initial weights (`--pad both`, which prints the ratio).
 *
 * The model, data and settings are the offline demo's (`demo.ts`, `src/demo/tiny.ts`): the notebook's
 * classification records (train seed 42), a 2-layer, 64-channel GPT-2 with random weights and a vocabulary
 * built from the training data, the loss on the answer and `<|im_end|>`, batch 16, lr 3e-3, 20 warm-up steps.
 * Every `--eval-every` steps the run pauses its clock and scores `--eval-n` validation examples (the
 * notebook's val split, seed 43) with the notebook's label classifier (`classifyBatch`); it stops once the
 * accuracy reaches `--target`, or at `--max-steps`.
 *
 * `--save-init DIR` writes the initial weights and tokenizer as an HF model dir, plus the tokenized data
 * and the settings, for `bench/pytorch_time_to_accuracy.py` (the notebook's own loop on the same start).
 *
 * Usage: deno run -A bench/time_to_accuracy.ts [--pad longest|max_length|both] [--backend cpu] [--json] …
 *        bun bench/time_to_accuracy.ts …the same flags…
 * @module
 */

import { fileURLToPath } from "node:url";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import type { Backend } from "../src/backend/backend.ts";
import { createBackend, opProfiler, parseBackendName } from "../src/backend/mod.ts";
import { backendSettings } from "../src/env.ts";
import { formatProfile, type KernelTime, mergeMatmulRows } from "../src/backend/profile.ts";
import { choiceFlag, numberFlag, parseFlags, runMain, runtimeName } from "../src/cli/args.ts";
import { promptFor } from "../src/data/chatml.ts";
import { buildSftDataset, collate, MASK_MODES, type MaskMode, type SftExample } from "../src/data/sft_dataset.ts";
import { generateClassificationRecords, ISSUE_LABELS, SPLIT_SEEDS, toMessages } from "../src/data/synth.ts";
import { DEMO_TRAIN, tinyModel } from "../src/demo/tiny.ts";
import { classifyBatch } from "../src/eval/classify.ts";
import { GPT2, type HostTensor } from "../src/model/gpt2.ts";
import { saveSftModel } from "../src/train/run.ts";
import { epochOrder, NOTEBOOK_TRAIN_CONFIG, type TrainConfig, trainLoop } from "../src/train/trainer.ts";

const HELP = `Usage: deno run -A bench/time_to_accuracy.ts [options]   (or: bun bench/time_to_accuracy.ts …)

Trains the offline demo's tiny GPT-2 until the label classifier reaches --target accuracy on held-out
validation examples; reports the training wall time (evaluation excluded, reported apart), steps, tokens
and the accuracy curve.

  --pad MODE         longest (per-batch padding) | max_length (the notebook's, to --max-length) | both
                     (both from the same initial weights, and the ratio longest / max_length) (default both)
  --eval-every N     evaluate every N steps (default 25)
  --eval-n N         validation examples scored (default 200; the notebook's val split, seed 43)
  --target X         stop when accuracy ≥ X (default 0.99)
  --max-steps N      step cap (default 1000)
  --train N          training records (default 2000, as the demo)
  --batch-size N     (default 16, as the demo)
  --lr X             (default 3e-3, as the demo)
  --warmup N         LinearLR warm-up steps (default 20, as the demo)
  --max-length N     max_length padding and truncation (default 256, the notebook's; the model gets at
                     least this many positions)
  --mask MODE        assistant | assistant+eos | none (default assistant+eos, as the demo)
  --seed N           weights and data order (default 0, as the demo)
  --untimed-steps N  steps run in each mode on a throwaway copy before the timed runs (JIT, BLAS threads,
                     buffer pools; default 10, 0 for none)
  --repeat N         timed runs per mode, alternating the order of the modes (default 1)
  --save-init DIR    write the initial model (HF dir), tokenizer, tokenized data and settings to DIR for
                     bench/pytorch_time_to_accuracy.py
  --backend NAME     auto | cpu | webgpu (default auto)
  --profile          time by op (CPU) or GPU time by kernel (WebGPU) of the timed training steps, evaluation
                     excluded, as a table per mode (the same as GPT2_SFT_PROFILE=1; it slows the run a little)
  --json             print one JSON object as the last line
  -h, --help         this text
`;

type PadMode = "longest" | "max_length";

/** One point of the accuracy curve. */
interface CurvePoint {
  step: number;
  accuracy: number;
  /** The training loss of that step's batch. */
  loss: number;
  /** Training seconds up to this step (evaluation excluded). */
  train_seconds: number;
}

/** One timed run. */
interface RunResult {
  pad: PadMode;
  repeat: number;
  reached: boolean;
  steps: number;
  train_seconds: number;
  eval_seconds: number;
  seconds_per_step: number;
  /** Positions processed, padding included (Σ B·T over the steps). */
  tokens: number;
  /** Real (non-padding) tokens. */
  real_tokens: number;
  supervised_tokens: number;
  tokens_per_s: number;
  final_accuracy: number;
  curve: CurvePoint[];
}

/** Tokens of the first `steps` batches of a run (the trainer's seeded order, the trainer's collate). */
function tokenCounts(
  train: readonly SftExample[],
  cfg: TrainConfig,
  padId: number,
  steps: number,
): { tokens: number; real: number; supervised: number } {
  const perEpoch = Math.ceil(train.length / cfg.batchSize);
  let tokens = 0, real = 0, supervised = 0;
  for (let s = 0; s < steps; s++) {
    const epoch = Math.floor(s / perEpoch), b = s % perEpoch;
    const idx = epochOrder(train.length, cfg.seed, epoch).slice(b * cfg.batchSize, (b + 1) * cfg.batchSize);
    const batch = collate(idx.map((i) => train[i]!), { padId, pad: cfg.pad, maxLength: cfg.maxLength });
    tokens += batch.B * batch.T;
    real += batch.tokens;
    supervised += batch.supervised;
  }
  return { tokens, real, supervised };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Run the tool; `argv` as `process.argv.slice(2)`. Returns the exit code. */
export async function timeToAccuracyMain(
  argv: string[],
  print: (line: string) => void = console.log,
): Promise<number> {
  const { values: v } = parseFlags({
    args: argv,
    options: {
      pad: { type: "string" },
      "eval-every": { type: "string" },
      "eval-n": { type: "string" },
      target: { type: "string" },
      "max-steps": { type: "string" },
      train: { type: "string" },
      "batch-size": { type: "string" },
      lr: { type: "string" },
      warmup: { type: "string" },
      "max-length": { type: "string" },
      mask: { type: "string" },
      seed: { type: "string" },
      "untimed-steps": { type: "string" },
      repeat: { type: "string" },
      "save-init": { type: "string" },
      backend: { type: "string" },
      profile: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    print(HELP);
    return 0;
  }
  const int = { integer: true, min: 1 };
  const padFlag = choiceFlag("pad", v.pad, ["longest", "max_length", "both"] as const, "both");
  const modes: PadMode[] = padFlag === "both" ? ["longest", "max_length"] : [padFlag];
  const evalEvery = numberFlag("eval-every", v["eval-every"], 25, int);
  const evalN = numberFlag("eval-n", v["eval-n"], 200, int);
  const target = numberFlag("target", v.target, 0.99, { min: 0, max: 1 });
  const maxSteps = numberFlag("max-steps", v["max-steps"], 1000, int);
  const nTrain = numberFlag("train", v.train, DEMO_TRAIN.trainRecords, int);
  const maxLength = numberFlag("max-length", v["max-length"], 256, int);
  const mask: MaskMode = choiceFlag("mask", v.mask, MASK_MODES, "assistant+eos");
  const seed = numberFlag("seed", v.seed, 0, { integer: true, min: 0 });
  const untimed = numberFlag("untimed-steps", v["untimed-steps"], 10, { integer: true, min: 0 });
  const repeat = numberFlag("repeat", v.repeat, 1, int);
  // the demo's settings (demo.ts), with the notebook's max length and a step cap instead of one epoch
  const base: TrainConfig = {
    ...NOTEBOOK_TRAIN_CONFIG,
    batchSize: numberFlag("batch-size", v["batch-size"], DEMO_TRAIN.batchSize, int),
    lr: numberFlag("lr", v.lr, DEMO_TRAIN.lr, { min: 0 }),
    warmupSteps: numberFlag("warmup", v.warmup, DEMO_TRAIN.warmupSteps, { integer: true, min: 0 }),
    seed,
    maxLength,
    maxSteps,
    epochs: 1, // set below: enough epochs for the cap
    logEvery: evalEvery, // the trainer reads the loss back and calls onStep at these steps: we evaluate there
  };
  base.epochs = Math.ceil(maxSteps / Math.ceil(nTrain / base.batchSize));

  const env = backendSettings();
  const be: Backend = await createBackend(parseBackendName(v.backend), { ...env, profile: v.profile || env.profile });
  const profiler = opProfiler(be);
  try {
    print(`Backend: ${be.description} (${runtimeName()})`);
    // data: the notebook's generator (train seed 42, val seed 43), the first N records of each
    const trainRecords = generateClassificationRecords(nTrain, SPLIT_SEEDS.train);
    const valRecords = generateClassificationRecords(evalN, SPLIT_SEEDS.val);
    const tiny = await tinyModel(be, {
      configPath: fileURLToPath(new URL("../data/tiny_config.json", import.meta.url)),
      records: trainRecords,
      seed,
    });
    const { tokenizer } = tiny;
    let config = tiny.model.config;
    let initModel = tiny.model;
    if (config.nPositions < maxLength) {
      // the demo's config has 192 positions; padding to the notebook's 256 needs at least that many
      config = { ...config, nPositions: maxLength };
      initModel.dispose();
      initModel = GPT2.random(be, config, seed);
    }
    const init: Map<string, HostTensor> = await initModel.toTensors();
    const dsOpts = { maxLength, mask };
    const train = buildSftDataset(trainRecords.map((r) => toMessages(r)), tokenizer, dsOpts).examples;
    const val = buildSftDataset(valRecords.map((r) => toMessages(r)), tokenizer, dsOpts).examples;
    const labels = ISSUE_LABELS.map((label) => ({
      label,
      ids: tokenizer.encode(label, { addSpecialTokens: false }).ids,
    }));
    const prompts = valRecords.map((r) => tokenizer.encode(promptFor(r.instruction), { addSpecialTokens: false }).ids);
    const padId = tokenizer.padTokenId;
    const meanLen = train.reduce((a, e) => a + e.inputIds.length, 0) / train.length;
    print(
      `Tiny GPT-2: ${config.nLayer} layers, n_embd ${config.nEmbd}, vocab ${tokenizer.vocabSize}, ` +
        `n_positions ${config.nPositions}, ${initModel.numParams.toLocaleString("en-US")} parameters`,
    );
    print(
      `Data: ${train.length} train examples (mean ${meanLen.toFixed(1)} tokens, longest ` +
        `${Math.max(...train.map((e) => e.inputIds.length))}), ${prompts.length} validation prompts; ` +
        `batch ${base.batchSize}, lr ${base.lr}, warm-up ${base.warmupSteps}, mask ${mask}, max length ${maxLength}`,
    );

    if (v["save-init"]) {
      const dir = v["save-init"];
      await saveInit(dir, {
        model: initModel,
        tokenizer,
        train,
        val,
        prompts,
        valRecords,
        labels,
        base,
        evalEvery,
        target,
      });
      print(`Initial model, tokenizer, data and settings written to ${dir}`);
    }
    initModel.dispose();

    const accuracy = async (model: GPT2): Promise<number> => {
      const res = await classifyBatch(model, prompts, labels);
      let ok = 0;
      for (const [i, r] of res.entries()) if (r.label === valRecords[i]!.expected) ok++;
      return ok / prompts.length;
    };

    // untimed warm-up in each mode, on a throwaway copy
    if (untimed > 0) {
      for (const pad of modes) {
        const m = GPT2.fromTensors(be, config, init);
        const r = await trainLoop({ model: m, train, padId, config: { ...base, pad, maxSteps: untimed } });
        r.optimizer.dispose();
        await accuracy(m);
        m.dispose();
      }
    }

    const runs: RunResult[] = [];
    for (let rep = 0; rep < repeat; rep++) {
      const order = rep % 2 === 0 ? modes : [...modes].reverse();
      for (const pad of order) {
        const cfg: TrainConfig = { ...base, pad };
        const model = GPT2.fromTensors(be, config, init);
        const curve: CurvePoint[] = [];
        let evalSeconds = 0, reached = false;
        print(`\n--pad ${pad}${repeat > 1 ? ` (run ${rep + 1}/${repeat})` : ""}`);
        // profiling: the training steps' times, collected before each evaluation and dropped after it
        const trained: KernelTime[] = [];
        const collect = async (keep: boolean) => {
          const rows = profiler ? await profiler.profile({ reset: true }) : [];
          if (keep) trained.push(...rows);
        };
        await collect(false);
        const result = await trainLoop({
          model,
          train,
          padId,
          config: cfg,
          onStep: async (s) => {
            // the trainer's clock runs on during evaluation: time it and take it out
            await collect(true);
            const t = performance.now();
            const acc = await accuracy(model);
            const dt = (performance.now() - t) / 1000;
            await collect(false);
            const trainSeconds = s.elapsedSeconds - evalSeconds;
            evalSeconds += dt;
            curve.push({ step: s.step, accuracy: acc, loss: s.loss, train_seconds: trainSeconds });
            print(
              `  step ${String(s.step).padStart(5)}  loss ${s.loss.toFixed(4)}  accuracy ${
                (100 * acc).toFixed(1).padStart(5)
              } %  train ${trainSeconds.toFixed(2)} s  (eval ${dt.toFixed(2)} s)`,
            );
            if (acc >= target) reached = true;
          },
          shouldStop: () => reached,
        });
        await collect(true);
        result.optimizer.dispose();
        model.dispose();
        const steps = result.position.step;
        const last = curve[curve.length - 1];
        const trainSeconds = last && last.step === steps ? last.train_seconds : result.seconds - evalSeconds;
        const counts = tokenCounts(train, cfg, padId, steps);
        const run: RunResult = {
          pad,
          repeat: rep,
          reached,
          steps,
          train_seconds: trainSeconds,
          eval_seconds: evalSeconds,
          seconds_per_step: trainSeconds / Math.max(steps, 1),
          tokens: counts.tokens,
          real_tokens: counts.real,
          supervised_tokens: counts.supervised,
          tokens_per_s: counts.tokens / trainSeconds,
          final_accuracy: last?.accuracy ?? NaN,
          curve,
        };
        runs.push(run);
        print(
          `  ${reached ? `reached ${100 * target} %` : `did NOT reach ${100 * target} %`} after ${steps} steps: ` +
            `${trainSeconds.toFixed(2)} s training (${(1000 * run.seconds_per_step).toFixed(1)} ms/step), ` +
            `${evalSeconds.toFixed(2)} s evaluation, ${counts.tokens.toLocaleString("en-US")} positions ` +
            `(${counts.real.toLocaleString("en-US")} real)`,
        );
        if (profiler) {
          const title = `${profiler.what}, --pad ${pad}, the ${steps} training steps (evaluation excluded), per step`;
          print(formatProfile(mergeMatmulRows(trained), { title, per: steps }));
        }
      }
    }

    const summary: Record<string, { train_seconds: number; steps: number; reached: boolean }> = {};
    for (const pad of modes) {
      const mine = runs.filter((r) => r.pad === pad);
      summary[pad] = {
        train_seconds: median(mine.map((r) => r.train_seconds)),
        steps: median(mine.map((r) => r.steps)),
        reached: mine.every((r) => r.reached),
      };
    }
    const ratio = summary.longest && summary.max_length
      ? summary.longest.train_seconds / summary.max_length.train_seconds
      : null;
    if (ratio !== null) {
      const both = summary.longest!.reached && summary.max_length!.reached;
      print(
        `\nTime to ${100 * target} %: longest ${summary.longest!.train_seconds.toFixed(2)} s ` +
          `(${summary.longest!.steps} steps), max_length ${summary.max_length!.train_seconds.toFixed(2)} s ` +
          `(${summary.max_length!.steps} steps)${repeat > 1 ? ` (medians of ${repeat})` : ""}; ` +
          `ratio longest / max_length = ${ratio.toFixed(3)}${both ? "" : " (target NOT reached in every run)"}`,
      );
    }
    if (v.json) {
      print(JSON.stringify({
        tool: "time_to_accuracy",
        runtime: runtimeName(),
        backend: be.name,
        device: be.description,
        date: new Date().toISOString(),
        argv,
        model: {
          layers: config.nLayer,
          n_embd: config.nEmbd,
          n_head: config.nHead,
          n_positions: config.nPositions,
          vocab: config.vocabSize,
        },
        settings: {
          train_examples: train.length,
          eval_n: prompts.length,
          eval_every: evalEvery,
          target,
          max_steps: maxSteps,
          batch_size: base.batchSize,
          lr: base.lr,
          warmup_steps: base.warmupSteps,
          weight_decay: base.weightDecay,
          max_grad_norm: base.maxGradNorm,
          max_length: maxLength,
          mask,
          seed,
          // the trainer's dropout switch is on (the notebook's model.train()); the rates are the config's
          dropout: base.dropout ? { embd: config.embdPdrop, attn: config.attnPdrop, resid: config.residPdrop } : false,
          untimed_steps: untimed,
          repeat,
        },
        runs,
        summary,
        ratio,
      }));
    }
    return 0;
  } finally {
    be.dispose();
  }
}

/** `--save-init`: the HF model dir (weights, config, tokenizer files), then the data and settings beside it. */
async function saveInit(
  dir: string,
  a: {
    model: GPT2;
    tokenizer: Awaited<ReturnType<typeof tinyModel>>["tokenizer"];
    train: readonly SftExample[];
    val: readonly SftExample[];
    prompts: readonly number[][];
    valRecords: readonly { expected?: string }[];
    labels: readonly { label: string; ids: number[] }[];
    base: TrainConfig;
    evalEvery: number;
    target: number;
  },
): Promise<void> {
  await saveSftModel(dir, { model: a.model, tokenizer: a.tokenizer, extraFiles: a.tokenizer.saveFiles() });
  await mkdir(dir, { recursive: true });
  const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
  await writeFile(
    join(dir, "train.jsonl"),
    jsonl(a.train.map((e) => ({ input_ids: e.inputIds, labels: e.labels }))),
  );
  // the validation examples: tokenized as training data, plus the classifier's prompt and answer
  await writeFile(
    join(dir, "val.jsonl"),
    jsonl(a.val.map((e, i) => ({
      input_ids: e.inputIds,
      labels: e.labels,
      prompt_ids: a.prompts[i],
      expected: a.valRecords[i]!.expected,
    }))),
  );
  const perEpoch = Math.ceil(a.train.length / a.base.batchSize);
  const epochs = Math.ceil(a.base.maxSteps / perEpoch);
  const settings = {
    batch_size: a.base.batchSize,
    lr: a.base.lr,
    warmup_steps: a.base.warmupSteps,
    warmup_start_factor: a.base.warmupStartFactor,
    weight_decay: a.base.weightDecay,
    max_grad_norm: a.base.maxGradNorm,
    max_length: a.base.maxLength,
    max_steps: a.base.maxSteps,
    eval_every: a.evalEvery,
    target: a.target,
    seed: a.base.seed,
    pad_token_id: a.tokenizer.padTokenId,
    labels: a.labels,
    // our trainer's data order (epochOrder), so the Python side can follow it with --order ours
    epoch_orders: Array.from({ length: epochs }, (_, e) => epochOrder(a.train.length, a.base.seed, e)),
  };
  await writeFile(join(dir, "tta_settings.json"), JSON.stringify(settings) + "\n");
}

if (import.meta.main) runMain("time_to_accuracy", () => timeToAccuracyMain(process.argv.slice(2)));
