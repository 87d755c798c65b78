/**
 * The notebook's learning-rate schedule: `torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1,
 * end_factor=1.0, total_iters=WARMUP_STEPS)`, stepped once after every optimizer step, so the rate rises
 * linearly from `0.1·base` to `base` over the warm-up and then stays constant (there is no decay).
 *
 * How torch sequences it, with `k` counting optimizer steps from 0:
 * - constructing the scheduler sets `last_epoch = 0` and the group's lr to `base·start_factor`;
 * - optimizer step `k` runs with the lr for `last_epoch = k` ({@link lrAt});
 * - `scheduler.step()` then moves to `last_epoch = k + 1`, and `scheduler.get_last_lr()` (what the notebook
 *   prints after step `k + 1`, counted from 1) is the lr for `last_epoch = k + 1`, `lrAt(k + 1)`.
 *
 * torch's `step()` computes the rate recursively (`get_lr()`: the previous rate times
 * `1 + (end − start) / (total·start + (last_epoch − 1)·(end − start))`), which accumulates float rounding;
 * this module uses torch's closed form (`_get_closed_form_lr`:
 * `base·(start + (end − start)·min(total, last_epoch)/total)`). The two differ by a few ulp: for the
 * notebook's settings (base 5e-5, 50 warm-up steps) at most 6.4e-16 relative (e.g. step 50: torch
 * 4.999999999999998e-05, closed form 5e-05); the tests replay torch's recursion and check the two agree.
 * @module
 */

/** Settings of the warm-up schedule (torch's LinearLR with end_factor 1.0 unless given). */
export interface ScheduleOptions {
  /** The optimizer's lr (the notebook: 5e-5). */
  baseLr: number;
  /** LinearLR's `total_iters` (the notebook: WARMUP_STEPS = 50). 0 means no warm-up. */
  warmupSteps: number;
  /** LinearLR's `start_factor` (the notebook: 0.1; torch's default is 1/3). */
  startFactor?: number;
  /** LinearLR's `end_factor` (default 1.0, as the notebook). */
  endFactor?: number;
  /**
   * After the warm-up: "constant" (the notebook: no decay), or a decay to 0 at `totalSteps` — "linear"
   * (transformers' `get_linear_schedule_with_warmup`) or "cosine" (`get_cosine_schedule_with_warmup`, half a
   * cycle). The warm-up itself stays the notebook's LinearLR from `startFactor`.
   */
  decay?: LrDecay;
  /** The optimizer steps of the run (needed by a decay). */
  totalSteps?: number;
}

/** The learning-rate shapes after the warm-up (see {@link ScheduleOptions.decay}). */
export const LR_DECAYS = ["constant", "linear", "cosine"] as const;
export type LrDecay = typeof LR_DECAYS[number];

function check(step: number, opts: ScheduleOptions): void {
  if (!Number.isInteger(step) || step < 0) throw new Error(`Invalid schedule step: ${step} (want an integer ≥ 0)`);
  if (!Number.isInteger(opts.warmupSteps) || opts.warmupSteps < 0) {
    throw new Error(`Invalid schedule option warmupSteps: ${opts.warmupSteps} (want an integer ≥ 0)`);
  }
}

/**
 * The lr optimizer step `step` runs with (counted from 0: step 0 uses `baseLr·startFactor`), i.e. LinearLR's
 * closed form at `last_epoch = step`.
 */
export function lrAt(step: number, opts: ScheduleOptions): number {
  check(step, opts);
  const start = opts.startFactor ?? 0.1;
  const end = opts.endFactor ?? 1.0;
  const total = opts.warmupSteps;
  const decay = opts.decay ?? "constant";
  if (decay !== "constant" && step >= total) {
    return opts.baseLr * end * decayFactor(step, decay, total, opts.totalSteps);
  }
  // torch would divide by zero for total_iters = 0; treat it as "no warm-up" (constant end·base).
  if (total === 0) return opts.baseLr * end;
  // Same operation order as torch's `_get_closed_form_lr`, so the float result is the same.
  return opts.baseLr * (start + (end - start) * Math.min(total, step) / total);
}

/** transformers' lr_lambda after the warm-up: from 1 at the warm-up's end down to 0 at `totalSteps`. */
function decayFactor(step: number, decay: LrDecay, warmup: number, totalSteps: number | undefined): number {
  if (totalSteps === undefined || !Number.isInteger(totalSteps) || totalSteps < 1) {
    throw new Error(`Invalid schedule: the ${decay} decay needs totalSteps, a whole number ≥ 1 (got ${totalSteps})`);
  }
  const progress = Math.min(1, (step - warmup) / Math.max(1, totalSteps - warmup)); // 0 stays 0 past the end
  if (decay === "linear") return Math.max(0, 1 - progress);
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}

/** Sizes of the run, as the notebook's training-configuration cell. */
export interface TotalStepsOptions {
  /** Number of training examples (len(train_dataset)). */
  examples: number;
  batchSize: number;
  epochs: number;
  /** MAX_STEPS (the notebook: 1000); null or undefined: no cap. */
  maxSteps?: number | null;
  /** Batches whose gradients one optimizer step sums (default 1, as the notebook). */
  gradAccum?: number;
}

/**
 * `min(len(train_dataloader)·epochs, maxSteps)`, where `len(train_dataloader) = ceil(examples/batchSize)`
 * (torch's DataLoader keeps the last partial batch); with gradient accumulation the optimizer steps of an
 * epoch are `ceil(len(train_dataloader)/gradAccum)` (the last one sums the batches left).
 */
export function totalSteps(opts: TotalStepsOptions): number {
  const { examples, batchSize, epochs, maxSteps } = opts;
  const accum = opts.gradAccum ?? 1;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new Error(`Invalid batchSize: ${batchSize} (want an integer ≥ 1)`);
  }
  if (!Number.isInteger(accum) || accum < 1) throw new Error(`Invalid gradAccum: ${accum} (want an integer ≥ 1)`);
  if (!Number.isInteger(examples) || examples < 0) throw new Error(`Invalid examples: ${examples}`);
  if (!Number.isInteger(epochs) || epochs < 0) throw new Error(`Invalid epochs: ${epochs}`);
  const estimated = Math.ceil(Math.ceil(examples / batchSize) / accum) * epochs;
  return maxSteps === null || maxSteps === undefined ? estimated : Math.min(estimated, maxSteps);
}
