/**
 * References for the schedule tests: what the notebook prints as `get_last_lr()`, and the lr torch itself
 * holds, by replaying LinearLR's recursion (src/train/schedule.ts uses torch's closed form).
 * @module
 */

import { lrAt, type ScheduleOptions } from "../../src/train/schedule.ts";

/**
 * `scheduler.get_last_lr()[0]` after `stepsDone` calls of `scheduler.step()` (what the notebook prints in
 * `Step {step} | … | LR: …`, with `step` counted from 1): the lr the next optimizer step will use.
 */
export function lastLr(stepsDone: number, opts: ScheduleOptions): number {
  return lrAt(stepsDone, opts);
}

/**
 * The lr torch itself holds at `last_epoch = step`, by replaying LinearLR's recursive `get_lr()` from the
 * start (O(min(step, warmupSteps))). Differs from {@link lrAt} by float rounding only (≤ ~1e-15 relative).
 */
export function torchRecursiveLr(step: number, opts: ScheduleOptions): number {
  if (!Number.isInteger(step) || step < 0) throw new Error(`Invalid schedule step: ${step} (want an integer ≥ 0)`);
  const start = opts.startFactor ?? 0.1;
  const end = opts.endFactor ?? 1.0;
  const total = opts.warmupSteps;
  let lr = opts.baseLr * start; // last_epoch == 0
  if (total === 0) return opts.baseLr * end;
  for (let e = 1; e <= Math.min(step, total); e++) {
    lr = lr * (1.0 + (end - start) / (total * start + (e - 1) * (end - start)));
  }
  return lr; // last_epoch > total_iters: the lr stays as it is
}
