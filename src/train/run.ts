/**
 * A whole training run, as the notebook's Parts 3–5: data (generated when missing), the SFT tokenizer and
 * the resized model, the masked dataset, the loop with progress, metrics, checkpoints, Ctrl-C and resume,
 * and the saved HF model directory with the loss curve. `train.ts` and the demo call {@link runTraining}.
 * @module
 */

import { stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import process from "node:process";
import type { Backend } from "../backend/backend.ts";
import { buildSftDataset, droppedSummary, type MaskMode, type SftDataset } from "../data/sft_dataset.ts";
import { readSftRecordLines, type SftRecord } from "../data/jsonl.ts";
import {
  datasetFileNames,
  ensureSplitFile,
  generatedSplitHint,
  ISSUE_LABELS,
  type SftTask,
  SPLIT_SEEDS,
  toMessages,
} from "../data/synth.ts";
import type { TrainOn } from "../data/chatml.ts";
import { CHATML_TEMPLATE, type ChatTemplate, conversationRenderer } from "../data/template.ts";
import { checkFits, cpuAvailableMemory, describeEstimate, estimateTrainingMemory } from "./memory.ts";
import { type ChatDataOptions, loadChatTrainingData, type SplitData } from "./chat_data.ts";
import { adapterSize, mergeAdapter } from "../model/lora.ts";
import { atomicWriteDir } from "../io/atomic.ts";
import type { GPT2 } from "../model/gpt2.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { AdamW } from "./adamw.ts";
import {
  anyCheckpoint,
  type CheckpointFs,
  findCheckpoint,
  loadCheckpoint,
  readTrainerState,
  removeCheckpoint,
  saveCheckpoint,
  type TrainerState,
  validateCheckpoint,
} from "./checkpoint.ts";
import { acquireRunLock } from "./run_lock.ts";
import {
  dataConflicts,
  fileSha256,
  RESUME_MUTABLE_FLAGS,
  type RunSettings,
  settingsConflicts,
} from "./run_settings.ts";
import {
  formatEpochSummary,
  formatStepLine,
  formatValLine,
  lossSeries,
  MetricsLog,
  readMetrics,
  repairMetrics,
} from "./metrics.ts";
import { terminalChart, writeLossCurve } from "./plot.ts";
import { NonFiniteLossError, type TrainConfig, trainingRows, trainLoop, type TrainPosition } from "./trainer.ts";
import { totalSteps as plannedTotal } from "./schedule.ts";
import { ProgressBar } from "../io/progress.ts";
import { pyFloat } from "../eval/metrics.ts";
import { checkOutputDirs, sftModelFiles, sftOutputFiles } from "./save.ts";

export { checkOutputDirs, saveSftModel, sftModelFiles, sftOutputFiles } from "./save.ts";

/** The tasks. */
export const TASKS: readonly SftTask[] = ["classification", "json_extraction"];

/** Options of {@link runTraining}. */
export interface TrainRunOptions {
  /** The model and its SFT tokenizer, already loaded (see `loadModelAndTokenizer`). */
  model: GPT2;
  tokenizer: Tokenizer;
  /** Where the model came from (hub id or directory), for sft_task.json. */
  modelName: string;
  task: SftTask;
  /** json_extraction: the notebook's plain `姓名：…；邮箱：…；订单号：…` answers. */
  plain?: boolean;
  /** Labels of the classification task (default the notebook's six). */
  labels?: readonly string[];
  /** Directory of the JSONL files; missing files are generated as the notebook does. */
  dataDir: string;
  /**
   * Your own chat data in place of the notebook's task (any format of src/data/formats.ts): `task`, `plain`,
   * `labels` and `dataDir` are then not used, and the saved model's sft_task.json says task "chat".
   * `template` renders the conversations (default the notebook's ChatML); the saved model's
   * tokenizer_config.json carries it as `chat_template`.
   */
  chat?: Omit<ChatDataOptions, "limitTrain" | "limitVal" | "seed"> & { trainOn?: TrainOn; template?: ChatTemplate };
  /** Use only the first N training / validation records (default all). */
  limitTrain?: number;
  limitVal?: number;
  mask: MaskMode;
  config: TrainConfig;
  /** The HF model directory written at the end (with a LoRA adapter attached to `model`: the adapter's directory). */
  outDir: string;
  /** With a LoRA adapter: also the full model with the adapter merged, as an HF model directory here (`--merge`). */
  mergeOut?: string;
  /** Metrics, loss curve and checkpoints. */
  runDir: string;
  resume?: boolean;
  /** A fresh run into a run directory that holds a checkpoint replaces it (else that is refused). */
  overwrite?: boolean;
  /** The file operations of the checkpoint saves (tests inject slow or failing ones). */
  checkpointFs?: CheckpointFs;
  /** Save a checkpoint every N steps (and at the end, and on Ctrl-C). 0: only at the end. */
  checkpointEvery?: number;
  /** Also the validation loss every N steps, printed and logged (default 0: at the end of each epoch only). */
  evalEvery?: number;
  /** Print less (no per-step lines, no progress bar). */
  quiet?: boolean;
  /** The bytes a CPU run may use (default 90 % of the machine's memory); a run estimated above it is refused. */
  availableMemory?: number;
  /** Where lines go (default console.log). */
  print?: (line: string) => void;
}

/** What a run produced. */
export interface TrainRunResult {
  steps: number;
  seconds: number;
  stoppedBy: "done" | "max_steps" | "interrupt";
  finalLoss: number | undefined;
  valLosses: number[];
  outDir: string | undefined;
  /** The merged model's directory (`mergeOut`), when written. */
  mergedDir?: string;
  dataset: { train: SftDataset; val?: SftDataset };
}

/** Read a task's split, generating its file first (as the notebook does) when it is missing. */
export async function loadTaskRecords(
  task: SftTask,
  dataDir: string,
  split: "train" | "val" | "test",
  opts: { plain?: boolean; print?: (l: string) => void } = {},
): Promise<SftRecord[]> {
  return (await loadTaskSplit(task, dataDir, split, opts)).records;
}

/**
 * {@link loadTaskRecords} with each record's line in its file. Training and validation records need only
 * `instruction` and `response`; the test split is read with the fields evaluation needs as well.
 */
export async function loadTaskSplit(
  task: SftTask,
  dataDir: string,
  split: "train" | "val" | "test",
  opts: { plain?: boolean; print?: (l: string) => void } = {},
): Promise<{ records: SftRecord[]; lines: number[] }> {
  if (!TASKS.includes(task)) {
    throw new Error(`Unknown task: "${task}" (expected one of ${TASKS.join(", ")})`);
  }
  const { path, generated } = await ensureSplitFile(task, dataDir, split, { plain: opts.plain });
  if (generated) {
    opts.print?.(`Generated ${basename(path)} in ${dataDir} (the notebook's generator, seed ${SPLIT_SEEDS[split]})`);
  }
  const read = await readSftRecordLines(path, { purpose: split === "test" ? "both" : "train" });
  if (read.records.length === 0) throw new Error(`Cannot use ${path}: it has no records`);
  return read;
}

/**
 * Check the classification labels against the records' expected answers: none of them occurring is an
 * error (the wrong task or label set); some missing is a warning (a small `--limit-train` can do that).
 */
export function checkLabels(
  records: readonly SftRecord[],
  labels: readonly string[],
  file: string,
  warn: (msg: string) => void = (m) => console.error(`warning: ${m}`),
  noneHint?: string,
): void {
  const seen = new Set(records.map((r) => r.expected));
  const missing = labels.filter((l) => !seen.has(l));
  if (missing.length === labels.length) {
    // by default (the training file) most likely your own data with its own labels: name them, as the flag
    // that takes them wants them
    const answers = [...seen].filter((a) => a.trim() !== "");
    if (answers.length === 0) {
      throw new Error(`Cannot train: every answer in ${file} is empty (its "response" and "expected" fields)`);
    }
    const hint = noneHint ??
      (answers.length <= 50
        ? `its answers are ${answers.length}: pass them with --labels ${answers.join(",")}`
        : `its records have ${answers.length} different answers (a classification task needs a few labels)`);
    throw new Error(`Cannot train: none of the labels (${labels.join(", ")}) occurs as an answer in ${file}; ${hint}`);
  }
  if (missing.length) {
    warn(
      `label${missing.length > 1 ? "s" : ""} ${missing.join(", ")} never occur${
        missing.length > 1 ? "" : "s"
      } as an answer in the training records of ${file}`,
    );
  }
}

/** Validate settings against the model before any work starts. */
export function checkTrainConfig(cfg: TrainConfig, model: GPT2): void {
  const n = model.config.nPositions;
  if (cfg.maxLength > n) {
    throw new Error(`Invalid --max-length ${cfg.maxLength}: the model has only ${n} positions (n_positions)`);
  }
  const positive: (keyof TrainConfig)[] = ["batchSize", "epochs", "maxSteps", "maxLength", "logEvery"];
  for (const k of positive) {
    const v = cfg[k] as number;
    if (!Number.isInteger(v) || v <= 0) throw new Error(`Invalid ${k}: ${v} (expected a whole number > 0)`);
  }
  if (!(cfg.lr > 0)) throw new Error(`Invalid lr: ${cfg.lr} (expected > 0)`);
  const accum = cfg.gradAccum ?? 1;
  if (!Number.isInteger(accum) || accum <= 0) {
    throw new Error(`Invalid gradAccum: ${accum} (expected a whole number > 0)`);
  }
}

/**
 * The files of the tokenizer plus the notebook's sft_task.json, for the saved model dir; tokenizer_config.json
 * carries the chat template the model was trained with (ChatML as {@link CHATML_TEMPLATE} by default), so that
 * transformers' `apply_chat_template` renders conversations as training did.
 */
function modelDirExtras(opts: TrainRunOptions, labels: readonly string[] | null): Record<string, string> {
  const files = opts.tokenizer.saveFiles();
  const tokenizerConfig = JSON.parse(files["tokenizer_config.json"] ?? "{}") as Record<string, unknown>;
  tokenizerConfig.chat_template = opts.chat?.template?.source ?? CHATML_TEMPLATE;
  files["tokenizer_config.json"] = JSON.stringify(tokenizerConfig, null, 2) + "\n";
  const meta = {
    task: opts.chat ? "chat" : opts.task,
    use_plain_extract: !!opts.plain,
    labels,
    model_name: opts.modelName,
    mask: opts.mask,
  };
  return { ...files, "sft_task.json": JSON.stringify(meta, null, 2) + "\n" };
}

/** `spec` as recorded: a local directory as its absolute path (so eval finds it from anywhere), a hub id as is. */
export async function modelSource(spec: string): Promise<string> {
  try {
    if ((await stat(spec)).isDirectory()) return resolve(spec);
  } catch {
    // not a local path: a hub id
  }
  return spec;
}

/** The settings of this run as a checkpoint records them (see `run_settings.ts`), but for the data files. */
async function runSettingsOf(
  opts: TrainRunOptions,
  labels: readonly string[] | null,
): Promise<Omit<RunSettings, "dataFiles">> {
  return {
    model: await modelSource(opts.modelName),
    task: opts.chat ? "chat" : opts.task,
    ...(opts.chat
      ? { format: opts.chat.format ?? "auto", trainOn: opts.chat.trainOn ?? "all", valSplit: opts.chat.valSplit ?? 0 }
      : {}),
    plain: !!opts.plain,
    labels: labels ? [...labels] : null,
    dataDir: resolve(opts.dataDir),
    limitTrain: opts.limitTrain ?? null,
    limitVal: opts.limitVal ?? null,
    mask: opts.mask,
    out: resolve(opts.outDir),
    checkpointEvery: opts.checkpointEvery ?? 200,
    evalEvery: opts.evalEvery ?? 0,
  };
}

/** The data files read, with their sha256. */
async function dataFilesOf(files: { train: string; val: string | null }): Promise<RunSettings["dataFiles"]> {
  return {
    train: { path: resolve(files.train), sha256: await fileSha256(files.train) },
    val: files.val ? { path: resolve(files.val), sha256: await fileSha256(files.val) } : null,
  };
}

function refuseResume(found: string, conflicts: string[]): never {
  throw new Error(
    `Cannot resume from ${found}: ${conflicts.join("; ")}. Resume with the checkpoint's settings (flags left out ` +
      `are taken from it); only ${RESUME_MUTABLE_FLAGS.join(", ")} may change`,
  );
}

/** The error of `--resume` where `ckptDir` holds no complete checkpoint (saying so when a torn one is there). */
export async function noCheckpointError(ckptDir: string): Promise<Error> {
  return new Error(
    `Cannot resume: no complete checkpoint in ${ckptDir}` +
      ((await anyCheckpoint(ckptDir)) ? " (only an incomplete one, from a save that was cut short)" : ""),
  );
}

/** Run the notebook's training. */
export async function runTraining(opts: TrainRunOptions): Promise<TrainRunResult> {
  const print = opts.print ?? ((l: string) => console.log(l));
  const { model, cfg } = { model: opts.model, cfg: opts.config };
  checkTrainConfig(cfg, model);
  const spec = model.lora;
  const lora = spec && { trainable: adapterSize(model.config, spec), tokenRows: spec.tokenIds.length > 0 };
  const estimate = estimateTrainingMemory(model.config, cfg.batchSize, cfg.maxLength, {
    gradientCheckpointing: cfg.gradientCheckpointing,
    lora,
  });
  print(describeEstimate(estimate, cfg.batchSize, cfg.maxLength));
  if (model.be.name === "cpu") {
    checkFits(estimate, opts.availableMemory ?? cpuAvailableMemory(), "this machine", {
      batchSize: cfg.batchSize,
      maxLength: cfg.maxLength,
      gradAccum: cfg.gradAccum ?? 1,
      checkpointedTotal: cfg.gradientCheckpointing
        ? undefined
        : estimateTrainingMemory(model.config, cfg.batchSize, cfg.maxLength, { gradientCheckpointing: true, lora })
          .total,
    });
  }
  await checkOutputDirs(opts.outDir, opts.runDir);
  if (opts.mergeOut !== undefined) {
    if (!spec) throw new Error("Invalid --merge: it merges a LoRA adapter, and this run trains without --lora");
    if (resolve(opts.mergeOut) === resolve(opts.outDir)) {
      throw new Error(`Invalid --merge-out ${opts.mergeOut}: it is --out, where the adapter goes; choose another`);
    }
    await checkOutputDirs(opts.mergeOut, opts.runDir);
  }
  const lock = acquireRunLock(opts.runDir, (m) => print(m));
  try {
    return await trainLocked(opts, print, lock.release);
  } finally {
    lock.release();
  }
}

async function trainLocked(
  opts: TrainRunOptions,
  print: (l: string) => void,
  releaseLock: () => void,
): Promise<TrainRunResult> {
  const { model, tokenizer, config: cfg } = opts;
  const be: Backend = model.be;
  const spec = model.lora;
  const ckptDir = join(opts.runDir, "checkpoint");

  // ---- the checkpoint first: a missing one, or one of another run, fails before any data is read
  let found: string | undefined;
  let savedState: TrainerState | undefined;
  if (opts.resume) {
    found = await findCheckpoint(ckptDir);
    if (!found) throw await noCheckpointError(ckptDir);
    savedState = await readTrainerState(found);
  } else if (await anyCheckpoint(ckptDir)) {
    if (!opts.overwrite) {
      throw new Error(
        `Cannot start a new run in ${opts.runDir}: it holds a checkpoint (${ckptDir}); continue it with --resume, ` +
          "start over with --overwrite, or choose another --run-dir",
      );
    }
    await removeCheckpoint(ckptDir);
    print(`Removed the checkpoint in ${ckptDir} (--overwrite)`);
  }
  const labels = !opts.chat && opts.task === "classification" ? [...(opts.labels ?? ISSUE_LABELS)] : null;
  const names = datasetFileNames(opts.task);
  const runNow = await runSettingsOf(opts, labels);
  if (savedState) {
    const was = savedState.config;
    const batching = (c: TrainConfig) => `--batch-size ${c.batchSize} --grad-accum ${c.gradAccum ?? 1}`;
    if (was && batching(was) !== batching(cfg)) {
      // the position counts batches of the checkpoint's size: other sizes would skip or repeat examples
      throw new Error(
        `Cannot resume from ${found}: it was trained with ${batching(was)}, this run asks ${batching(cfg)}; ` +
          "resume with the checkpoint's settings",
      );
    }
    const conflicts = settingsConflicts(
      { config: was ?? {}, run: savedState.run as Partial<RunSettings> },
      { config: cfg, run: runNow },
    );
    if (conflicts.length) refuseResume(found!, conflicts);
    if (savedState.vocabSize !== model.config.vocabSize) {
      throw new Error(
        `Cannot resume from ${found}: it has vocab ${savedState.vocabSize}, the model ${model.config.vocabSize}`,
      );
    }
  }

  // ---- data (Part 3) and the masked dataset (Part 4)
  const data = opts.chat
    ? await loadChatTrainingData(
      { ...opts.chat, limitTrain: opts.limitTrain, limitVal: opts.limitVal, seed: cfg.seed },
      print,
    )
    : await notebookData(opts, labels, names, print);
  const settings: RunSettings = { ...runNow, dataFiles: await dataFilesOf(data.files) };
  if (savedState) {
    const conflicts = dataConflicts((savedState.run as Partial<RunSettings>).dataFiles, settings.dataFiles);
    if (conflicts.length) refuseResume(found!, conflicts);
  }
  const dsOpts = {
    maxLength: cfg.maxLength,
    mask: opts.mask,
    trainOn: opts.chat?.trainOn,
    render: conversationRenderer(opts.chat?.template),
  };
  const dataset = (split: SplitData) =>
    buildSftDataset(split.inputs, tokenizer, { ...dsOpts, source: split.name, lines: split.lines });
  const train = dataset(data.train);
  print(`Processed ${train.examples.length}/${train.total} examples`);
  const trainDropped = droppedSummary(train, data.files.train, cfg.maxLength);
  if (trainDropped) print(trainDropped);
  const val = data.val.inputs.length ? dataset(data.val) : undefined;
  if (val) print(`Processed ${val.examples.length}/${val.total} examples`);
  const valDropped = val && droppedSummary(val, data.files.val ?? data.files.train, cfg.maxLength);
  if (valDropped) print(valDropped);
  const rows = trainingRows(train.examples, cfg).length;
  if (cfg.packing) print(`Packed ${train.examples.length} examples into ${rows} rows of ${cfg.maxLength} tokens`);
  const totalSteps = plannedTotal({ examples: rows, ...cfg });

  // ---- resume: the checkpoint's tensors, checked against the model before any is written into it
  let start: TrainPosition | undefined;
  let optimizer: AdamW | undefined;
  const run = { ...settings } as unknown as Record<string, unknown>;
  if (found) {
    const ck = await loadCheckpoint(found);
    validateCheckpoint(found, ck, model);
    start = ck.state.position;
    if (start.step >= totalSteps) {
      throw new Error(
        `Nothing to resume: ${found} is at step ${start.step} and this run ends at step ${totalSteps}; ` +
          "pass a larger --max-steps (or --epochs) to train on",
      );
    }
    for (const [name, t] of ck.params) be.write(model.trainable.get(name)!.buf, t.data);
    optimizer = new AdamW(
      be,
      model.trainable,
      { lr: cfg.lr, weightDecay: cfg.weightDecay, maxGradNorm: cfg.maxGradNorm },
      model,
    );
    optimizer.importState(ck.optimizer);
    print(`Resumed from ${found} at step ${start.step} (epoch ${start.epoch + 1}, batch ${start.batchInEpoch})`);
  }

  print("Training configuration:");
  const accum = cfg.gradAccum ?? 1;
  print(
    accum === 1
      ? `  Batch size: ${cfg.batchSize}`
      : `  Batch size: ${cfg.batchSize} × ${accum} accumulated = ${cfg.batchSize * accum} per optimizer step`,
  );
  print(`  Epochs: ${cfg.epochs}`);
  print(`  Learning rate: ${pyFloat(cfg.lr)}`);
  if ((cfg.lrDecay ?? "constant") !== "constant") {
    print(`  LR schedule: warm-up over ${cfg.warmupSteps} steps, then ${cfg.lrDecay} decay to 0 at step ${totalSteps}`);
  }
  print(`  Total steps: ${totalSteps}`);
  print(`  Max steps: ${cfg.maxSteps}`);
  print(`  Loss mask: ${opts.mask} | padding: ${cfg.pad} | max length: ${cfg.maxLength} | backend: ${be.name}`);
  if (opts.chat) print(`  Chat template: ${opts.chat.template?.name ?? "ChatML (the notebook's)"}`);
  const c = model.config;
  print(
    cfg.dropout
      ? `  Dropout: embd ${c.embdPdrop}, attn ${c.attnPdrop}, resid ${c.residPdrop} (from config.json)`
      : "  Dropout: off (--no-dropout)",
  );
  if (spec) {
    print(
      `  LoRA: r ${spec.r}, alpha ${spec.alpha}${spec.rslora ? " (rsLoRA)" : ""}, dropout ${spec.dropout}, on ` +
        `${spec.targets.join(", ")}; ${spec.tokenIds.length} trainable token rows; ` +
        `${adapterSize(model.config, spec).toLocaleString("en-US")} trainable values beside ` +
        `${model.numParams.toLocaleString("en-US")} frozen`,
    );
  }
  for (const line of smallModelHint(model, cfg)) print(line);
  print("\n" + "=".repeat(60) + "\nStarting SFT Training\n" + "=".repeat(60));

  // the tokenizer's files and sft_task.json, for every checkpoint and the saved model (serialised once)
  const extraFiles = modelDirExtras({ ...opts, modelName: settings.model }, labels);

  // ---- the loop, with Ctrl-C saving a checkpoint
  const metricsPath = join(opts.runDir, "metrics.jsonl");
  if (found) {
    // the lines of steps after the checkpoint (written before a crash) go, and so does a line cut short
    const dropped = await repairMetrics(metricsPath, start!.step);
    if (dropped.torn) print(`warning: dropped the last line of ${metricsPath}, cut short by an interrupted write`);
    if (dropped.later) print(`Dropped ${dropped.later} metrics line(s) of steps after the checkpoint's ${start!.step}`);
  }
  const log = MetricsLog.open(metricsPath, { append: !!found });
  let interrupted = false, saving = false, lastSaved: number | undefined = start?.step;
  const onSigint = () => {
    if (interrupted) {
      // a second Ctrl-C: quit now; a checkpoint being written is a temporary, so the previous one stays valid
      print(
        saving
          ? `\nQuit while saving: the checkpoint being written is dropped; ${
            lastSaved === undefined ? "no checkpoint was written before it" : `the one of step ${lastSaved} is intact`
          } (${ckptDir})`
          : `\nQuit: ${
            lastSaved === undefined ? "no checkpoint was written" : `the checkpoint of step ${lastSaved} is intact`
          } (${ckptDir})`,
      );
      releaseLock();
      process.exit(130);
    }
    interrupted = true;
    print("\nInterrupted: finishing this step and saving a checkpoint (Ctrl-C again to quit now)");
  };
  process.on("SIGINT", onSigint);
  const bar = opts.quiet
    ? undefined
    : new ProgressBar({ total: totalSteps, unit: "items", itemName: "steps", label: "train" });
  let finalLoss: number | undefined;
  const valLosses: number[] = [];
  let result;
  try {
    result = await trainLoop({
      model,
      train: train.examples,
      val: val?.examples,
      padId: tokenizer.padTokenId,
      config: cfg,
      start,
      optimizer,
      checkpointEvery: opts.checkpointEvery ?? 200,
      shouldStop: () => interrupted,
      // the checkpoint is a model directory too (config, tokenizer, sft_task.json beside the weights), so a
      // stopped run can be evaluated or chatted with before it is resumed
      onCheckpoint: async (pos, opt) => {
        saving = true;
        try {
          await saveCheckpoint(ckptDir, {
            model,
            optimizer: opt,
            position: pos,
            config: cfg,
            run,
            modelFiles: (tensors) =>
              sftOutputFiles(ckptDir, { model, tokenizer, extraFiles, tensors, baseModel: settings.model }),
            fs: opts.checkpointFs,
          });
          lastSaved = pos.step;
        } finally {
          saving = false;
        }
      },
      // the bar moves every step where a step has run when it returns (the CPU: seconds a step at the real
      // shape, so 20 steps between log lines are minutes); on WebGPU the host records steps ahead of the GPU,
      // so the bar moves at the logging steps, when the loss is read and the GPU has caught up
      onStepRecorded: be.name === "cpu" ? (step) => bar?.update(step) : undefined,
      onStep: (s) => {
        finalLoss = s.loss;
        log.train({
          step: s.step,
          epoch: s.epoch + 1,
          loss: s.loss,
          lr: s.lr,
          grad_norm: s.gradNorm,
          tokens_per_s: s.tokensPerSecond,
          supervised_tokens: s.supervisedTokens,
          num_tokens: s.tokensSeen,
          mean_token_accuracy: s.meanTokenAccuracy,
          elapsed_s: s.elapsedSeconds,
        });
        const line = formatStepLine({
          step: s.step,
          totalSteps: s.totalSteps,
          loss: s.loss,
          lr: s.lr,
          gradNorm: s.gradNorm,
          tokensPerS: s.tokensPerSecond,
          supervisedTokens: s.supervisedTokens,
          accuracy: s.meanTokenAccuracy,
          tokensSeen: s.tokensSeen,
          etaS: s.etaSeconds,
        });
        if (bar) bar.log(line, print);
        else if (!opts.quiet) print(line);
        bar?.update(s.step, `loss ${s.loss.toFixed(4)}`);
      },
      evalEvery: opts.evalEvery,
      // on a CPU the notebook's 1000 validation examples take minutes at the real shape: say what is running
      onValidate: (n) => {
        const line = `Validating on ${n} examples…`;
        if (bar) bar.log(line, print);
        else if (!opts.quiet) print(line);
      },
      onEval: (e) => {
        log.val({ epoch: e.epoch + 1, val_loss: e.valLoss, step: e.step });
        const line = formatValLine({ step: e.step, totalSteps, valLoss: e.valLoss });
        if (bar) bar.log(line, print);
        else if (!opts.quiet) print(line);
      },
      onEpoch: (e) => {
        if (e.valLoss !== undefined) valLosses.push(e.valLoss);
        if (e.valLoss !== undefined) {
          log.val({ epoch: e.epoch + 1, val_loss: e.valLoss, step: e.step, train_loss: e.trainLoss });
        }
        const summary = formatEpochSummary({
          epoch: e.epoch + 1,
          epochs: cfg.epochs,
          trainLoss: e.trainLoss,
          ...(e.valLoss !== undefined ? { valLoss: e.valLoss } : {}),
        });
        if (bar) bar.log(summary, print);
        else print(summary);
        if (
          e.step >= totalSteps && totalSteps < plannedTotal({ examples: rows, ...cfg, maxSteps: null })
        ) {
          const line = `Reached MAX_STEPS=${cfg.maxSteps}, stopping early.`;
          if (bar) bar.log(line, print);
          else print(line);
        }
      },
    });
  } catch (e) {
    bar?.finish();
    log.close();
    if (e instanceof NonFiniteLossError) {
      throw new Error(
        e.lastCheckpoint === undefined ? e.message : `${e.message} (${ckptDir}; resume it with a lower --lr)`,
      );
    }
    throw e;
  } finally {
    process.off("SIGINT", onSigint);
  }
  bar?.finish();
  log.close();
  result.optimizer.dispose();

  // ---- the saved model, then the loss curve (end of Part 5): a figure that fails to draw loses no model
  let outDir: string | undefined, mergedDir: string | undefined;
  if (result.stoppedBy === "interrupt") {
    print(`Stopped at step ${result.position.step}; checkpoint saved in ${ckptDir}`);
    print(`Resume with: deno task train --resume --run-dir ${opts.runDir}`);
    print(
      `The checkpoint is a model directory too: bun run eval.ts --sft ${ckptDir}, or deno task chat --model ${ckptDir}`,
    );
  } else {
    try {
      // (checkOutputDirs let only an empty directory or an earlier save of this tool through: sft_task.json)
      await atomicWriteDir(
        opts.outDir,
        await sftOutputFiles(opts.outDir, { model, tokenizer, extraFiles, baseModel: settings.model }),
        { mustContain: "sft_task.json" },
      );
    } catch (e) {
      throw new Error(
        `Cannot save the model to ${opts.outDir}: ${e instanceof Error ? e.message : e}; the trained weights are ` +
          `in the checkpoint ${ckptDir}`,
      );
    }
    outDir = opts.outDir;
    print(spec ? `Saved the LoRA adapter to ${opts.outDir}` : `Saved SFT model to ${opts.outDir}`);
    if (spec && opts.mergeOut !== undefined) {
      const merged = mergeAdapter(model.config, spec, await model.toTensors(), await model.adapterTensors());
      await atomicWriteDir(
        opts.mergeOut,
        await sftModelFiles(opts.mergeOut, { model, tokenizer, extraFiles, tensors: merged }),
        { mustContain: "sft_task.json" },
      );
      mergedDir = opts.mergeOut;
      print(`Saved the merged model (the adapter merged into ${settings.model}) to ${opts.mergeOut}`);
    }
  }
  try {
    const series = lossSeries(await readMetrics(metricsPath));
    if (series.train.length) {
      const paths = await writeLossCurve({
        train: series.train,
        val: series.val,
        outBase: join(opts.runDir, "loss_curve"),
      });
      if (!opts.quiet) print(`\n${terminalChart(series.train)}`);
      print(`Loss curve: ${paths.png} (and .svg); metrics: ${metricsPath}`);
    }
  } catch (e) {
    print(`warning: no loss curve: ${e instanceof Error ? e.message : e}`);
  }
  return {
    steps: result.position.step,
    seconds: result.seconds,
    stoppedBy: result.stoppedBy,
    finalLoss,
    valLosses,
    outDir,
    ...(mergedDir ? { mergedDir } : {}),
    dataset: { train, val },
  };
}

/**
 * The notebook's defaults (lr 5e-5, 1000 steps) are for the real 102 M-parameter model, which already knows
 * the language; a tiny or randomly initialised model (the demo's, the test fixtures) learns next to nothing
 * with them. Said before training when the model is small and the lr is the default.
 */
export function smallModelHint(model: GPT2, cfg: TrainConfig): string[] {
  if (model.numParams >= 10_000_000 || cfg.lr > 1e-4) return [];
  return [
    `  Note: ${model.numParams.toLocaleString("en-US")} parameters is a tiny model; the notebook's lr ` +
    `${pyFloat(cfg.lr)} is meant for the real 102 M one and a tiny or random model learns next to nothing with ` +
    "it: try --lr 1e-3 (the demo uses 3e-3)",
  ];
}

/** The notebook task's training and validation data (generated first where the files are missing). */
async function notebookData(
  opts: TrainRunOptions,
  labels: readonly string[] | null,
  names: { train: string; val: string },
  print: (l: string) => void,
): Promise<{ train: SplitData; val: SplitData; files: { train: string; val: string | null } }> {
  const trainSplit = await loadTaskSplit(opts.task, opts.dataDir, "train", { plain: opts.plain, print });
  const valSplit = await loadTaskSplit(opts.task, opts.dataDir, "val", { plain: opts.plain, print });
  const trainRecords = trainSplit.records.slice(0, opts.limitTrain ?? trainSplit.records.length);
  const valRecords = valSplit.records.slice(0, opts.limitVal ?? valSplit.records.length);
  if (labels) {
    checkLabels(trainRecords, labels, join(opts.dataDir, names.train));
    // a validation file the notebook's generator wrote beside your own training file would have its labels
    // (labels it merely lacks are fine: a small validation set may miss some)
    if (valRecords.length) {
      checkLabels(valRecords, labels, join(opts.dataDir, names.val), () => {}, generatedSplitHint("validation"));
    }
  }
  print(`SFT task: ${opts.task}`);
  print(`Train: ${trainRecords.length} | Val: ${valRecords.length}`);
  const toConv = (r: SftRecord) => toMessages(r, { plain: opts.plain });
  return {
    train: { inputs: trainRecords.map(toConv), lines: trainSplit.lines, name: names.train },
    val: { inputs: valRecords.map(toConv), lines: valSplit.lines, name: names.val },
    files: { train: join(opts.dataDir, names.train), val: join(opts.dataDir, names.val) },
  };
}
