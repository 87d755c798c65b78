/**
 * The training loop, as the notebook's Part 5: shuffled batches, masked cross-entropy, backward, global
 * grad-norm clipping, AdamW, the LinearLR warmup, validation loss each epoch. It only orchestrates: the
 * maths is in the model, the optimizer and the backend; display and files are the caller's callbacks.
 *
 * Nothing is read back from the device inside a step except at logging steps (the loss and grad norm), at
 * checkpoint steps and when a stop is asked for: there a NaN or infinite loss stops the run before anything
 * is saved. After each step the event loop gets a turn, so Ctrl-C is seen within one step on every backend.
 * @module
 */

import type { Buf } from "../backend/backend.ts";
import type { GPT2 } from "../model/gpt2.ts";
import { collate, type SftExample } from "../data/sft_dataset.ts";
import { PyRandom } from "../data/random.ts";
import { shiftLabels } from "../model/gpt2.ts";
import { AdamW } from "./adamw.ts";
import { lrAt, type LrDecay, totalSteps as plannedTotal } from "./schedule.ts";

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
  const { model, train, config: cfg } = args;
  const be = model.be;
  if (train.length === 0) throw new Error("Cannot train: the training set is empty");
  const totalSteps = plannedTotal({ examples: train.length, ...cfg });
  const accum = cfg.gradAccum ?? 1;
  // the notebook's evaluate_loss on the validation set, batched and padded as training
  const validate = () => {
    args.onValidate?.(args.val?.length ?? 0);
    return evaluateLoss(model, args.val ?? [], {
      batchSize: cfg.batchSize,
      padId: args.padId,
      pad: cfg.pad,
      maxLength: cfg.maxLength,
    });
  };
  const optimizer = args.optimizer ??
    new AdamW(be, model.params, { lr: cfg.lr, weightDecay: cfg.weightDecay, maxGradNorm: cfg.maxGradNorm }, model);
  const pos: TrainPosition = args.start
    ? { ...args.start }
    : { step: 0, epoch: 0, batchInEpoch: 0, epochLossSum: 0, epochBatches: 0 };
  const sched = {
    baseLr: cfg.lr,
    warmupSteps: cfg.warmupSteps,
    startFactor: cfg.warmupStartFactor,
    decay: cfg.lrDecay,
    totalSteps,
  };
  const epochLoss: Buf = be.alloc(1, "f32", "epoch loss sum");
  if (pos.epochLossSum) be.write(epochLoss, Float32Array.of(pos.epochLossSum));
  const t0 = performance.now();
  let lastLogTime = t0, lastLogStep = pos.step, tokensSinceLog = 0, supervisedSinceLog = 0;
  let stoppedBy: TrainResult["stoppedBy"] = "done";
  // the step of the newest checkpoint known good (the one resumed from counts), for the divergence message
  let lastCheckpoint: number | undefined = args.start?.step;
  // where a run stopped by the step cap in the middle of an epoch continues (else: the position at the end)
  let resumeAt: TrainPosition | undefined;
  try {
    outer: for (; pos.epoch < cfg.epochs; pos.epoch++) {
      const order = epochOrder(train.length, cfg.seed, pos.epoch);
      const nBatches = Math.ceil(train.length / cfg.batchSize);
      for (; pos.batchInEpoch < nBatches; pos.batchInEpoch++) {
        // this step's batches: gradAccum of them (fewer at the end of the epoch), each padded on its own
        const batches = [];
        const first = pos.batchInEpoch, end = Math.min(nBatches, first + accum);
        for (let k = first; k < end; k++) {
          const idx = order.slice(k * cfg.batchSize, (k + 1) * cfg.batchSize);
          batches.push(
            collate(idx.map((i) => train[i]!), { padId: args.padId, pad: cfg.pad, maxLength: cfg.maxLength }),
          );
        }
        pos.batchInEpoch = end - 1;
        // the loss of each is its summed cross-entropy over the supervised tokens of all of them, so the
        // gradients add up to those of one batch holding every example (the notebook's mean over its tokens)
        const normalizer = batches.reduce((n, b) => n + shiftLabels(b.labels, b.B, b.T).count, 0);
        model.zeroGrad();
        let loss: Buf | undefined;
        for (const [j, batch] of batches.entries()) {
          // a dropout seed per step and batch (and run seed), so a resumed run draws the same masks
          const dropoutSeed = cfg.dropout ? stepDropoutSeed(cfg.seed, pos.step * accum + j) : undefined;
          const part = model.loss(batch, { backward: true, dropoutSeed, normalizer }).loss;
          if (loss === undefined) loss = part;
          else {
            be.sum({ out: loss, inp: part, n: 1, accumulate: true });
            be.free(part);
          }
          tokensSinceLog += batch.tokens;
          supervisedSinceLog += batch.supervised;
        }
        optimizer.step(lrAt(pos.step, sched));
        be.sum({ out: epochLoss, inp: loss!, n: 1, accumulate: true });
        pos.step++;
        pos.epochBatches++;
        args.onStepRecorded?.(pos.step);
        // let signal handlers run (Ctrl-C): on the CPU nothing in a step waits on the event loop
        await yieldToEventLoop();
        const capNow = pos.step >= totalSteps;
        const logNow = pos.step % cfg.logEvery === 0 || capNow;
        const checkpointNow = !!(args.checkpointEvery && pos.step % args.checkpointEvery === 0 && args.onCheckpoint);
        // the loss is read (once) where it is logged and before anything is saved: a diverged step is never
        // checkpointed, whether the save is a periodic one, the last one or one asked for by Ctrl-C
        let lossValue: number | undefined;
        const checkedLoss = async (): Promise<number> => {
          if (lossValue === undefined) {
            lossValue = (await be.read(loss!))[0]!;
            if (!Number.isFinite(lossValue)) throw new NonFiniteLossError(pos.step, lossValue, lastCheckpoint);
          }
          return lossValue;
        };
        let stopNow: boolean;
        try {
          if (logNow || checkpointNow || capNow || args.shouldStop?.()) await checkedLoss();
          if (logNow) {
            const gradNorm = (await be.read(optimizer.gradNorm))[0]!;
            const now = performance.now();
            const elapsed = (now - t0) / 1000;
            const perStep = (now - lastLogTime) / 1000 / Math.max(pos.step - lastLogStep, 1);
            await args.onStep?.({
              step: pos.step,
              totalSteps,
              epoch: pos.epoch,
              loss: await checkedLoss(),
              lr: lrAt(pos.step, sched),
              gradNorm,
              tokensPerSecond: tokensSinceLog / ((now - lastLogTime) / 1000),
              supervisedTokens: supervisedSinceLog,
              elapsedSeconds: elapsed,
              etaSeconds: perStep * (totalSteps - pos.step),
            });
            lastLogTime = now;
            lastLogStep = pos.step;
            tokensSinceLog = 0;
            supervisedSinceLog = 0;
          }
          // a stop asked for during the step's callbacks counts at this step
          stopNow = args.shouldStop?.() ?? false;
          if (stopNow) await checkedLoss();
        } finally {
          be.free(loss!);
        }
        const epochEnds = pos.batchInEpoch + 1 >= nBatches || capNow;
        if (args.evalEvery && pos.step % args.evalEvery === 0 && args.val?.length && !epochEnds && args.onEval) {
          const valLoss = await validate();
          await args.onEval({ step: pos.step, epoch: pos.epoch, valLoss });
        }
        if (checkpointNow) {
          pos.epochLossSum = (await be.read(epochLoss))[0]!;
          await args.onCheckpoint!({ ...pos, batchInEpoch: pos.batchInEpoch + 1 }, optimizer);
          lastCheckpoint = pos.step;
        }
        if (capNow) {
          pos.batchInEpoch++;
          stoppedBy = "max_steps";
          // a later run with a larger --max-steps continues from the next batch of this epoch
          if (pos.batchInEpoch < nBatches) {
            resumeAt = { ...pos, epochLossSum: (await be.read(epochLoss))[0]! };
          }
          break;
        }
        stopNow ||= args.shouldStop?.() ?? false;
        if (stopNow) {
          pos.batchInEpoch++;
          pos.epochLossSum = (await be.read(epochLoss))[0]!;
          stoppedBy = "interrupt";
          break outer;
        }
      }
      // end of an epoch (or the step cap inside it): the notebook prints train and val loss then
      const trainLoss = (await be.read(epochLoss))[0]! / Math.max(pos.epochBatches, 1);
      const valLoss = args.val?.length ? await validate() : undefined;
      await args.onEpoch?.({ epoch: pos.epoch, step: pos.step, trainLoss, valLoss });
      be.zero(epochLoss);
      pos.epochLossSum = 0;
      pos.epochBatches = 0;
      pos.batchInEpoch = 0;
      if (stoppedBy === "max_steps") {
        pos.epoch++;
        break;
      }
    }
    if (stoppedBy === "done" && pos.step >= totalSteps) stoppedBy = "max_steps";
  } finally {
    be.free(epochLoss);
  }
  // the last checkpoint, unless a periodic one of this very step was just written (Ctrl-C right after a save)
  const alreadySaved = stoppedBy === "interrupt" && lastCheckpoint === pos.step;
  if (args.onCheckpoint && !alreadySaved) await args.onCheckpoint({ ...(resumeAt ?? pos) }, optimizer);
  model.zeroGrad();
  return { position: pos, optimizer, stoppedBy, seconds: (performance.now() - t0) / 1000 };
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
 * for every seed up to 2⁵³ (only its value mod 2³² reaches the hash; the model spreads it over its dropout sites with gpt2.ts's
 * dropoutSiteSeed).
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
