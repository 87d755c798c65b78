/**
 * The training loop, as the notebook's Part 5: shuffled batches, masked cross-entropy, backward, global
 * grad-norm clipping, AdamW, the LinearLR warmup, validation loss each epoch. It only orchestrates: the
 * maths is in the model, the optimizer and the backend; display and files are the caller's callbacks.
 * {@link trainLoop} runs epochs of optimizer steps (what follows each step, the log, checkpoint and stop
 * checks, in a helper of its own), and the position (step, epoch, batch) moves in one function, `advance`.
 *
 * Nothing is read back from the device inside a step except at logging steps (the loss, the grad norm and the
 * count of supervised positions predicted right, for the token accuracy), at
 * checkpoint steps and when a stop is asked for: there a NaN or infinite loss stops the run before anything
 * is saved. After each step the event loop gets a turn, so Ctrl-C is seen within one step on every backend.
 * @module
 */

import type { Buf } from "../backend/backend.ts";
import type { GPT2 } from "../model/gpt2.ts";
import { collate, type SftExample } from "../data/sft_dataset.ts";
import { packExamples } from "../data/packing.ts";
import { PyRandom } from "../data/random.ts";
import { shiftLabels } from "../model/gpt2.ts";
import { AdamW } from "./adamw.ts";
import { lrAt, type LrDecay, totalSteps as plannedTotal } from "./schedule.ts";
import type { LoraSettings } from "../model/lora.ts";

/** Training settings; the defaults are the notebook's. */
export interface TrainConfig {
  /** Examples per batch (per forward/backward pass). */
  batchSize: number;
  /**
   * Batches per optimizer step (default 1, as the notebook): their gradients are summed before clipping
   * and AdamW, with the loss normalised by the supervised tokens of all of them, so `batchSize` b with
   * `gradAccum` k computes the gradients of one batch of b·k examples (up to float rounding) in the memory
   * of a batch of b.
   */
  gradAccum?: number;
  epochs: number;
  /** Stop after this many optimizer steps (the notebook: 1000). */
  maxSteps: number;
  lr: number;
  warmupSteps: number;
  /** LinearLR start factor (the notebook: 0.1). */
  warmupStartFactor: number;
  /** After the warm-up: constant (the notebook, the default), or a linear or cosine decay to 0 at the last step. */
  lrDecay?: LrDecay;
  weightDecay: number;
  maxGradNorm: number;
  /** Log (and read the loss back) every this many steps (the notebook: 20). */
  logEvery: number;
  /** Seed of the data order. */
  seed: number;
  /** Pad each batch to its longest example, or to maxLength as the notebook does. */
  pad: "longest" | "max_length";
  maxLength: number;
  /**
   * Dropout at the config's rates while training (the notebook trains in `model.train()` mode: 0.1 for the
   * base model). Validation and evaluation never drop.
   */
  dropout: boolean;
  /**
   * Gradient checkpointing: each block's activations are recomputed in the backward pass instead of kept,
   * for the same gradients in less memory (about a third more compute). Default off.
   */
  gradientCheckpointing?: boolean;
  /** LoRA (`--lora`): the adapter trains and the base stays frozen (see `model/lora.ts`); unset: every parameter. */
  lora?: LoraSettings;
  /**
   * Packing (src/data/packing.ts): the training examples share rows of `maxLength` tokens, best-fit
   * decreasing, each attending only to itself; batches, epochs and steps then count rows. Validation stays
   * unpacked. Default off.
   */
  packing?: boolean;
}

/** The notebook's defaults. */
export const NOTEBOOK_TRAIN_CONFIG: TrainConfig = {
  batchSize: 4,
  epochs: 3,
  maxSteps: 1000,
  lr: 5e-5,
  warmupSteps: 50,
  warmupStartFactor: 0.1,
  weightDecay: 0.01,
  maxGradNorm: 1.0,
  logEvery: 20,
  seed: 42,
  pad: "longest",
  maxLength: 256,
  dropout: true,
};

/** Where the loop is: enough to resume exactly (the data order is a function of seed and epoch). */
export interface TrainPosition {
  /** Optimizer steps done. */
  step: number;
  epoch: number;
  /** Batches of the current epoch already done (with gradient accumulation, gradAccum per step). */
  batchInEpoch: number;
  /** Sum of this epoch's step losses so far, and how many steps (for the epoch's mean train loss). */
  epochLossSum: number;
  epochBatches: number;
  /**
   * Tokens (non-padding) of every batch trained on so far, TRL's `num_tokens`. Absent in checkpoints that did
   * not count it: counted from 0 there.
   */
  tokensSeen?: number;
}

/** What a logging step reports. */
export interface StepLog {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  /** lr after the scheduler step, as the notebook prints `scheduler.get_last_lr()`. */
  lr: number;
  gradNorm: number;
  /** Tokens (non-padding) per second since the previous log. */
  tokensPerSecond: number;
  /** Supervised tokens in the steps since the previous log. */
  supervisedTokens: number;
  /** Tokens (non-padding) trained on since the start of the run, resumes included (TRL's `num_tokens`). */
  tokensSeen: number;
  /**
   * The fraction of the supervised positions of the steps since the previous log whose argmax logit is the
   * target (TRL's `mean_token_accuracy`), counted on the device.
   */
  meanTokenAccuracy: number;
  elapsedSeconds: number;
  etaSeconds: number;
}

/** What an epoch end reports. */
export interface EpochLog {
  epoch: number;
  step: number;
  trainLoss: number;
  valLoss: number | undefined;
}

/** Callbacks and inputs of {@link trainLoop}. */
export interface TrainLoopArgs {
  model: GPT2;
  train: readonly SftExample[];
  val?: readonly SftExample[];
  padId: number;
  config: TrainConfig;
  /** Resume from here (with the optimizer state already imported into `optimizer`). */
  start?: TrainPosition;
  optimizer?: AdamW;
  onStep?: (log: StepLog) => void | Promise<void>;
  /**
   * Called after every optimizer step has been recorded, with the number of steps done, without reading
   * anything back (on the CPU the step has run; on WebGPU the GPU may still be working on it).
   */
  onStepRecorded?: (step: number) => void;
  onEpoch?: (log: EpochLog) => void | Promise<void>;
  /**
   * Also compute the validation loss every this many optimizer steps (default 0: only at the end of each
   * epoch, as the notebook), reported through `onEval` (without it nothing is computed); skipped at a step
   * where the epoch's own follows.
   */
  evalEvery?: number;
  onEval?: (log: { step: number; epoch: number; valLoss: number }) => void | Promise<void>;
  /** Called before each validation pass (the epoch's or `evalEvery`'s) with the number of examples. */
  onValidate?: (examples: number) => void;
  /** Called after every step; return true to stop (Ctrl-C). The loop then returns its position. */
  shouldStop?: () => boolean;
  /** Called every `checkpointEvery` steps and at the end with the position to save. */
  onCheckpoint?: (pos: TrainPosition, optimizer: AdamW) => Promise<void>;
  checkpointEvery?: number;
}

/** How the loop ended. */
export interface TrainResult {
  position: TrainPosition;
  optimizer: AdamW;
  stoppedBy: "done" | "max_steps" | "interrupt";
  seconds: number;
}

/** What the loop trains on: the examples, or with `packing` their packed rows (fixed: a function of the data). */
export function trainingRows(
  examples: readonly SftExample[],
  cfg: Pick<TrainConfig, "packing" | "maxLength">,
): readonly SftExample[] {
  return cfg.packing ? packExamples(examples, cfg.maxLength) : examples;
}

/** The order of the examples in `epoch` (a seeded shuffle, so a resumed run sees the same batches). */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  new PyRandom(seed * 1000 + epoch).shuffle(order);
  return order;
}

/** Mean loss over batches of `examples` (the notebook's `evaluate_loss`: mean of per-batch means). */
export async function evaluateLoss(
  model: GPT2,
  examples: readonly SftExample[],
  opts: { batchSize: number; padId: number; pad?: "longest" | "max_length"; maxLength?: number },
): Promise<number> {
  const be = model.be;
  const total = be.alloc(1, "f32", "val loss sum");
  let batches = 0;
  for (let i = 0; i < examples.length; i += opts.batchSize) {
    const batch = collate(examples.slice(i, i + opts.batchSize), opts);
    const { loss } = model.loss(batch);
    be.sum({ out: total, inp: loss, n: 1, accumulate: true });
    be.free(loss);
    batches++;
  }
  const sum = (await be.read(total))[0]!;
  be.free(total);
  return sum / Math.max(batches, 1);
}

/** Run the training loop. */
export async function trainLoop(args: TrainLoopArgs): Promise<TrainResult> {
  if (args.train.length === 0) throw new Error("Cannot train: the training set is empty");
  const loop = new Loop(args);
  let end: LoopEnd;
  try {
    end = await loop.run();
  } finally {
    loop.dispose();
  }
  const { optimizer } = loop;
  // the last checkpoint, unless a periodic one of this very step was just written (Ctrl-C right after a save)
  const alreadySaved = end.stoppedBy === "interrupt" && loop.lastCheckpoint === end.position.step;
  if (args.onCheckpoint && !alreadySaved) await args.onCheckpoint({ ...(end.resumeAt ?? end.position) }, optimizer);
  args.model.zeroGrad();
  return { position: end.position, optimizer, stoppedBy: end.stoppedBy, seconds: loop.seconds() };
}

/**
 * The one place a loop's position moves: past an optimizer step that ran the epoch's batches up to
 * `batchEnd` (exclusive), or to the start of the next epoch. Within an epoch `epochLossSum` stays what the
 * epoch started (or resumed) with: the running sum lives on the device, read into the positions handed out.
 */
function advance(pos: TrainPosition, to: { batchEnd: number; tokens: number } | "next epoch"): void {
  if (to === "next epoch") {
    pos.epoch++;
    pos.batchInEpoch = 0;
    pos.epochLossSum = 0;
    pos.epochBatches = 0;
  } else {
    pos.step++;
    pos.epochBatches++;
    pos.batchInEpoch = to.batchEnd;
    pos.tokensSeen = (pos.tokensSeen ?? 0) + to.tokens;
  }
}

/** How {@link Loop.run} ended: the final position, and where a later run continues when that differs. */
interface LoopEnd {
  stoppedBy: TrainResult["stoppedBy"];
  position: TrainPosition;
  resumeAt?: TrainPosition;
}

/** One {@link trainLoop} call: the epochs, their steps, and what they share (schedule, optimizer, logging). */
class Loop {
  /** Where the loop is; moved only by {@link advance}. */
  readonly pos: TrainPosition;
  readonly optimizer: AdamW;
  /** The step of the newest checkpoint known good (the one resumed from counts), for the divergence message. */
  lastCheckpoint: number | undefined;
  readonly #args: TrainLoopArgs;
  readonly #cfg: TrainConfig;
  readonly #be: GPT2["be"];
  readonly #totalSteps: number;
  readonly #accum: number;
  readonly #nBatches: number;
  /** The examples, or their packed rows ({@link trainingRows}). */
  readonly #train: readonly SftExample[];
  readonly #sched: Parameters<typeof lrAt>[1];
  /** The running sum of this epoch's step losses, on the device. */
  readonly #epochLoss: Buf;
  /** The supervised positions predicted right (argmax = target) since the last log, on the device. */
  readonly #correct: Buf;
  readonly #t0 = performance.now();
  /** What the steps since the last log did (`targets`: the supervised positions after the shift). */
  #sinceLog: { time: number; step: number; tokens: number; supervised: number; targets: number };

  constructor(args: TrainLoopArgs) {
    const { model, config: cfg } = args;
    const be = model.be;
    this.#args = args;
    this.#cfg = cfg;
    this.#be = be;
    this.#train = trainingRows(args.train, cfg);
    this.#totalSteps = plannedTotal({ examples: this.#train.length, ...cfg });
    this.#accum = cfg.gradAccum ?? 1;
    this.#nBatches = Math.ceil(this.#train.length / cfg.batchSize);
    this.optimizer = args.optimizer ??
      new AdamW(be, model.trainable, { lr: cfg.lr, weightDecay: cfg.weightDecay, maxGradNorm: cfg.maxGradNorm }, model);
    this.pos = args.start
      ? { ...args.start }
      : { step: 0, epoch: 0, batchInEpoch: 0, epochLossSum: 0, epochBatches: 0 };
    this.#sched = {
      baseLr: cfg.lr,
      warmupSteps: cfg.warmupSteps,
      startFactor: cfg.warmupStartFactor,
      decay: cfg.lrDecay,
      totalSteps: this.#totalSteps,
    };
    this.#epochLoss = be.alloc(1, "f32", "epoch loss sum");
    if (this.pos.epochLossSum) be.write(this.#epochLoss, Float32Array.of(this.pos.epochLossSum));
    this.#correct = be.alloc(1, "f32", "correct predictions");
    this.#sinceLog = { time: this.#t0, step: this.pos.step, tokens: 0, supervised: 0, targets: 0 };
    this.lastCheckpoint = args.start?.step;
  }

  /** The epochs from the position on, until the last one ends, the step cap is reached or a stop is asked. */
  async run(): Promise<LoopEnd> {
    const pos = this.pos;
    while (pos.epoch < this.#cfg.epochs) {
      const stop = await this.#epoch();
      if (stop === "interrupt") return { stoppedBy: "interrupt", position: await this.#position() };
      // a later run with a larger --max-steps continues from the next batch of this epoch
      const resumeAt = stop === "max_steps" && pos.batchInEpoch < this.#nBatches ? await this.#position() : undefined;
      // end of an epoch (or the step cap inside it): the notebook prints train and val loss then
      await this.#endEpoch();
      if (stop === "max_steps") return { stoppedBy: "max_steps", position: pos, resumeAt };
    }
    return { stoppedBy: pos.step >= this.#totalSteps ? "max_steps" : "done", position: pos };
  }

  /** Seconds since the loop was made. */
  seconds(): number {
    return (performance.now() - this.#t0) / 1000;
  }

  dispose(): void {
    this.#be.free(this.#epochLoss);
    this.#be.free(this.#correct);
  }

  /** The rest of the current epoch, one optimizer step at a time; says why it ended early, if it did. */
  async #epoch(): Promise<"max_steps" | "interrupt" | undefined> {
    const { pos } = this, cfg = this.#cfg, train = this.#train;
    const order = epochOrder(train.length, cfg.seed, pos.epoch);
    while (pos.batchInEpoch < this.#nBatches) {
      // this step's batches: gradAccum of them (fewer at the end of the epoch), each padded on its own
      const batches = [];
      const end = Math.min(this.#nBatches, pos.batchInEpoch + this.#accum);
      for (let k = pos.batchInEpoch; k < end; k++) {
        const idx = order.slice(k * cfg.batchSize, (k + 1) * cfg.batchSize);
        batches.push(
          collate(idx.map((i) => train[i]!), { padId: this.#args.padId, pad: cfg.pad, maxLength: cfg.maxLength }),
        );
      }
      const loss = this.#step(batches);
      advance(pos, { batchEnd: end, tokens: batches.reduce((n, b) => n + b.tokens, 0) });
      this.#args.onStepRecorded?.(pos.step);
      // let signal handlers run (Ctrl-C): on the CPU nothing in a step waits on the event loop
      await yieldToEventLoop();
      const stop = await this.#afterStep(loss, end >= this.#nBatches);
      if (stop) return stop;
    }
    return undefined;
  }

  /**
   * One optimizer step over `batches` (forward, backward, AdamW), recorded without reading anything back.
   * Returns the step's loss on the device (the caller frees it), also added to the epoch's sum.
   */
  #step(batches: readonly ReturnType<typeof collate>[]): Buf {
    const { model, config: cfg } = this.#args, be = this.#be, step = this.pos.step;
    // the loss of each is its summed cross-entropy over the supervised tokens of all of them, so the
    // gradients add up to those of one batch holding every example (the notebook's mean over its tokens)
    const counts = batches.map((b) => shiftLabels(b.labels, b.B, b.T).count);
    const normalizer = counts.reduce((a, b) => a + b, 0);
    model.zeroGrad();
    let loss: Buf | undefined;
    for (const [j, batch] of batches.entries()) {
      // a dropout seed per step and batch (and run seed), so a resumed run draws the same masks
      const dropoutSeed = cfg.dropout ? stepDropoutSeed(cfg.seed, step * this.#accum + j) : undefined;
      const checkpointing = cfg.gradientCheckpointing;
      const correct = this.#correct;
      const part = model.loss(batch, { backward: true, dropoutSeed, normalizer, checkpointing, correct }).loss;
      if (loss === undefined) loss = part;
      else {
        be.sum({ out: loss, inp: part, n: 1, accumulate: true });
        be.free(part);
      }
      this.#sinceLog.tokens += batch.tokens;
      this.#sinceLog.supervised += batch.supervised;
      this.#sinceLog.targets += counts[j]!;
    }
    this.optimizer.step(lrAt(step, this.#sched));
    be.sum({ out: this.#epochLoss, inp: loss!, n: 1, accumulate: true });
    return loss!;
  }

  /**
   * What follows a step: the log, the divergence check, the periodic validation and checkpoint, the step cap
   * and Ctrl-C. Frees `loss`. `epochEnds`: the step ran the epoch's last batch.
   */
  async #afterStep(loss: Buf, epochEnds: boolean): Promise<"max_steps" | "interrupt" | undefined> {
    const { pos } = this, args = this.#args, be = this.#be;
    const capNow = pos.step >= this.#totalSteps;
    const logNow = pos.step % this.#cfg.logEvery === 0 || capNow;
    const checkpointNow = !!(args.checkpointEvery && pos.step % args.checkpointEvery === 0 && args.onCheckpoint);
    // the loss is read (once) where it is logged and before anything is saved: a diverged step is never
    // checkpointed, whether the save is a periodic one, the last one or one asked for by Ctrl-C
    let lossValue: number | undefined;
    const checkedLoss = async (): Promise<number> => {
      if (lossValue === undefined) {
        lossValue = (await be.read(loss))[0]!;
        if (!Number.isFinite(lossValue)) throw new NonFiniteLossError(pos.step, lossValue, this.lastCheckpoint);
      }
      return lossValue;
    };
    let stopNow: boolean;
    try {
      if (logNow || checkpointNow || capNow || args.shouldStop?.()) await checkedLoss();
      if (logNow) await this.#log(checkedLoss);
      // a stop asked for during the step's callbacks counts at this step
      stopNow = args.shouldStop?.() ?? false;
      if (stopNow) await checkedLoss();
    } finally {
      be.free(loss);
    }
    if (
      args.evalEvery && pos.step % args.evalEvery === 0 && args.val?.length && !(epochEnds || capNow) && args.onEval
    ) {
      const valLoss = await this.#validate();
      await args.onEval({ step: pos.step, epoch: pos.epoch, valLoss });
    }
    if (checkpointNow) {
      await args.onCheckpoint!(await this.#position(), this.optimizer);
      this.lastCheckpoint = pos.step;
    }
    if (capNow) return "max_steps";
    stopNow ||= args.shouldStop?.() ?? false;
    return stopNow ? "interrupt" : undefined;
  }

  /** Report a logging step (`loss` reads the step's loss, checked) and start the next log's counts. */
  async #log(loss: () => Promise<number>): Promise<void> {
    const { pos } = this, since = this.#sinceLog;
    const gradNorm = (await this.#be.read(this.optimizer.gradNorm))[0]!;
    const correct = (await this.#be.read(this.#correct))[0]!;
    this.#be.zero(this.#correct);
    const now = performance.now();
    const elapsed = (now - this.#t0) / 1000;
    const perStep = (now - since.time) / 1000 / Math.max(pos.step - since.step, 1);
    await this.#args.onStep?.({
      step: pos.step,
      totalSteps: this.#totalSteps,
      epoch: pos.epoch,
      loss: await loss(),
      lr: lrAt(pos.step, this.#sched),
      gradNorm,
      tokensPerSecond: since.tokens / ((now - since.time) / 1000),
      supervisedTokens: since.supervised,
      tokensSeen: pos.tokensSeen ?? 0,
      meanTokenAccuracy: since.targets ? correct / since.targets : NaN,
      elapsedSeconds: elapsed,
      etaSeconds: perStep * (this.#totalSteps - pos.step),
    });
    this.#sinceLog = { time: now, step: pos.step, tokens: 0, supervised: 0, targets: 0 };
  }

  /** The epoch's mean train loss and validation loss reported, then on to the next epoch. */
  async #endEpoch(): Promise<void> {
    const { pos } = this, args = this.#args;
    const trainLoss = (await this.#be.read(this.#epochLoss))[0]! / Math.max(pos.epochBatches, 1);
    const valLoss = args.val?.length ? await this.#validate() : undefined;
    await args.onEpoch?.({ epoch: pos.epoch, step: pos.step, trainLoss, valLoss });
    this.#be.zero(this.#epochLoss);
    advance(pos, "next epoch");
  }

  /** The position with the epoch's loss sum read back: what a checkpoint or a stop hands out. */
  async #position(): Promise<TrainPosition> {
    return { ...this.pos, epochLossSum: (await this.#be.read(this.#epochLoss))[0]! };
  }

  /** The notebook's evaluate_loss on the validation set, batched and padded as training. */
  #validate(): Promise<number> {
    const args = this.#args, cfg = this.#cfg;
    args.onValidate?.(args.val?.length ?? 0);
    return evaluateLoss(args.model, args.val ?? [], {
      batchSize: cfg.batchSize,
      padId: args.padId,
      pad: cfg.pad,
      maxLength: cfg.maxLength,
    });
  }
}

/**
 * A NaN or infinite loss: the run stops at `step`. `lastCheckpoint` is the step of the newest checkpoint
 * written (or resumed from) before it, which is kept; undefined when there is none.
 */
export class NonFiniteLossError extends Error {
  constructor(readonly step: number, readonly value: number, readonly lastCheckpoint?: number) {
    super(
      `Training stopped: the loss became ${value} at step ${step}; ` +
        (lastCheckpoint === undefined
          ? "no checkpoint was written before it (lower --lr, or check the data)"
          : `the last good checkpoint, of step ${lastCheckpoint}, is kept`),
    );
    this.name = "NonFiniteLossError";
  }
}

/**
 * The dropout seed of batch `n` of a run (`n` = step · accumulation + batch): (seed · 10⁶ + n) mod 2³², exact
 * for every seed up to 2⁵³ (only its value mod 2³² reaches the hash; the model spreads it over its dropout
 * sites with gpt2.ts's dropoutSiteSeed).
 */
export function stepDropoutSeed(seed: number, n: number): number {
  return Number((BigInt(seed) * 1_000_000n + BigInt(n)) % 4294967296n);
}

/**
 * Give the event loop a turn (signal handlers, timers, I/O callbacks) without the ≥ 1 ms of a `setTimeout`:
 * `setImmediate` where the runtime has it (Deno, Bun, Node), else a message through a `MessageChannel`
 * (browsers).
 */
export function yieldToEventLoop(): Promise<void> {
  const g = globalThis as { setImmediate?: (cb: () => void) => unknown };
  if (typeof g.setImmediate === "function") return new Promise((resolve) => g.setImmediate!(resolve));
  if (typeof MessageChannel === "function") {
    return new Promise((resolve) => {
      const ch = new MessageChannel();
      ch.port1.onmessage = () => {
        ch.port1.close();
        resolve();
      };
      ch.port2.postMessage(null);
    });
  }
  return new Promise((resolve) => setTimeout(resolve, 0));
}
