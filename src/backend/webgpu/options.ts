/**
 * The WebGPU backend's choices: which matmul and attention kernels run, and how often recorded work is
 * submitted. Each has a parser for a flag or environment value (src/env.ts), whose error names the source.
 * @module
 */

import type { GpuDeviceOptions } from "../gpu_device.ts";
import type { MatmulCandidate } from "../matmul_tuner.ts";

/** Dispatches recorded before a batch is submitted at most (also the number of uniform slots). */
export const MAX_BATCH = 256;

/**
 * Which matmul kernel to use: "tiled" (kernels/matmul_tiled.wgsl, 64×64 blocks, split in K where a product
 * has few blocks and a long K: {@link splitKSlices}; the default), "large"
 * (matmul_large.wgsl: 128×128 blocks, 8×8 per invocation, double-buffered), "large-f16" (the
 * large kernel with f16 arithmetic accumulated in f32: opt-in, needs `shader-f16`, less accurate),
 * "tune" (per shape, the fastest of tiled, large and split-K as timed on this GPU: `matmul_tuner.ts`; needs
 * `timestamp-query`) or "naive" (one output per invocation, kept for teaching and testing). "auto" (per
 * product: "large" when it still gets at least {@link AUTO_LARGE_MIN_GROUPS} workgroups, else "tiled") is an
 * unmeasured heuristic that only bench/ asks for (`--matmul-kernels`): not a value of `GPT2_SFT_MATMUL` or
 * `--matmul`.
 */
export type MatmulKernel = "tiled" | "naive" | "large" | "large-f16" | "auto" | "tune";

/** The matmul kernels a user can choose (`GPT2_SFT_MATMUL`, `--matmul`), in the order the docs list them. */
export const MATMUL_KERNELS: readonly MatmulKernel[] = ["tiled", "large", "tune", "large-f16", "naive"];

/** Every matmul kernel, "auto" included (bench/'s `--matmul-kernels`). */
export const ALL_MATMUL_KERNELS: readonly MatmulKernel[] = ["tiled", "large", "auto", "tune", "large-f16", "naive"];

/**
 * "auto" takes the 128×128 kernel only when the product still fills this many workgroups: a big block
 * does more work per byte read, but few blocks can leave a large GPU's cores idle (1024×768 gives 48).
 * A guess until a GPU has measured it: `bench/gpu_check.sh` times tiled, large and auto side by side.
 */
export const AUTO_LARGE_MIN_GROUPS = 96;

/**
 * Split-K ("tiled", the default, and "auto"): how many slices of K a product that would run in 64×64
 * blocks is cut into, 1 for none. Only a product with fewer than 64 blocks and K ≥ 1024 is split (the LM
 * head's backward dx: 32×768 outputs = 12 blocks, K = 21191; matrix–vector products when generating), into
 * enough slices for about 256 workgroups, each at least 512 deep, the partial results capped at 4 M floats.
 * Unsplit, the head's dx would keep 12 workgroups busy for 21191 steps of k while an H100 has 132 SMs; split
 * it is 22 slices (264 workgroups) plus a reduce. The thresholds are a guess for a GPU to check
 * (`bench --profile` keys each product by shape; `GPT2_SFT_MATMUL=tune` times split against unsplit).
 */
export function splitKSlices(M: number, N: number, K: number): number {
  const blocks = Math.ceil(M / 64) * Math.ceil(N / 64);
  if (blocks >= 64 || K < 1024) return 1;
  const s = Math.min(Math.ceil(K / 512), Math.ceil(256 / blocks), Math.floor((4 << 20) / (M * N)));
  if (s < 2) return 1;
  // slices of whole 16-deep tiles; recount, as rounding KC up can leave fewer slices
  const kc = Math.ceil(Math.ceil(K / s) / 16) * 16;
  return Math.ceil(K / kc);
}

/**
 * Parse a matmul kernel name (from a flag or `GPT2_SFT_MATMUL`); `what` names the source in the error.
 * `choices`: the names accepted (default the user-facing {@link MATMUL_KERNELS}).
 */
export function parseMatmulKernel(
  v: string,
  what = "matmul kernel",
  choices: readonly MatmulKernel[] = MATMUL_KERNELS,
): MatmulKernel {
  if ((choices as readonly string[]).includes(v)) return v as MatmulKernel;
  throw new Error(`Invalid ${what} "${v}": expected one of ${choices.join(", ")}`);
}

/**
 * Which training attention kernels to use: "matmul" (the default: attention as PyTorch's eager GPT-2 computes
 * it, batched tiled products Q·Kᵀ and P·V from matmul_batched.wgsl around the softmax of
 * attention_softmax.wgsl, the T×T probabilities saved for the backward); "rows" (attention_forward/
 * backward.wgsl: the same saved probabilities, a workgroup per query row doing its own dot products: simpler
 * to read, 3× slower on lavapipe); or "flash" (attention_flash_*.wgsl: an online softmax that saves one
 * log-sum-exp per row and recomputes the probabilities in the backward: B·NH·T floats instead of B·NH·T², so
 * long sequences fit the binding limits).
 */
export type AttentionKernel = "matmul" | "rows" | "flash";
export const ATTENTION_KERNELS: readonly AttentionKernel[] = ["matmul", "rows", "flash"];

/** Parse an attention kernel name (from a flag or `GPT2_SFT_ATTENTION`). */
export function parseAttentionKernel(v: string, what = "attention kernel"): AttentionKernel {
  if ((ATTENTION_KERNELS as readonly string[]).includes(v)) return v as AttentionKernel;
  throw new Error(`Invalid ${what} "${v}": expected one of ${ATTENTION_KERNELS.join(", ")}`);
}

/** Options for `WebGpuBackend.create`. */
export interface WebGpuBackendOptions extends GpuDeviceOptions {
  /** Default "tiled" (the front doors pass `GPT2_SFT_MATMUL`). */
  matmul?: MatmulKernel;
  /** Default "matmul" (the front doors pass `GPT2_SFT_ATTENTION`). */
  attention?: AttentionKernel;
  /**
   * Time every dispatch on the GPU (timestamp queries; see `gpu_profiler.ts` and `WebGpuBackend.profile`).
   * Default off (the front doors pass `GPT2_SFT_PROFILE=1`).
   */
  profile?: boolean;
  /**
   * For tests and experiments: run every matmul as this candidate (a kernel and a number of K slices)
   * instead of what `matmul` chooses, e.g. `{ name: "large split 3", kernel: "large", slices: 3 }`.
   */
  matmulCandidate?: MatmulCandidate;
  /**
   * Submit the recorded work every this many dispatches (1 … 256). Default 256. Smaller batches start a GPU
   * sooner after a sync, at the cost of more submits; which is better on a real GPU is for
   * `bench/gpu_check.sh` to measure (`deno task bench --flush-every N`; under Deno on lavapipe a submit waits
   * for the previous one to finish, so small batches are slow there). Not user-facing: no benefit measured.
   */
  flushEvery?: number;
  /**
   * After each wait for the GPU (`sync`, `read`), submit the first batch after 16 dispatches and double the
   * batch at each submit up to `flushEvery`, so that an idle GPU gets work within ≈ 0.3 ms of recording
   * instead of ≈ 5 ms (256 dispatches at GPT-2's real shape), for ≈ 4 more submits per wait. Default on;
   * `deno task bench --no-flush-ramp` turns it off to compare. Not user-facing: no benefit measured.
   */
  flushRamp?: boolean;
  /**
   * For tests: split tensors as if one storage binding held at most this many bytes (a multiple of 16, at
   * least 1024, capped at the device's maxStorageBufferBindingSize), so that a tiny model exercises the
   * paths that a real GPT-2's token embedding and logits take on a device whose bindings they exceed
   * (`split.ts`). Every dispatch is then held to this limit. Default: the device's limit.
   */
  maxBindingBytes?: number;
}

/** Check the `maxBindingBytes` option (see {@link WebGpuBackendOptions.maxBindingBytes}). */
export function checkMaxBindingBytes(v: number): number {
  if (!Number.isInteger(v) || v < 1024 || v % 16 !== 0) {
    throw new Error(`Invalid maxBindingBytes ${v}: expected a whole number of bytes, at least 1024, a multiple of 16`);
  }
  return v;
}

/** Parse a flush interval (an option or bench's `--flush-every`): a whole number of dispatches, 1 … 256. */
export function parseFlushEvery(v: string | number, what = "flush interval"): number {
  const n = typeof v === "number" ? v : /^\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_BATCH) {
    throw new Error(`Invalid ${what} "${v}": expected a whole number of dispatches from 1 to ${MAX_BATCH}`);
  }
  return n;
}
