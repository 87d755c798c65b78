/**
 * How much memory a training run needs, estimated before it starts: the weights, their gradients and
 * AdamW's two moments (4 floats per parameter), and the activations a step keeps for its backward pass,
 * at the chosen batch size and length. Training prints it and refuses, before loading any data, a run
 * that cannot fit, saying what would make it fit.
 *
 * The activations of one example of T tokens, per layer: the block's intermediate tensors (ln_1, qkv,
 * the attention output, its projection, the residual, ln_2, the MLP's input and GELU output of width
 * n_inner, its projection: (9·C + 2·n_inner) floats per token) and the attention probabilities (NH·T per
 * token); plus the LM head's logits and their gradient (2·V per token). At the real shape (12 layers,
 * C 768, T 256) that is 241 MB per example; measured, 225 MB (docs/PERFORMANCE.md, "gradient
 * accumulation": device buffers held at 4 × 1, 2 × 2, 1 × 4 on lavapipe).
 * @module
 */

import os from "node:os";
import type { GPT2Config } from "../model/config.ts";

/** The parts of the estimate, in bytes. */
export interface MemoryEstimate {
  parameters: number;
  weights: number;
  gradients: number;
  adamMoments: number;
  /** The activations of one micro-batch (`--batch-size` examples of `--max-length` tokens). */
  activations: number;
  total: number;
}

/** The number of parameters of `config` (embeddings tied with the LM head, as GPT-2's). */
export function parameterCount(c: GPT2Config): number {
  const C = c.nEmbd, F = c.nInner ?? 4 * C;
  const block = 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + 2 * C + (C * F + F) + (F * C + C);
  return c.vocabSize * C + c.nPositions * C + c.nLayer * block + 2 * C;
}

/** Estimate the memory of training `config` at `batchSize` examples of `maxLength` tokens per micro-batch. */
export function estimateTrainingMemory(
  c: GPT2Config,
  batchSize: number,
  maxLength: number,
  opts: {
    gradientCheckpointing?: boolean;
    /**
     * LoRA: the adapter's tensor count (`trainable`) has the gradients and moments, and with trainable token
     * rows (`tokenRows`) the embedding a gradient too; the frozen base has neither.
     */
    lora?: { trainable: number; tokenRows: boolean };
  } = {},
): MemoryEstimate {
  const P = parameterCount(c);
  const C = c.nEmbd, F = c.nInner ?? 4 * C, T = maxLength;
  const block = 9 * C + 2 * F + c.nHead * T;
  // with checkpointing each block keeps its output, and one block at a time is recomputed in full
  const blocks = opts.gradientCheckpointing ? c.nLayer * C + block : c.nLayer * block;
  const perToken = blocks + 2 * c.vocabSize;
  const activations = 4 * batchSize * T * perToken;
  const lora = opts.lora;
  const weights = 4 * (P + (lora?.trainable ?? 0));
  const gradients = lora ? 4 * (lora.trainable + (lora.tokenRows ? c.vocabSize * C : 0)) : 4 * P;
  const adamMoments = 8 * (lora ? lora.trainable : P);
  return {
    parameters: P,
    weights,
    gradients,
    adamMoments,
    activations,
    total: weights + gradients + adamMoments + activations,
  };
}

/** Bytes as "1.23 GB" / "456 MB". */
export function formatBytes(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(0)} MB`;
}

/** The line training prints: `Memory estimate: 2.54 GB = weights 408 MB + gradients … (batch 4 × 256 tokens)`. */
export function describeEstimate(e: MemoryEstimate, batchSize: number, maxLength: number): string {
  return `Memory estimate: ${formatBytes(e.total)} = weights ${formatBytes(e.weights)} + gradients ` +
    `${formatBytes(e.gradients)} + AdamW moments ${formatBytes(e.adamMoments)} + activations ` +
    `${formatBytes(e.activations)} (batch ${batchSize} × ${maxLength} tokens; ${(e.parameters / 1e6).toFixed(1)} M ` +
    "parameters)";
}

/**
 * Throw when the estimate cannot fit in `available` bytes (the machine's memory for the CPU backend),
 * naming the estimate and what would make it fit: a smaller `--batch-size` with `--grad-accum` to keep the
 * batch, a shorter `--max-length`, or (where `checkpointedTotal` is given: the estimate with it)
 * `--gradient-checkpointing`.
 */
export function checkFits(
  e: MemoryEstimate,
  available: number,
  where: string,
  run: { batchSize: number; maxLength: number; gradAccum: number; checkpointedTotal?: number },
): void {
  if (e.total <= available) return;
  const fixed = e.weights + e.gradients + e.adamMoments;
  const perExample = e.activations / run.batchSize;
  const room = available - fixed;
  const fits = Math.floor(room / perExample);
  const hint = room <= 0
    ? `the weights, gradients and AdamW moments alone (${formatBytes(fixed)}) exceed it: this model does not ` +
      "train here in full (a smaller model would)"
    : fits >= 1
    ? `--batch-size ${fits} --grad-accum ${Math.ceil((run.batchSize * run.gradAccum) / fits)} keeps the batch of ` +
      `${run.batchSize * run.gradAccum} in ${formatBytes(fixed + fits * perExample)}; or a shorter --max-length`
    : `even one example of ${run.maxLength} tokens needs ${formatBytes(perExample)} of activations: pass a ` +
      "shorter --max-length";
  const ckpt = run.checkpointedTotal !== undefined && run.checkpointedTotal < e.total
    ? `; or --gradient-checkpointing (about ${formatBytes(run.checkpointedTotal)}${
      run.checkpointedTotal <= available ? ", which fits" : ""
    })`
    : "";
  throw new Error(
    `Cannot train: the run needs about ${formatBytes(e.total)} and ${where} has ${formatBytes(available)}; ` +
      hint + ckpt,
  );
}

/** The memory a CPU run may use: the machine's total memory less 10 % for the system. */
export function cpuAvailableMemory(): number {
  return Math.floor(os.totalmem() * 0.9);
}
