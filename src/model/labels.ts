/**
 * The training targets of a batch: Hugging Face's labels shifted by one, and the rows that carry one (where
 * the LM head and the cross-entropy run).
 * @module
 */

import type { RowRun } from "../autograd/ops.ts";

/**
 * Shift HF labels by one: `targets[b,t] = labels[b,t+1]`, `targets[b,T−1] = −100`. Returns the targets
 * and the number of supervised positions.
 */
export function shiftLabels(labels: Int32Array, B: number, T: number): { targets: Int32Array; count: number } {
  const targets = new Int32Array(B * T).fill(-100);
  let count = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T - 1; t++) {
      const y = labels[b * T + t + 1]!;
      targets[b * T + t] = y;
      if (y !== -100) count++;
    }
  }
  return { targets, count };
}

/** The positions with a target (≠ −100) as runs of consecutive rows of the flattened [B·T] batch. */
export function supervisedRuns(targets: Int32Array): RowRun[] {
  const runs: RowRun[] = [];
  for (let i = 0; i < targets.length; i++) {
    if (targets[i] === -100) continue;
    const last = runs[runs.length - 1];
    if (last && last.src + last.len === i) last.len++;
    else runs.push({ src: i, len: 1 });
  }
  return runs;
}
