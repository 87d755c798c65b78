/**
 * The WebGPU backend: every {@link Backend} op as a dispatch of a hand-written WGSL kernel from
 * `kernels/` (read the kernel headers for the maths, bindings and dispatch layouts).
 *
 * Moving parts, in the order a call meets them:
 * - **Buffers** come from a pool keyed by size class (powers of two, with quarter steps above 4 KiB), so
 *   the many same-sized activations and gradients of a training step are recycled instead of created.
 *   `alloc` zero-fills with `clearBuffer` in the command stream, so reuse is ordered after earlier uses.
 *   `allocGroup` puts many buffers (the parameters, their gradients, AdamW's moments) side by side in a
 *   few exact-size buffers, each view bound as its own range: AdamW and the gradient norm then take one
 *   dispatch per chunk, not one per parameter.
 * - **Pipelines** are cached per kernel entry point (an object key) and override values, specialised
 *   with WGSL `override` constants, never by editing shader text.
 * - **Uniform parameters** (sizes, scalars) of each dispatch go into its own 256-byte slot of a ring
 *   buffer, written with one `writeBuffer` just before the batch is submitted.
 * - **Dispatch** records compute passes into one command encoder; the batch is submitted when the host
 *   needs the results (`read`, `sync`), before a host write (`write`, `upload`), or every
 *   {@link MAX_BATCH} dispatches (fewer with `GPT2_SFT_FLUSH_EVERY`); after each wait for the GPU the
 *   batches start at 16 dispatches and double (`GPT2_SFT_FLUSH_RAMP`), so an idle GPU gets work at once.
 *   Nothing is read back except in `read()`.
 * - Workgroup counts above 65535 (maxComputeWorkgroupsPerDimension) become 2D grids; the kernels
 *   linearise `workgroup_id` and skip the excess.
 * - WebGPU forbids binding one buffer twice in a dispatch when one binding is writable: ops whose output
 *   may alias an input (`add` with out = a, `crossEntropy` with dlogits = logits) bind it once and tell
 *   the kernel with an override; any other aliasing is reported as an error naming the op. Views of one
 *   group may be written side by side in one dispatch (the embedding's two gradients), never written
 *   beside a read of the same group.
 * @module
 */

import {
  type AttentionDropout,
  type Backend,
  type Buf,
  type BufGroup,
  type DType,
  groupLayout,
  groupViewLabel,
  type MatmulArgs,
  type OpArgs,
  quarterStepClass,
} from "./backend.ts";
import { dropoutParams } from "./dropout_hash.ts";
import { type GpuDeviceOptions, requestGpuDevice } from "./gpu_device.ts";
import { GpuProfiler } from "./gpu_profiler.ts";
import { type KernelTime, matmulNote } from "./profile.ts";
import { type MatmulCandidate, matmulCandidates, MatmulTuner, TUNE_RUNS, type TunedShape } from "./matmul_tuner.ts";

import adamwSrc from "../../kernels/adamw.wgsl" with { type: "text" };
import addSrc from "../../kernels/add.wgsl" with { type: "text" };
import attentionBackwardSrc from "../../kernels/attention_backward.wgsl" with { type: "text" };
import attentionCachedSrc from "../../kernels/attention_cached.wgsl" with { type: "text" };
import attentionForwardSrc from "../../kernels/attention_forward.wgsl" with { type: "text" };
import attentionSoftmaxSrc from "../../kernels/attention_softmax.wgsl" with { type: "text" };
import crossEntropySrc from "../../kernels/cross_entropy.wgsl" with { type: "text" };
import dropoutSrc from "../../kernels/dropout.wgsl" with { type: "text" };
import embeddingBackwardSrc from "../../kernels/embedding_backward.wgsl" with { type: "text" };
import embeddingForwardSrc from "../../kernels/embedding_forward.wgsl" with { type: "text" };
import geluBackwardSrc from "../../kernels/gelu_backward.wgsl" with { type: "text" };
import geluForwardSrc from "../../kernels/gelu_forward.wgsl" with { type: "text" };
import globalNormSrc from "../../kernels/global_norm.wgsl" with { type: "text" };
import layernormBackwardSrc from "../../kernels/layernorm_backward.wgsl" with { type: "text" };
import layernormForwardSrc from "../../kernels/layernorm_forward.wgsl" with { type: "text" };
import matmulNaiveSrc from "../../kernels/matmul_naive.wgsl" with { type: "text" };
import matmulTiledSrc from "../../kernels/matmul_tiled.wgsl" with { type: "text" };
import matmulLargeSrc from "../../kernels/matmul_large.wgsl" with { type: "text" };
import matmulBatchedSrc from "../../kernels/matmul_batched.wgsl" with { type: "text" };
import attentionFlashForwardSrc from "../../kernels/attention_flash_forward.wgsl" with { type: "text" };
import attentionFlashBackwardSrc from "../../kernels/attention_flash_backward.wgsl" with { type: "text" };
import matmulLargeF16Src from "../../kernels/matmul_large_f16.wgsl" with { type: "text" };
import scaleSrc from "../../kernels/scale.wgsl" with { type: "text" };
import sumSrc from "../../kernels/sum.wgsl" with { type: "text" };
import sumRowsSrc from "../../kernels/sum_rows.wgsl" with { type: "text" };
import splitKReduceSrc from "../../kernels/split_k_reduce.wgsl" with { type: "text" };
import { readEnv } from "../runtime.ts";

// WebGPU flag values (numeric, so that they work before Dawn's globals are installed).
const USAGE_MAP_READ = 0x0001;
const USAGE_COPY_SRC = 0x0004;
const USAGE_COPY_DST = 0x0008;
const USAGE_UNIFORM = 0x0040;
const USAGE_STORAGE = 0x0080;
const STAGE_COMPUTE = 0x4;
const MAP_MODE_READ = 0x0001;

/** Dispatches recorded before a batch is submitted (also the number of uniform slots). */
const MAX_BATCH = 256;
/** Bytes per uniform slot (minUniformBufferOffsetAlignment is at most 256). */
const UNIFORM_SLOT = 256;
/** Bind groups kept before the cache starts over (a training step uses a few hundred). */
const MAX_BIND_GROUPS = 8192;
/** maxComputeWorkgroupsPerDimension's guaranteed value. */
const MAX_GROUPS_PER_DIM = 65535;

/** One WGSL file. */
interface KernelFile {
  readonly file: string;
  readonly code: string;
}

/**
 * One entry point of a kernel file with its binding layout: binding 0 is the uniform parameters, laid
 * out as `params` says (one 4-byte field per letter: u = u32, i = i32, f = f32); bindings 1… are storage
 * buffers, read-only ("r") or writable ("rw").
 */
interface KernelDef {
  readonly src: KernelFile;
  readonly entry: string;
  readonly params: string;
  readonly bindings: readonly ("r" | "rw")[];
}

function kernelFile(file: string, code: string): KernelFile {
  return { file, code };
}

const F = {
  adamw: kernelFile("adamw.wgsl", adamwSrc),
  add: kernelFile("add.wgsl", addSrc),
  attentionBackward: kernelFile("attention_backward.wgsl", attentionBackwardSrc),
  attentionCached: kernelFile("attention_cached.wgsl", attentionCachedSrc),
  attentionForward: kernelFile("attention_forward.wgsl", attentionForwardSrc),
  attentionFlashForward: kernelFile("attention_flash_forward.wgsl", attentionFlashForwardSrc),
  attentionFlashBackward: kernelFile("attention_flash_backward.wgsl", attentionFlashBackwardSrc),
  attentionSoftmax: kernelFile("attention_softmax.wgsl", attentionSoftmaxSrc),
  crossEntropy: kernelFile("cross_entropy.wgsl", crossEntropySrc),
  dropout: kernelFile("dropout.wgsl", dropoutSrc),
  embeddingBackward: kernelFile("embedding_backward.wgsl", embeddingBackwardSrc),
  embeddingForward: kernelFile("embedding_forward.wgsl", embeddingForwardSrc),
  geluBackward: kernelFile("gelu_backward.wgsl", geluBackwardSrc),
  geluForward: kernelFile("gelu_forward.wgsl", geluForwardSrc),
  globalNorm: kernelFile("global_norm.wgsl", globalNormSrc),
  layernormBackward: kernelFile("layernorm_backward.wgsl", layernormBackwardSrc),
  layernormForward: kernelFile("layernorm_forward.wgsl", layernormForwardSrc),
  matmulNaive: kernelFile("matmul_naive.wgsl", matmulNaiveSrc),
  matmulTiled: kernelFile("matmul_tiled.wgsl", matmulTiledSrc),
  matmulLarge: kernelFile("matmul_large.wgsl", matmulLargeSrc),
  matmulLargeF16: kernelFile("matmul_large_f16.wgsl", matmulLargeF16Src),
  matmulBatched: kernelFile("matmul_batched.wgsl", matmulBatchedSrc),
  scale: kernelFile("scale.wgsl", scaleSrc),
  sum: kernelFile("sum.wgsl", sumSrc),
  sumRows: kernelFile("sum_rows.wgsl", sumRowsSrc),
  splitKReduce: kernelFile("split_k_reduce.wgsl", splitKReduceSrc),
} as const;

/** Every kernel entry point the backend dispatches. */
const K = {
  adamw: { src: F.adamw, entry: "main", params: "uffffffffff", bindings: ["rw", "r", "rw", "rw", "r"] },
  add: { src: F.add, entry: "main", params: "u", bindings: ["r", "r", "rw"] },
  attnBwdDpre: {
    src: F.attentionBackward,
    entry: "dpre_main",
    params: "uuuuuuf",
    bindings: ["r", "r", "r", "rw", "rw"],
  },
  attnBwdDq: { src: F.attentionBackward, entry: "dq_main", params: "uuuuuuf", bindings: ["r", "r", "r", "rw", "rw"] },
  attnBwdDkv: {
    src: F.attentionBackward,
    entry: "dkv_main",
    params: "uuuuuuf",
    bindings: ["r", "r", "r", "rw", "rw"],
  },
  attnCachedStore: {
    src: F.attentionCached,
    entry: "store_main",
    params: "uuuuuu",
    bindings: ["r", "r", "rw", "rw", "rw", "rw"],
  },
  attnCachedAttend: {
    src: F.attentionCached,
    entry: "attend_main",
    params: "uuuuuu",
    bindings: ["r", "r", "rw", "rw", "rw", "rw"],
  },
  attnFwd: { src: F.attentionForward, entry: "main", params: "uuuuuuf", bindings: ["r", "r", "rw", "rw"] },
  attnFlashFwd: {
    src: F.attentionFlashForward,
    entry: "main",
    params: "uuuuuuf",
    bindings: ["r", "r", "rw", "rw"],
  },
  attnFlashDq: {
    src: F.attentionFlashBackward,
    entry: "dq_main",
    params: "uuuuuuf",
    bindings: ["r", "r", "r", "rw", "rw"],
  },
  attnFlashDkv: {
    src: F.attentionFlashBackward,
    entry: "dkv_main",
    params: "uuuuuuf",
    bindings: ["r", "r", "r", "rw", "rw"],
  },
  attnSoftmaxFwd: { src: F.attentionSoftmax, entry: "forward_main", params: "uuuuuf", bindings: ["r", "rw", "rw"] },
  attnSoftmaxBwd: { src: F.attentionSoftmax, entry: "backward_main", params: "uuuuuf", bindings: ["r", "rw", "rw"] },
  crossEntropy: { src: F.crossEntropy, entry: "main", params: "uuf", bindings: ["rw", "r", "rw", "rw"] },
  dropoutFwd: { src: F.dropout, entry: "forward_main", params: "uuuf", bindings: ["r", "rw"] },
  dropoutBwd: { src: F.dropout, entry: "backward_main", params: "uuuf", bindings: ["r", "rw"] },
  embFwd: { src: F.embeddingForward, entry: "main", params: "uuuuu", bindings: ["r", "r", "r", "rw", "r"] },
  embBwdLink: {
    src: F.embeddingBackward,
    entry: "link_main",
    params: "uuuu",
    bindings: ["r", "r", "rw", "rw", "rw"],
  },
  embBwdWte: { src: F.embeddingBackward, entry: "dwte_main", params: "uuuu", bindings: ["r", "r", "rw", "rw", "rw"] },
  embBwdWpe: { src: F.embeddingBackward, entry: "dwpe_main", params: "uuuu", bindings: ["r", "r", "rw", "rw", "rw"] },
  geluBwd: { src: F.geluBackward, entry: "main", params: "u", bindings: ["r", "r", "rw"] },
  geluFwd: { src: F.geluForward, entry: "main", params: "u", bindings: ["r", "rw"] },
  normPartial: { src: F.globalNorm, entry: "partial_main", params: "uuu", bindings: ["r", "rw", "rw"] },
  normFinal: { src: F.globalNorm, entry: "final_main", params: "uuu", bindings: ["r", "rw", "rw"] },
  lnBwdDinp: {
    src: F.layernormBackward,
    entry: "dinp_main",
    params: "uu",
    bindings: ["r", "r", "r", "r", "r", "rw", "rw", "rw"],
  },
  lnBwdDparams: {
    src: F.layernormBackward,
    entry: "dparams_main",
    params: "uu",
    bindings: ["r", "r", "r", "r", "r", "rw", "rw", "rw"],
  },
  lnFwd: { src: F.layernormForward, entry: "main", params: "uuf", bindings: ["r", "r", "r", "rw", "rw", "rw"] },
  matmulNaive: { src: F.matmulNaive, entry: "main", params: "uuu", bindings: ["r", "r", "r", "rw"] },
  matmulTiled: { src: F.matmulTiled, entry: "main", params: "uuuu", bindings: ["r", "r", "r", "rw"] },
  matmulLarge: { src: F.matmulLarge, entry: "main", params: "uuuu", bindings: ["r", "r", "r", "rw"] },
  matmulBatched: {
    src: F.matmulBatched,
    entry: "main",
    params: "uuuuuuuuuuuuuuuufuuf",
    bindings: ["r", "r", "rw"],
  },
  matmulLargeF16: { src: F.matmulLargeF16, entry: "main", params: "uuu", bindings: ["r", "r", "r", "rw"] },
  scale: { src: F.scale, entry: "main", params: "uf", bindings: ["rw"] },
  sum: { src: F.sum, entry: "main", params: "uf", bindings: ["r", "rw"] },
  sumRows: { src: F.sumRows, entry: "main", params: "uu", bindings: ["r", "rw"] },
  splitKReduce: { src: F.splitKReduce, entry: "main", params: "uuu", bindings: ["r", "r", "rw"] },
} as const satisfies Record<string, KernelDef>;

/**
 * Which matmul kernel to use: "tiled" (kernels/matmul_tiled.wgsl, 64×64 blocks, split in K where a product
 * has few blocks and a long K: {@link splitKSlices}; the default), "large"
 * (matmul_large.wgsl: 128×128 blocks, 8×8 per invocation, double-buffered), "auto" (per product: "large"
 * when it still gets at least {@link AUTO_LARGE_MIN_GROUPS} workgroups, else "tiled"), "large-f16" (the
 * large kernel with f16 arithmetic accumulated in f32: opt-in, needs `shader-f16`, less accurate),
 * "tune" (per shape, the fastest of tiled, large and split-K as timed on this GPU: `matmul_tuner.ts`; needs
 * `timestamp-query`) or "naive" (one output per invocation, kept for teaching and testing).
 */
export type MatmulKernel = "tiled" | "naive" | "large" | "large-f16" | "auto" | "tune";

/** The matmul kernels, in the order the docs list them. */
export const MATMUL_KERNELS: readonly MatmulKernel[] = ["tiled", "large", "auto", "tune", "large-f16", "naive"];

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

/** Parse a matmul kernel name (from an option or `GPT2_SFT_MATMUL`); `what` names the source in the error. */
export function parseMatmulKernel(v: string, what = "matmul kernel"): MatmulKernel {
  if ((MATMUL_KERNELS as readonly string[]).includes(v)) return v as MatmulKernel;
  throw new Error(`Invalid ${what} "${v}": expected one of ${MATMUL_KERNELS.join(", ")}`);
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
const ATTENTION_KERNELS: readonly AttentionKernel[] = ["matmul", "rows", "flash"];

/**
 * One operand of matmul_batched.wgsl for every (batch row b, head h): element (i, j) of the matrix at
 * `at[0] + b·at[1] + h·at[2] + i·ld + j` (element (j, i) with `trans`), e.g. head h's keys in qkv [B,T,3C]:
 * ld 3C, at [C, T·3C, HS].
 */
interface HeadView {
  buf: GpuBuf;
  ld: number;
  at: readonly [number, number, number];
  trans?: boolean;
}

/** Head h's HS columns from column `col` of a [B,T,ld] buffer (qkv: ld 3C, keys at col C), for every (b, h). */
function headCols(buf: GpuBuf, ld: number, col: number, T: number, HS: number, trans = false): HeadView {
  return { buf, ld, at: [col, T * ld, HS], trans };
}

/** The T×T matrix of (b, h) in a [B,NH,T,T] buffer (the probabilities), for every (b, h). */
function headSquares(buf: GpuBuf, T: number, NH: number, trans = false): HeadView {
  return { buf, ld: T, at: [0, NH * T * T, T * T], trans };
}

/** 1/√HS in float32, as the attention kernels compute it. */
function attentionScale(HS: number): number {
  return Math.fround(1 / Math.fround(Math.sqrt(HS)));
}

/** The head size the flash kernels hold in registers at most (MAX_HS in the WGSL). */
const FLASH_MAX_HS = 128;

/** Parse an attention kernel name (from an option or `GPT2_SFT_ATTENTION`). */
export function parseAttentionKernel(v: string, what = "attention kernel"): AttentionKernel {
  if ((ATTENTION_KERNELS as readonly string[]).includes(v)) return v as AttentionKernel;
  throw new Error(`Invalid ${what} "${v}": expected one of ${ATTENTION_KERNELS.join(", ")}`);
}

/** Options for {@link WebGpuBackend.create}. */
export interface WebGpuBackendOptions extends GpuDeviceOptions {
  /** Default: `GPT2_SFT_MATMUL` when set, else "tiled". */
  matmul?: MatmulKernel;
  /** Default: `GPT2_SFT_ATTENTION` when set, else "matmul". */
  attention?: AttentionKernel;
  /**
   * Time every dispatch on the GPU (timestamp queries; see `gpu_profiler.ts` and {@link WebGpuBackend.profile}).
   * Default: on when `GPT2_SFT_PROFILE` is 1.
   */
  profile?: boolean;
  /**
   * For tests and experiments: run every matmul as this candidate (a kernel and a number of K slices)
   * instead of what `matmul` chooses, e.g. `{ name: "large split 3", kernel: "large", slices: 3 }`.
   */
  matmulCandidate?: MatmulCandidate;
  /**
   * Submit the recorded work every this many dispatches (1 … 256). Default: `GPT2_SFT_FLUSH_EVERY` when set,
   * else 256. Smaller batches start a GPU sooner after a sync, at the cost of more submits; which is better
   * on a real GPU is for `bench/gpu_check.sh` to measure (under Deno on lavapipe a submit waits for the
   * previous one to finish, so small batches are slow there).
   */
  flushEvery?: number;
  /**
   * After each wait for the GPU (`sync`, `read`), submit the first batch after 16 dispatches and double the
   * batch at each submit up to `flushEvery`, so that an idle GPU gets work within ≈ 0.3 ms of recording
   * instead of ≈ 5 ms (256 dispatches at GPT-2's real shape), for ≈ 4 more submits per wait. Default: on,
   * unless `GPT2_SFT_FLUSH_RAMP=0`.
   */
  flushRamp?: boolean;
}

/** The first batch after a wait for the GPU, with the ramp on ({@link WebGpuBackendOptions.flushRamp}). */
const RAMP_START = 16;

/** Parse a flush interval (from an option or `GPT2_SFT_FLUSH_EVERY`): a whole number of dispatches, 1 … 256. */
export function parseFlushEvery(v: string | number, what = "flush interval"): number {
  const n = typeof v === "number" ? v : /^\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_BATCH) {
    throw new Error(`Invalid ${what} "${v}": expected a whole number of dispatches from 1 to ${MAX_BATCH}`);
  }
  return n;
}

/** Each matmul kernel's entry point and the output block one workgroup computes. */
const MATMUL_DEFS: Record<Exclude<MatmulKernel, "auto" | "tune">, { def: KernelDef; block: number }> = {
  naive: { def: K.matmulNaive, block: 16 },
  tiled: { def: K.matmulTiled, block: 64 },
  large: { def: K.matmulLarge, block: 128 },
  "large-f16": { def: K.matmulLargeF16, block: 128 },
};

/** One matmul call, its buffers checked. */
interface MatmulCall {
  a: GpuBuf;
  b: GpuBuf;
  bias: GpuBuf | null;
  out: GpuBuf;
  M: number;
  N: number;
  Kd: number;
  constants: Record<string, number>;
  /** The shape and layout, for profiles. */
  note: string;
}

/**
 * A buffer on the GPU. `buffer` is null once freed. A view (a buffer of a {@link BufGroup}) lives at byte
 * `offset` of its chunk `owner`'s GPU buffer and is freed with it.
 */
class GpuBuf implements Buf {
  #buffer: GPUBuffer | null;
  constructor(
    readonly length: number,
    readonly dtype: DType,
    buffer: GPUBuffer | null,
    readonly label: string,
    readonly offset = 0,
    readonly owner: GpuBuf | null = null,
  ) {
    this.#buffer = buffer;
  }

  get buffer(): GPUBuffer | null {
    return this.owner ? this.owner.buffer : this.#buffer;
  }

  set buffer(b: GPUBuffer | null) {
    this.#buffer = b;
  }

  /** The bytes a binding of this buffer covers: the whole GPU buffer, or the view's 16-byte-rounded range. */
  get end(): number {
    return this.owner ? this.offset + byteSize(this.length) : this.buffer?.size ?? 0;
  }
}

/** Whether `x` and `y` are the same memory (the same buffer, or the same view of it). */
function sameRange(x: GpuBuf, y: GpuBuf): boolean {
  return x.buffer === y.buffer && x.offset === y.offset;
}

/**
 * The attention kernels' dropout uniforms (drop_key, drop_threshold, drop_scale) and their DROPOUT
 * override: off (and the uniforms 0) when there is no dropout or p = 0, so those calls run the undropped
 * pipeline unchanged.
 */
function attentionDropout(dropout: AttentionDropout | undefined, op: string): { params: number[]; on: number } {
  if (!dropout) return { params: [0, 0, 0], on: 0 };
  const d = dropoutParams(dropout.p, dropout.seed, `${op} dropout`);
  return d.p === 0 ? { params: [0, 0, 0], on: 0 } : { params: [d.key, d.threshold, d.scale], on: 1 };
}

/** Bytes a buffer of `length` 4-byte elements takes (at least 16, a multiple of 16). */
function byteSize(length: number): number {
  return Math.max(16, Math.ceil((length * 4) / 16) * 16);
}

/** The pool's size class for `bytes`: the next power of two up to 4 KiB, then the next quarter step. */
function sizeClass(bytes: number): number {
  return bytes <= 4096 ? 2 ** Math.ceil(Math.log2(bytes)) : quarterStepClass(bytes);
}

/** Options of one dispatch. */
interface DispatchArgs {
  /** Uniform parameter values, in the order and types of the kernel's `params`. */
  params: readonly number[];
  /** Storage buffers for bindings 1…; null binds a placeholder (for a binding the variant ignores). */
  bufs: readonly (GpuBuf | null)[];
  /** Workgroups: a count (made 2D when above 65535) or an explicit [x, y]. */
  groups: number | readonly [number, number] | readonly [number, number, number];
  /** Override constants. */
  constants?: Record<string, number>;
  /** Appended to the kernel's name in a profile (e.g. a matmul's shape). */
  profileNote?: string;
  /** Time this dispatch under `key` with this profiler (the matmul tuner's runs) instead of the backend's. */
  timer?: { by: GpuProfiler; key: string };
}

/** The WebGPU implementation of {@link Backend}. Create with {@link WebGpuBackend.create}. */
export class WebGpuBackend implements Backend {
  readonly name = "webgpu";
  readonly description: string;
  readonly #device: GPUDevice;
  readonly #matmul: { def: KernelDef; block: number } | "auto";
  /** The matmul kernel this backend runs. */
  readonly matmulKernel: MatmulKernel;
  /** The training attention kernels this backend runs. */
  readonly attentionKernel: AttentionKernel;
  /** Dispatches recorded before a batch is submitted ({@link WebGpuBackendOptions.flushEvery}). */
  readonly flushEvery: number;
  /** Whether batches ramp up from 16 dispatches after each wait ({@link WebGpuBackendOptions.flushRamp}). */
  readonly flushRamp: boolean;
  /** Dispatches the batch being recorded holds before it is submitted: ramps up to flushEvery. */
  #batchLimit: number;
  readonly #maxBinding: number;
  readonly #maxBuffer: number;
  readonly #modules = new Map<KernelFile, GPUShaderModule>();
  readonly #layouts = new Map<KernelDef, { bgl: GPUBindGroupLayout; pl: GPUPipelineLayout; id: number }>();
  /** Bind groups by layout and buffers (see {@link WebGpuBackend.#bindGroup}). */
  readonly #bindGroups = new Map<string, GPUBindGroup>();
  /** A small integer per GPU buffer, for bind-group keys. */
  readonly #bufferIds = new WeakMap<GPUBuffer, number>();
  #nextId = 0;
  readonly #pipelines = new Map<KernelDef, Map<string, GPUComputePipeline>>();
  readonly #pool = new Map<number, GPUBuffer[]>();
  readonly #live = new Set<GPUBuffer>();
  readonly #placeholders = new Map<number, GPUBuffer>();
  readonly #uniforms: GPUBuffer;
  readonly #uniformHost = new ArrayBuffer(MAX_BATCH * UNIFORM_SLOT);
  #slots = 0;
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #error: Error | null = null;
  #disposed = false;
  #dispatches = 0;
  #submits = 0;
  readonly #profiler: GpuProfiler | null;
  readonly #tuner: MatmulTuner | null;
  #forced: MatmulCandidate | null = null;

  private constructor(
    device: GPUDevice,
    description: string,
    matmul: MatmulKernel,
    attention: AttentionKernel,
    profile: boolean,
    flushEvery: number,
    flushRamp: boolean,
  ) {
    this.#device = device;
    this.#profiler = profile ? new GpuProfiler(device, MAX_BATCH) : null;
    this.#tuner = matmul === "tune" ? new MatmulTuner(new GpuProfiler(device, MAX_BATCH)) : null;
    this.description = description;
    this.#matmul = matmul === "auto" || matmul === "tune" ? "auto" : MATMUL_DEFS[matmul];
    this.matmulKernel = matmul;
    this.attentionKernel = attention;
    this.flushEvery = flushEvery;
    this.flushRamp = flushRamp;
    this.#batchLimit = this.#rampStart();
    this.#maxBinding = device.limits.maxStorageBufferBindingSize;
    this.#maxBuffer = device.limits.maxBufferSize;
    this.#uniforms = device.createBuffer({
      label: "uniform ring",
      size: MAX_BATCH * UNIFORM_SLOT,
      usage: USAGE_UNIFORM | USAGE_COPY_DST,
    });
    device.lost.then((info) => {
      if (info.reason !== "destroyed" && !this.#disposed) {
        this.#error ??= new Error(`WebGPU device lost: ${info.reason}: ${info.message}`);
      }
    });
    const onError = (ev: Event) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      this.#error ??= new Error(`WebGPU error: ${e?.message ?? String(ev)}`);
    };
    if (typeof device.addEventListener === "function") device.addEventListener("uncapturederror", onError);
    else (device as { onuncapturederror?: unknown }).onuncapturederror = onError;
  }

  /** Open a WebGPU device and build the backend; throws when no adapter is found. */
  static async create(opts: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
    const gpu = await requestGpuDevice(opts);
    if (!gpu) {
      throw new Error(
        opts.rejectSoftware
          ? "Cannot create WebGPU backend: no hardware adapter found (software adapters were rejected)"
          : "Cannot create WebGPU backend: no adapter found (navigator.gpu.requestAdapter() returned null)",
      );
    }
    const env = readEnv("GPT2_SFT_MATMUL");
    const matmul = opts.matmul ?? (env ? parseMatmulKernel(env, "kernel in GPT2_SFT_MATMUL") : "tiled");
    if (matmul === "tune" && !gpu.device.features.has("timestamp-query")) {
      gpu.device.destroy();
      throw new Error(
        `Cannot tune the matmul: the adapter (${gpu.description}) does not offer "timestamp-query" ` +
          `(use GPT2_SFT_MATMUL=auto)`,
      );
    }
    if (matmul === "large-f16" && !gpu.device.features.has("shader-f16")) {
      gpu.device.destroy();
      throw new Error(
        `Cannot use the "large-f16" matmul: the adapter (${gpu.description}) does not offer "shader-f16"`,
      );
    }
    const envAtt = readEnv("GPT2_SFT_ATTENTION");
    const attention = opts.attention ??
      (envAtt ? parseAttentionKernel(envAtt, "kernel in GPT2_SFT_ATTENTION") : "matmul");
    const envFlush = readEnv("GPT2_SFT_FLUSH_EVERY");
    const flushEvery = opts.flushEvery !== undefined
      ? parseFlushEvery(opts.flushEvery)
      : envFlush
      ? parseFlushEvery(envFlush, "value of GPT2_SFT_FLUSH_EVERY")
      : MAX_BATCH;
    const envRamp = readEnv("GPT2_SFT_FLUSH_RAMP");
    if (envRamp !== undefined && envRamp !== "" && envRamp !== "0" && envRamp !== "1") {
      throw new Error(`Invalid value of GPT2_SFT_FLUSH_RAMP "${envRamp}": expected 1 (ramp up, the default) or 0`);
    }
    const flushRamp = opts.flushRamp ?? envRamp !== "0";
    const suffix = (matmul === "tiled" ? "" : `, matmul ${matmul}`) +
      (attention === "matmul" ? "" : `, attention ${attention}`) +
      (flushEvery === MAX_BATCH ? "" : `, submits every ${flushEvery} dispatches`) +
      (flushRamp ? "" : ", no submit ramp");
    const profile = opts.profile ?? readEnv("GPT2_SFT_PROFILE") === "1";
    try {
      const desc = gpu.description + suffix + (profile ? ", profiling" : "");
      const be = new WebGpuBackend(gpu.device, desc, matmul, attention, profile, flushEvery, flushRamp);
      be.#forced = opts.matmulCandidate ?? null;
      return be;
    } catch (e) {
      gpu.device.destroy();
      throw e;
    }
  }

  // ------------------------------------------------------------------ memory

  alloc(length: number, dtype: DType = "f32", label = "buffer"): Buf {
    const b = this.#acquire(length, dtype, label);
    this.#endPass();
    this.#enc().clearBuffer(b.buffer!, 0, byteSize(length));
    return b;
  }

  upload(data: Float32Array | Int32Array, label = "upload"): Buf {
    const b = this.#acquire(data.length, data instanceof Int32Array ? "i32" : "f32", label);
    this.#flush(); // a pooled buffer may still be in use by recorded work
    this.#device.queue.writeBuffer(b.buffer!, 0, data.buffer, data.byteOffset, data.byteLength);
    return b;
  }

  allocGroup(lengths: readonly number[], label = "group", names?: readonly string[]): BufGroup {
    const align = this.#device.limits.minStorageBufferOffsetAlignment / 4;
    const maxChunk = Math.floor(Math.min(this.#maxBinding, this.#maxBuffer) / 4 / align) * align;
    const layout = groupLayout(lengths, align, maxChunk, label, names);
    const chunks = layout.chunks.map((c, ci) => {
      // an exact-size buffer (not a pooled size class: chunks are large and live long)
      const name = layout.chunks.length > 1 ? `${label} (chunk ${ci + 1} of ${layout.chunks.length})` : label;
      if (this.#disposed) throw new Error(`Cannot allocate "${name}": the WebGPU backend was disposed`);
      const buffer = this.#device.createBuffer({
        label: name,
        size: c.length * 4,
        usage: USAGE_STORAGE | USAGE_COPY_SRC | USAGE_COPY_DST,
      });
      this.#live.add(buffer);
      this.#endPass();
      this.#enc().clearBuffer(buffer, 0, c.length * 4);
      return { buf: new GpuBuf(c.length, "f32", buffer, name), first: c.first, count: c.count };
    });
    const views: GpuBuf[] = [];
    for (const c of chunks) {
      for (let i = c.first; i < c.first + c.count; i++) {
        const name = groupViewLabel(label, names, i);
        views.push(new GpuBuf(lengths[i]!, "f32", null, name, layout.offsets[i]! * 4, c.buf));
      }
    }
    return { views, chunks };
  }

  write(buf: Buf, data: Float32Array | Int32Array, offset = 0): void {
    const b = this.#buf(buf, "write");
    const dtype = data instanceof Int32Array ? "i32" : "f32";
    if (dtype !== b.dtype) throw new Error(`Cannot write to "${b.label}": ${dtype} data into a ${b.dtype} buffer`);
    if (offset < 0 || offset + data.length > b.length) {
      throw new Error(`Cannot write to "${b.label}": ${data.length} elements at offset ${offset} exceed ${b.length}`);
    }
    this.#flush(); // recorded work must see the old contents
    this.#device.queue.writeBuffer(b.buffer!, b.offset + offset * 4, data.buffer, data.byteOffset, data.byteLength);
  }

  async read(buf: Buf): Promise<Float32Array | Int32Array> {
    const b = this.#buf(buf, "read");
    const bytes = byteSize(b.length);
    const staging = this.#device.createBuffer({
      label: `read ${b.label}`,
      size: bytes,
      usage: USAGE_MAP_READ | USAGE_COPY_DST,
    });
    this.#endPass();
    this.#enc().copyBufferToBuffer(b.buffer!, b.offset, staging, 0, bytes);
    this.#flush();
    try {
      await staging.mapAsync(MAP_MODE_READ);
    } catch (e) {
      this.#throwIfFailed();
      throw e;
    }
    this.#batchLimit = this.#rampStart(); // the GPU has finished what the read needed: idle, or nearly
    const copy = staging.getMappedRange(0, bytes).slice(0, b.length * 4);
    staging.unmap();
    staging.destroy();
    this.#throwIfFailed();
    return b.dtype === "i32" ? new Int32Array(copy) : new Float32Array(copy);
  }

  zero(buf: Buf): void {
    const b = this.#buf(buf, "zero");
    this.#endPass();
    this.#enc().clearBuffer(b.buffer!, b.offset, byteSize(b.length));
  }

  copy(dst: Buf, src: Buf, length?: number, dstOffset = 0, srcOffset = 0): void {
    const d = this.#buf(dst, "copy"), s = this.#buf(src, "copy");
    const n = length ?? Math.min(d.length - dstOffset, s.length - srcOffset);
    if (n < 0 || srcOffset + n > s.length || dstOffset + n > d.length) {
      throw new Error(
        `Cannot copy "${s.label}" to "${d.label}": ${n} elements at ${srcOffset} → ${dstOffset} out of range`,
      );
    }
    if (n === 0) return;
    this.#endPass();
    const enc = this.#enc();
    if (d.buffer === s.buffer) {
      // copyBufferToBuffer forbids src = dst: go through a temporary.
      const tmp = this.#acquire(n, s.dtype, "copy temporary");
      enc.copyBufferToBuffer(s.buffer!, s.offset + srcOffset * 4, tmp.buffer!, 0, n * 4);
      enc.copyBufferToBuffer(tmp.buffer!, 0, d.buffer!, d.offset + dstOffset * 4, n * 4);
      this.free(tmp);
    } else {
      enc.copyBufferToBuffer(s.buffer!, s.offset + srcOffset * 4, d.buffer!, d.offset + dstOffset * 4, n * 4);
    }
  }

  free(buf: Buf): void {
    const b = buf as GpuBuf;
    if (!b.buffer || b.owner) return; // a group's views are freed with their chunk
    const size = b.buffer.size;
    let list = this.#pool.get(size);
    if (!list) this.#pool.set(size, list = []);
    list.push(b.buffer);
    b.buffer = null;
  }

  /**
   * GPU memory this backend holds: every storage buffer it created, in use or waiting in the pool. Pooled
   * buffers are kept until `dispose`, so `allocatedBytes` is also the high-water mark (the uniform ring,
   * placeholders and transient read-back staging buffers are not counted). `dispatches` and `submits`
   * count the compute dispatches recorded and the command buffers submitted since the backend was made.
   */
  get stats(): { allocatedBytes: number; buffers: number; dispatches: number; submits: number } {
    let allocatedBytes = 0;
    for (const b of this.#live) allocatedBytes += b.size;
    return { allocatedBytes, buffers: this.#live.size, dispatches: this.#dispatches, submits: this.#submits };
  }

  /** The largest buffer one binding can hold on this device, in bytes (maxStorageBufferBindingSize, maxBufferSize). */
  get maxBindingBytes(): number {
    return Math.min(this.#maxBinding, this.#maxBuffer);
  }

  /** Whether dispatches are being timed (the `profile` option, `GPT2_SFT_PROFILE=1`). */
  get profiling(): boolean {
    return this.#profiler !== null;
  }

  /**
   * GPU milliseconds per kernel since the last reset, largest first (waits for the queued work). Matmuls
   * are keyed by shape and layout. Throws when the backend was not created with profiling on.
   */
  async profile(opts: { reset?: boolean } = {}): Promise<KernelTime[]> {
    if (!this.#profiler) throw new Error("Cannot report a GPU profile: the backend was created without `profile`");
    await this.sync();
    const rows = await this.#profiler.report();
    if (opts.reset) this.#profiler.reset();
    return rows;
  }

  async sync(): Promise<void> {
    this.#flush();
    await this.#device.queue.onSubmittedWorkDone();
    this.#batchLimit = this.#rampStart(); // the GPU is idle now
    this.#throwIfFailed();
  }

  /** The first batch's size after a wait for the GPU: 16 with the ramp on, else flushEvery. */
  #rampStart(): number {
    return this.flushRamp ? Math.min(RAMP_START, this.flushEvery) : this.flushEvery;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const b of this.#live) b.destroy();
    this.#live.clear();
    this.#pool.clear();
    this.#bindGroups.clear();
    for (const b of this.#placeholders.values()) b.destroy();
    this.#uniforms.destroy();
    this.#profiler?.destroy();
    this.#tuner?.timer.destroy();
    this.#device.destroy();
  }

  // ------------------------------------------------------------------ elementwise

  add(args: OpArgs<"add">): void {
    const out = this.#buf(args.out, "add"), a = this.#buf(args.a, "add"), b = this.#buf(args.b, "add");
    this.#need([[out, "out"], [a, "a"], [b, "b"]], args.n, "add");
    const aIsOut = sameRange(a, out), bIsOut = sameRange(b, out);
    this.#dispatch(K.add, {
      params: [args.n],
      bufs: [aIsOut ? null : a, bIsOut ? null : b, out],
      groups: Math.ceil(args.n / 256),
      constants: { A_IS_OUT: +aIsOut, B_IS_OUT: +bIsOut, ACCUMULATE: +!!args.accumulate },
    });
  }

  scale(args: OpArgs<"scale">): void {
    const b = this.#buf(args.buf, "scale");
    this.#need([[b, "buf"]], args.n, "scale");
    this.#dispatch(K.scale, { params: [args.n, args.s], bufs: [b], groups: Math.ceil(args.n / 256) });
  }

  geluForward(args: OpArgs<"geluForward">): void {
    const out = this.#buf(args.out, "geluForward"), inp = this.#buf(args.inp, "geluForward");
    this.#need([[out, "out"], [inp, "inp"]], args.n, "geluForward");
    this.#dispatch(K.geluFwd, { params: [args.n], bufs: [inp, out], groups: Math.ceil(args.n / 256) });
  }

  geluBackward(args: OpArgs<"geluBackward">): void {
    const op = "geluBackward";
    const dinp = this.#buf(args.dinp, op), inp = this.#buf(args.inp, op), dout = this.#buf(args.dout, op);
    this.#need([[dinp, "dinp"], [inp, "inp"], [dout, "dout"]], args.n, op);
    this.#dispatch(K.geluBwd, {
      params: [args.n],
      bufs: [inp, dout, dinp],
      groups: Math.ceil(args.n / 256),
      constants: { ACCUMULATE: +!!args.accumulate },
    });
  }

  dropoutForward(args: OpArgs<"dropoutForward">): void {
    const op = "dropoutForward";
    const d = dropoutParams(args.p, args.seed, op);
    const out = this.#buf(args.out, op), inp = this.#buf(args.inp, op);
    this.#need([[out, "out"], [inp, "inp"]], args.n, op);
    const inPlace = sameRange(out, inp);
    this.#dispatch(K.dropoutFwd, {
      params: [args.n, d.key, d.threshold, d.scale],
      bufs: [inPlace ? null : inp, out],
      groups: Math.ceil(args.n / 256),
      constants: { IN_PLACE: +inPlace },
    });
  }

  dropoutBackward(args: OpArgs<"dropoutBackward">): void {
    const op = "dropoutBackward";
    const d = dropoutParams(args.p, args.seed, op);
    const dinp = this.#buf(args.dinp, op), dout = this.#buf(args.dout, op);
    this.#need([[dinp, "dinp"], [dout, "dout"]], args.n, op);
    const inPlace = sameRange(dinp, dout);
    this.#dispatch(K.dropoutBwd, {
      params: [args.n, d.key, d.threshold, d.scale],
      bufs: [inPlace ? null : dout, dinp],
      groups: Math.ceil(args.n / 256),
      constants: { IN_PLACE: +inPlace, ACCUMULATE: +!!args.accumulate },
    });
  }

  // ------------------------------------------------------------------ embedding

  embeddingForward(args: OpArgs<"embeddingForward">): void {
    const op = "embeddingForward";
    const { B, T, C } = args;
    const pos0 = args.pos0 ?? 0;
    const out = this.#buf(args.out, op), ids = this.#buf(args.ids, op, "i32");
    const wte = this.#buf(args.wte, op), wpe = this.#buf(args.wpe, op);
    this.#need([[out, "out"]], B * T * C, op);
    this.#need([[ids, "ids"]], B * T, op);
    const positions = args.positions ? this.#buf(args.positions, op, "i32") : null;
    if (positions) this.#need([[positions, "positions"]], B * T, op);
    else this.#need([[wpe, "wpe"]], (pos0 + T) * C, op);
    const V = Math.floor(wte.length / C);
    this.#dispatch(K.embFwd, {
      params: [B, T, C, V, pos0],
      bufs: [ids, wte, wpe, out, positions],
      groups: Math.ceil((B * T * C) / 256),
      constants: { HAS_POSITIONS: +(positions !== null) },
    });
  }

  embeddingBackward(args: OpArgs<"embeddingBackward">): void {
    const op = "embeddingBackward";
    const { B, T, C, V } = args;
    const dwte = this.#buf(args.dwte, op), dwpe = this.#buf(args.dwpe, op);
    const dout = this.#buf(args.dout, op), ids = this.#buf(args.ids, op, "i32");
    this.#need([[dwte, "dwte"]], V * C, op);
    this.#need([[dwpe, "dwpe"]], T * C, op);
    this.#need([[dout, "dout"]], B * T * C, op);
    this.#need([[ids, "ids"]], B * T, op);
    const N = B * T;
    const links = this.#acquire(2 * N, "i32", "embedding links");
    const bufs = [ids, dout, dwte, dwpe, links];
    const params = [B, T, C, V];
    this.#dispatch(K.embBwdLink, { params, bufs, groups: Math.ceil(N / 64) });
    this.#dispatch(K.embBwdWte, { params, bufs, groups: Math.ceil((N * C) / 256) });
    this.#dispatch(K.embBwdWpe, { params, bufs, groups: Math.ceil((T * C) / 256) });
    this.free(links);
  }

  // ------------------------------------------------------------------ layernorm

  layernormForward(args: OpArgs<"layernormForward">): void {
    const op = "layernormForward";
    const { N, C } = args;
    const out = this.#buf(args.out, op), inp = this.#buf(args.inp, op);
    const weight = this.#buf(args.weight, op), bias = this.#buf(args.bias, op);
    const mean = args.mean ? this.#buf(args.mean, op) : null;
    const rstd = args.rstd ? this.#buf(args.rstd, op) : null;
    this.#need([[out, "out"], [inp, "inp"]], N * C, op);
    this.#need([[weight, "weight"], [bias, "bias"]], C, op);
    if (mean) this.#need([[mean, "mean"]], N, op);
    if (rstd) this.#need([[rstd, "rstd"]], N, op);
    const save = mean !== null && rstd !== null;
    this.#dispatch(K.lnFwd, {
      params: [N, C, args.eps],
      bufs: [inp, weight, bias, out, save ? mean : null, save ? rstd : null],
      groups: N,
      constants: { SAVE_STATS: +save },
    });
  }

  layernormBackward(args: OpArgs<"layernormBackward">): void {
    const op = "layernormBackward";
    const { N, C } = args;
    const [dinp, dweight, dbias, dout, inp, weight, mean, rstd] = [
      args.dinp,
      args.dweight,
      args.dbias,
      args.dout,
      args.inp,
      args.weight,
      args.mean,
      args.rstd,
    ].map((b) => this.#buf(b, op)) as [GpuBuf, GpuBuf, GpuBuf, GpuBuf, GpuBuf, GpuBuf, GpuBuf, GpuBuf];
    this.#need([[dinp, "dinp"], [dout, "dout"], [inp, "inp"]], N * C, op);
    this.#need([[dweight, "dweight"], [dbias, "dbias"], [weight, "weight"]], C, op);
    this.#need([[mean, "mean"], [rstd, "rstd"]], N, op);
    const bufs = [dout, inp, weight, mean, rstd, dinp, dweight, dbias];
    const constants = { ACCUMULATE: +!!args.accumulate };
    this.#dispatch(K.lnBwdDinp, { params: [N, C], bufs, groups: N, constants });
    this.#dispatch(K.lnBwdDparams, { params: [N, C], bufs, groups: Math.ceil(C / 16), constants }); // 16 channels each
  }

  // ------------------------------------------------------------------ matmul

  matmul(args: MatmulArgs): void {
    const op = "matmul";
    const { M, N, K: Kd } = args;
    const out = this.#buf(args.out, op), a = this.#buf(args.a, op), b = this.#buf(args.b, op);
    const bias = args.bias ? this.#buf(args.bias, op) : null;
    this.#need([[out, "out"]], M * N, op);
    this.#need([[a, "a"]], M * Kd, op);
    this.#need([[b, "b"]], Kd * N, op);
    if (bias) this.#need([[bias, "bias"]], N, op);
    const constants: Record<string, number> = {
      TRANS_A: +!!args.transA,
      TRANS_B: +!!args.transB,
      HAS_BIAS: +(bias !== null),
      ACCUMULATE: +!!args.accumulate,
    };
    const note = matmulNote(args);
    const x = { a, b, bias, out, M, N, Kd, constants, note };
    const forced = this.#forced;
    if (forced) return this.#matmulRun(x, MATMUL_DEFS[forced.kernel], forced.slices);
    const kernel = this.#matmul;
    // the default tiled kernel splits K where a product has too few blocks to fill a GPU (auto does too)
    if (kernel !== "auto") return this.#matmulRun(x, kernel, kernel === MATMUL_DEFS.tiled ? splitKSlices(M, N, Kd) : 1);
    const tuner = this.#tuner;
    if (tuner) {
      const key = tuner.key(M, N, Kd, !!args.transA, !!args.transB);
      const best = tuner.best(key);
      if (best) return this.#matmulRun(x, MATMUL_DEFS[best.kernel], best.slices);
      // first sight of this shape: time every candidate into a scratch output, then run auto's choice
      const candidates = tuner.begin(key, matmulCandidates(M, N, Kd, splitKSlices(M, N, Kd)));
      if (candidates.length > 0) this.#matmulTimeCandidates(x, key, tuner, candidates);
    }
    const large = Math.ceil(M / 128) * Math.ceil(N / 128) >= AUTO_LARGE_MIN_GROUPS;
    const def = large ? MATMUL_DEFS.large : MATMUL_DEFS.tiled;
    this.#matmulRun(x, def, large ? 1 : splitKSlices(M, N, Kd));
  }

  /** One product with kernel `k` (split in K when `slices` > 1), optionally timed by the tuner. */
  #matmulRun(
    x: MatmulCall,
    k: { def: KernelDef; block: number },
    slices: number,
    timer?: { by: GpuProfiler; key: string },
  ): void {
    if (slices > 1) return this.#matmulSplitK({ ...x, S: slices }, k, timer);
    this.#dispatch(k.def, {
      params: [x.M, x.N, x.Kd, x.Kd],
      bufs: [x.a, x.b, x.bias, x.out],
      groups: [Math.ceil(x.N / k.block), Math.ceil(x.M / k.block)],
      constants: x.constants,
      profileNote: x.note,
      timer,
    });
  }

  /** The tuner's timing runs: each candidate {@link TUNE_RUNS} times into a scratch output. */
  #matmulTimeCandidates(x: MatmulCall, key: string, tuner: MatmulTuner, candidates: MatmulCandidate[]): void {
    const scratch = this.#acquire(x.M * x.N, "f32", "matmul tuning scratch");
    const run = { ...x, bias: null, out: scratch, constants: { ...x.constants, HAS_BIAS: 0, ACCUMULATE: 0 } };
    for (const c of candidates) {
      for (let r = 0; r < TUNE_RUNS; r++) {
        this.#matmulRun(run, MATMUL_DEFS[c.kernel], c.slices, { by: tuner.timer, key: tuner.timerKey(key, c, r) });
      }
    }
    this.free(scratch);
  }

  /** The matmul tuner's results so far (`GPT2_SFT_MATMUL=tune`), or undefined for another kernel. */
  get matmulTuning(): TunedShape[] | undefined {
    return this.#tuner?.report();
  }

  /**
   * The product in S slices of K (kernel `k`, tiled or large, with SPLIT_K) into a temporary, then
   * split_k_reduce.wgsl into `out`.
   */
  #matmulSplitK(
    x: MatmulCall & { S: number },
    k: { def: KernelDef; block: number },
    timer?: { by: GpuProfiler; key: string },
  ): void {
    const { M, N, Kd } = x;
    const KC = Math.ceil(Math.ceil(Kd / x.S) / 16) * 16; // whole 16-deep tiles per slice
    const S = Math.ceil(Kd / KC);
    const part = this.#acquire(S * M * N, "f32", "split-K partial products");
    this.#dispatch(k.def, {
      params: [M, N, Kd, KC],
      bufs: [x.a, x.b, null, part],
      groups: [Math.ceil(N / k.block), Math.ceil(M / k.block), S],
      constants: { ...x.constants, HAS_BIAS: 0, ACCUMULATE: 0, SPLIT_K: 1 },
      profileNote: `${x.note} split ${S}`,
      timer,
    });
    this.#dispatch(K.splitKReduce, {
      params: [M * N, N, S],
      bufs: [part, x.bias, x.out],
      groups: Math.ceil((M * N) / 256),
      constants: { HAS_BIAS: x.constants.HAS_BIAS!, ACCUMULATE: x.constants.ACCUMULATE! },
      timer,
    });
    this.free(part);
  }

  sumRows(args: OpArgs<"sumRows">): void {
    const op = "sumRows";
    const out = this.#buf(args.out, op), inp = this.#buf(args.inp, op);
    this.#need([[out, "out"]], args.N, op);
    this.#need([[inp, "inp"]], args.M * args.N, op);
    this.#dispatch(K.sumRows, {
      params: [args.M, args.N],
      bufs: [inp, out],
      groups: Math.ceil(args.N / 16), // a workgroup per 16 columns
      constants: { ACCUMULATE: +!!args.accumulate },
    });
  }

  // ------------------------------------------------------------------ attention

  attentionSavedLength(B: number, T: number, NH: number): number {
    return this.#flashFor(B, T, NH) ? 2 * B * NH * T : B * NH * T * T;
  }

  /**
   * Whether a training attention call of this shape runs the flash kernels: always with attention
   * "flash"; with "matmul" or "rows" when its T×T probabilities (B·NH·T² floats) would not fit one storage binding
   * (lavapipe's 128 MiB at B = 4, T = 1024), so that long sequences run instead of failing.
   */
  #flashFor(B: number, T: number, NH: number): boolean {
    return this.attentionKernel === "flash" || B * NH * T * T * 4 > this.maxBindingBytes;
  }

  attentionForward(args: OpArgs<"attentionForward">): void {
    const op = "attentionForward";
    const { B, T, C, NH } = args;
    this.#checkHeads(C, NH, op);
    const drop = attentionDropout(args.dropout, op);
    const out = this.#buf(args.out, op), att = this.#buf(args.att, op), qkv = this.#buf(args.qkv, op);
    const mask = args.mask ? this.#buf(args.mask, op, "i32") : null;
    this.#need([[out, "out"]], B * T * C, op);
    this.#need([[att, "att"]], this.attentionSavedLength(B, T, NH), op);
    this.#need([[qkv, "qkv"]], B * T * 3 * C, op);
    if (mask) this.#need([[mask, "mask"]], B * T, op);
    const flash = this.#flashAttention(B, T, C, NH, op);
    if (!flash && this.attentionKernel === "matmul") {
      // S = Q·Kᵀ·scale into att; P = softmax(S) in place (what the backward reads); out = P̃·V
      const HS = C / NH, heads = { B, NH, M: T };
      const Q = headCols(qkv, 3 * C, 0, T, HS), Kt = headCols(qkv, 3 * C, C, T, HS, true);
      const V = headCols(qkv, 3 * C, 2 * C, T, HS), P = headSquares(att, T, NH);
      this.#batchedMatmul({ ...heads, N: T, K: HS, alpha: attentionScale(HS), causal: 1, note: "Q·Kᵀ" }, Q, Kt, P);
      this.#dispatch(K.attnSoftmaxFwd, {
        params: [B, T, NH],
        bufs: [mask, att, null],
        groups: B * NH * T,
        constants: { HAS_MASK: +(mask !== null) },
      });
      const O = headCols(out, C, 0, T, HS);
      this.#batchedMatmul({ ...heads, N: HS, K: T, alpha: 1, causal: 2, drop, note: "P̃·V" }, P, V, O);
      return;
    }
    this.#dispatch(flash ? K.attnFlashFwd : K.attnFwd, {
      params: [B, T, C, NH, ...drop.params],
      bufs: [qkv, mask, att, out],
      // flash: a workgroup per block of 64 queries of one (b, h); rows: a workgroup per query row
      groups: flash ? B * NH * Math.ceil(T / 64) : B * NH * T,
      constants: { HAS_MASK: +(mask !== null), DROPOUT: drop.on },
    });
  }

  /** Whether the flash kernels run ({@link #flashFor}), after checking they can (head size ≤ their registers). */
  #flashAttention(B: number, T: number, C: number, NH: number, op: string): boolean {
    if (!this.#flashFor(B, T, NH)) return false;
    if (C / NH > FLASH_MAX_HS) {
      throw new Error(
        this.attentionKernel === "flash"
          ? `Cannot run ${op} (flash): head size ${C / NH} exceeds ${FLASH_MAX_HS}; use attention "matmul"`
          : `Cannot run ${op}: the attention probabilities (B·NH·T² = ${B * NH * T * T} floats) exceed the device's ` +
            `largest binding, and the flash kernels that avoid them take head sizes up to ${FLASH_MAX_HS}, not ${
              C / NH
            }`,
      );
    }
    return true;
  }

  attentionBackward(args: OpArgs<"attentionBackward">): void {
    const op = "attentionBackward";
    const { B, T, C, NH } = args;
    this.#checkHeads(C, NH, op);
    const drop = attentionDropout(args.dropout, op);
    const dqkv = this.#buf(args.dqkv, op), dout = this.#buf(args.dout, op);
    const qkv = this.#buf(args.qkv, op), att = this.#buf(args.att, op);
    this.#need([[dqkv, "dqkv"], [qkv, "qkv"]], B * T * 3 * C, op);
    this.#need([[dout, "dout"]], B * T * C, op);
    this.#need([[att, "att"]], this.attentionSavedLength(B, T, NH), op);
    if (this.#flashAttention(B, T, C, NH, op)) {
      // the forward's mask is needed again: the probabilities are recomputed
      const mask = args.mask ? this.#buf(args.mask, op, "i32") : null;
      if (mask) this.#need([[mask, "mask"]], B * T, op);
      const bufs = [dout, qkv, mask, att, dqkv];
      const params = [B, T, C, NH, ...drop.params];
      const constants = { HAS_MASK: +(mask !== null), DROPOUT: drop.on };
      const groups = Math.ceil((B * NH * T) / 64); // a row per invocation
      this.#dispatch(K.attnFlashDq, { params, bufs, groups, constants }); // D_t first: dkv reads it
      this.#dispatch(K.attnFlashDkv, { params, bufs, groups, constants });
      return;
    }
    if (this.attentionKernel === "matmul") {
      // dP̃ = dout·Vᵀ into grad; dS = P·(dP − D) in place; dQ = dS·K·scale, dK = dSᵀ·Q·scale, dV = P̃ᵀ·dout
      const HS = C / NH, C3 = 3 * C, scale = attentionScale(HS);
      const grad = this.#acquire(B * NH * T * T, "f32", "attention dS");
      const sq = { B, NH, M: T, N: T, K: HS }, toHead = { B, NH, M: T, N: HS, K: T };
      const Q = headCols(qkv, C3, 0, T, HS), Kh = headCols(qkv, C3, C, T, HS);
      const Vt = headCols(qkv, C3, 2 * C, T, HS, true), dO = headCols(dout, C, 0, T, HS);
      const dQ = headCols(dqkv, C3, 0, T, HS), dK = headCols(dqkv, C3, C, T, HS), dV = headCols(dqkv, C3, 2 * C, T, HS);
      this.#batchedMatmul({ ...sq, alpha: 1, causal: 1, note: "dout·Vᵀ" }, dO, Vt, headSquares(grad, T, NH));
      this.#dispatch(K.attnSoftmaxBwd, {
        params: [B, T, NH, ...drop.params],
        bufs: [null, att, grad],
        groups: B * NH * T,
        constants: { DROPOUT: drop.on },
      });
      const dS = headSquares(grad, T, NH), dSt = headSquares(grad, T, NH, true), Pt = headSquares(att, T, NH, true);
      this.#batchedMatmul({ ...toHead, alpha: scale, causal: 2, note: "dS·K" }, dS, Kh, dQ);
      this.#batchedMatmul({ ...toHead, alpha: scale, causal: 3, note: "dSᵀ·Q" }, dSt, Q, dK);
      this.#batchedMatmul({ ...toHead, alpha: 1, causal: 3, drop, note: "P̃ᵀ·dout" }, Pt, dO, dV);
      this.free(grad);
      return;
    }
    const dpre = this.#acquire(B * NH * T * T, "f32", "attention dpreatt");
    const bufs = [dout, qkv, att, dqkv, dpre];
    const params = [B, T, C, NH, ...drop.params];
    const constants = { DROPOUT: drop.on };
    this.#dispatch(K.attnBwdDpre, { params, bufs, groups: B * NH * T, constants });
    this.#dispatch(K.attnBwdDq, { params, bufs, groups: Math.ceil((B * T * C) / 256), constants });
    this.#dispatch(K.attnBwdDkv, { params, bufs, groups: Math.ceil((B * T * C) / 256), constants });
    this.free(dpre);
  }

  /**
   * Attention's products for every (batch row b, head h) in one dispatch of matmul_batched.wgsl:
   * out = alpha · A·B, each operand a {@link HeadView}. `causal` and `drop` as the kernel's CAUSAL and DROP_A.
   */
  #batchedMatmul(
    s: {
      B: number;
      NH: number;
      M: number;
      N: number;
      K: number;
      alpha: number;
      causal: 0 | 1 | 2 | 3;
      drop?: { params: number[]; on: number };
      /** What the product is, for the profiler's table ("Q·Kᵀ", …). */
      note: string;
    },
    a: HeadView,
    b: HeadView,
    out: HeadView,
  ): void {
    if (out.trans) throw new Error("batched matmul: the output view cannot be transposed");
    const [a0, ab, ah] = a.at, [b0, bb, bh] = b.at, [c0, cb, ch] = out.at;
    const drop = s.drop ?? { params: [0, 0, 0], on: 0 };
    this.#dispatch(K.matmulBatched, {
      params: [s.M, s.N, s.K, s.NH, a.ld, b.ld, out.ld, a0, ab, ah, b0, bb, bh, c0, cb, ch, s.alpha, ...drop.params],
      bufs: [a.buf, b.buf, out.buf],
      groups: [Math.ceil(s.N / 64), Math.ceil(s.M / 64), s.B * s.NH],
      constants: { TRANS_A: +!!a.trans, TRANS_B: +!!b.trans, DROP_A: drop.on, CAUSAL: s.causal },
      profileNote: `${s.note} ${s.B * s.NH}×(${s.M}×${s.N}×${s.K})`,
    });
  }

  attentionCached(args: OpArgs<"attentionCached">): void {
    const op = "attentionCached";
    const { B, Tn, pos0, Tmax, C, NH } = args;
    this.#checkHeads(C, NH, op);
    if (pos0 < 0 || pos0 + Tn > Tmax) {
      throw new Error(`Cannot run ${op}: positions ${pos0}…${pos0 + Tn - 1} do not fit the cache of ${Tmax}`);
    }
    const out = this.#buf(args.out, op), qkv = this.#buf(args.qkv, op);
    const kcache = this.#buf(args.kcache, op), vcache = this.#buf(args.vcache, op);
    const mask = args.mask ? this.#buf(args.mask, op, "i32") : null;
    this.#need([[out, "out"]], B * Tn * C, op);
    this.#need([[qkv, "qkv"]], B * Tn * 3 * C, op);
    this.#need([[kcache, "kcache"], [vcache, "vcache"]], B * Tmax * C, op);
    if (mask) this.#need([[mask, "mask"]], B * Tmax, op);
    const scratch = this.#acquire(B * NH * Tn * Tmax, "f32", "attention cached scores");
    const bufs = [qkv, mask, kcache, vcache, out, scratch];
    const params = [B, Tn, C, NH, pos0, Tmax];
    const constants = { HAS_MASK: +(mask !== null) };
    this.#dispatch(K.attnCachedStore, { params, bufs, groups: Math.ceil((B * Tn * C) / 256), constants });
    this.#dispatch(K.attnCachedAttend, { params, bufs, groups: B * NH * Tn, constants });
    this.free(scratch);
  }

  // ------------------------------------------------------------------ loss

  crossEntropy(args: OpArgs<"crossEntropy">): void {
    const op = "crossEntropy";
    const { N, V } = args;
    const losses = this.#buf(args.losses, op), logits = this.#buf(args.logits, op);
    const targets = this.#buf(args.targets, op, "i32");
    const dlogits = args.dlogits ? this.#buf(args.dlogits, op) : null;
    this.#need([[logits, "logits"]], N * V, op);
    this.#need([[losses, "losses"]], N, op);
    this.#need([[targets, "targets"]], N, op);
    if (dlogits) this.#need([[dlogits, "dlogits"]], N * V, op);
    const inPlace = dlogits !== null && sameRange(dlogits, logits);
    const mode = dlogits === null ? 0 : inPlace ? 2 : 1;
    this.#dispatch(K.crossEntropy, {
      params: [N, V, args.scale],
      bufs: [logits, targets, losses, mode === 1 ? dlogits : null],
      groups: N,
      constants: { DLOGITS: mode },
    });
  }

  sum(args: OpArgs<"sum">): void {
    const out = this.#buf(args.out, "sum"), inp = this.#buf(args.inp, "sum");
    this.#need([[out, "out"]], 1, "sum");
    this.#need([[inp, "inp"]], args.n, "sum");
    this.#dispatch(K.sum, {
      params: [args.n, args.s ?? 1],
      bufs: [inp, out],
      groups: 1,
      constants: { ACCUMULATE: +!!args.accumulate },
    });
  }

  // ------------------------------------------------------------------ optimizer

  globalNorm(args: OpArgs<"globalNorm">): void {
    const out = this.#buf(args.out, "globalNorm");
    this.#need([[out, "out"]], 1, "globalNorm");
    const BLOCK = 4096;
    const inputs = args.bufs.map((b) => this.#buf(b, "globalNorm"));
    const count = inputs.reduce((s, b) => s + Math.ceil(b.length / BLOCK), 0);
    const partials = this.#acquire(Math.max(1, count), "f32", "global norm partials");
    let offset = 0;
    for (const b of inputs) {
      const blocks = Math.ceil(b.length / BLOCK);
      if (blocks === 0) continue;
      this.#dispatch(K.normPartial, { params: [b.length, offset, count], bufs: [b, partials, out], groups: blocks });
      offset += blocks;
    }
    this.#dispatch(K.normFinal, { params: [0, 0, count], bufs: [null, partials, out], groups: 1 });
    this.free(partials);
  }

  adamw(args: OpArgs<"adamw">): void {
    const op = "adamw";
    const param = this.#buf(args.param, op), grad = this.#buf(args.grad, op);
    const m = this.#buf(args.m, op), v = this.#buf(args.v, op);
    const norm = args.norm ? this.#buf(args.norm, op) : null;
    this.#need([[param, "param"], [grad, "grad"], [m, "m"], [v, "v"]], args.n, op);
    if (norm && args.maxNorm === undefined) throw new Error("Cannot run adamw: norm given without maxNorm");
    const bc1 = 1 - Math.pow(args.beta1, args.step);
    const bc2 = 1 - Math.pow(args.beta2, args.step);
    this.#dispatch(K.adamw, {
      params: [
        args.n,
        args.lr,
        args.beta1,
        args.beta2,
        args.eps,
        args.weightDecay,
        bc1,
        bc2,
        args.maxNorm ?? 0,
        1 - args.beta1,
        1 - args.beta2,
      ],
      bufs: [param, grad, m, v, norm],
      groups: Math.ceil(args.n / 256),
      constants: { HAS_NORM: +(norm !== null) },
    });
  }

  // ------------------------------------------------------------------ internals

  /** The live GpuBuf behind a handle, checking that it is not freed and has the right dtype. */
  #buf(buf: Buf, op: string, dtype: DType = "f32"): GpuBuf {
    const b = buf as GpuBuf;
    if (!(b instanceof GpuBuf)) throw new Error(`Cannot run ${op}: the buffer does not belong to this backend`);
    if (!b.buffer) throw new Error(`Cannot run ${op}: buffer "${b.label}" was freed`);
    if (this.#disposed) throw new Error(`Cannot run ${op}: the WebGPU backend was disposed`);
    if (this.#error) throw this.#error;
    if (op !== "write" && op !== "read" && op !== "zero" && op !== "copy" && b.dtype !== dtype) {
      throw new Error(`Cannot run ${op}: buffer "${b.label}" is ${b.dtype}, expected ${dtype}`);
    }
    return b;
  }

  /** Check that each buffer holds at least n elements. */
  #need(list: readonly [GpuBuf, string][], n: number, op: string): void {
    for (const [b, name] of list) {
      if (b.length < n) {
        throw new Error(`Cannot run ${op}: ${name} ("${b.label}") has ${b.length} elements, needs ${n}`);
      }
    }
  }

  #checkHeads(C: number, NH: number, op: string): void {
    if (NH <= 0 || C % NH !== 0) throw new Error(`Cannot run ${op}: C = ${C} is not divisible by NH = ${NH}`);
  }

  /** A buffer from the pool (contents undefined) or a new one (zeros). */
  #acquire(length: number, dtype: DType, label: string): GpuBuf {
    if (this.#disposed) throw new Error(`Cannot allocate "${label}": the WebGPU backend was disposed`);
    if (!Number.isInteger(length) || length < 0) {
      throw new Error(`Cannot allocate WebGPU buffer "${label}": invalid length ${length}`);
    }
    const bytes = byteSize(length);
    const limit = Math.min(this.#maxBinding, this.#maxBuffer);
    if (bytes > limit) {
      throw new Error(
        `Cannot allocate WebGPU buffer "${label}": ${bytes} bytes (${length} × ${dtype}) exceeds the device's ` +
          `maxStorageBufferBindingSize/maxBufferSize of ${limit} bytes`,
      );
    }
    const size = Math.min(sizeClass(bytes), Math.floor(limit / 16) * 16);
    const pooled = this.#pool.get(size)?.pop();
    if (pooled) return new GpuBuf(length, dtype, pooled, label);
    const buffer = this.#device.createBuffer({
      label,
      size,
      usage: USAGE_STORAGE | USAGE_COPY_SRC | USAGE_COPY_DST,
    });
    this.#live.add(buffer);
    return new GpuBuf(length, dtype, buffer, label);
  }

  /** A 16-byte placeholder for binding `i` (one per index, so placeholders never alias each other). */
  #placeholder(i: number): GPUBuffer {
    let b = this.#placeholders.get(i);
    if (!b) {
      b = this.#device.createBuffer({ label: `placeholder ${i}`, size: 16, usage: USAGE_STORAGE });
      this.#placeholders.set(i, b);
    }
    return b;
  }

  #enc(): GPUCommandEncoder {
    return this.#encoder ??= this.#device.createCommandEncoder();
  }

  #endPass(): void {
    if (this.#pass) {
      this.#pass.end();
      this.#pass = null;
    }
  }

  /** Submit everything recorded so far, with the uniform slots it uses. */
  #flush(): void {
    this.#endPass();
    if (!this.#encoder) return;
    if (this.#slots > 0) {
      this.#device.queue.writeBuffer(this.#uniforms, 0, this.#uniformHost, 0, this.#slots * UNIFORM_SLOT);
    }
    const afterProfile = this.#profiler?.finishBatch(this.#encoder);
    const afterTune = this.#tuner?.timer.finishBatch(this.#encoder);
    this.#device.queue.submit([this.#encoder.finish()]);
    this.#submits++;
    afterProfile?.();
    afterTune?.();
    this.#encoder = null;
    this.#slots = 0;
  }

  #throwIfFailed(): void {
    if (this.#error) throw this.#error;
  }

  #pipeline(
    k: KernelDef,
    constants: Record<string, number>,
  ): { pipeline: GPUComputePipeline; bgl: GPUBindGroupLayout; layoutId: number } {
    let layout = this.#layouts.get(k);
    if (!layout) {
      const entries: GPUBindGroupLayoutEntry[] = [
        { binding: 0, visibility: STAGE_COMPUTE, buffer: { type: "uniform", hasDynamicOffset: true } },
        ...k.bindings.map((access, i): GPUBindGroupLayoutEntry => ({
          binding: i + 1,
          visibility: STAGE_COMPUTE,
          buffer: { type: access === "rw" ? "storage" : "read-only-storage" },
        })),
      ];
      const bgl = this.#device.createBindGroupLayout({ label: `${k.src.file}:${k.entry}`, entries });
      layout = { bgl, pl: this.#device.createPipelineLayout({ bindGroupLayouts: [bgl] }), id: this.#nextId++ };
      this.#layouts.set(k, layout);
    }
    let byConstants = this.#pipelines.get(k);
    if (!byConstants) this.#pipelines.set(k, byConstants = new Map());
    const key = Object.keys(constants).sort().map((c) => `${c}=${constants[c]}`).join(",");
    let pipeline = byConstants.get(key);
    if (!pipeline) {
      let module = this.#modules.get(k.src);
      if (!module) {
        module = this.#device.createShaderModule({ label: k.src.file, code: k.src.code });
        this.#modules.set(k.src, module);
      }
      pipeline = this.#device.createComputePipeline({
        label: `${k.src.file}:${k.entry}${key ? ` (${key})` : ""}`,
        layout: layout.pl,
        compute: { module, entryPoint: k.entry, constants },
      });
      byConstants.set(key, pipeline);
    }
    return { pipeline, bgl: layout.bgl, layoutId: layout.id };
  }

  /**
   * The bind group of the uniform ring (binding 0, its slot chosen per dispatch by a dynamic offset) and
   * `bufs` (bindings 1 … count; null binds a placeholder), made once per layout and set of buffers.
   * Creating bind groups was most of the host's time per dispatch; pooled buffers recur from step to step,
   * so the cache hits. A buffer is bound whole, a group's view as its own range. Binding whole buffers is
   * safe because every kernel indexes by its size uniforms, never by `arrayLength`, and every buffer fits a
   * binding (`#acquire` caps its size).
   */
  #bindGroup(
    bgl: GPUBindGroupLayout,
    layoutId: number,
    count: number,
    bufs: readonly (GpuBuf | null)[],
  ): GPUBindGroup {
    let key = String(layoutId);
    const resources: GPUBufferBinding[] = [];
    for (let i = 0; i < count; i++) {
      const b = bufs[i];
      const buffer = b?.buffer ?? this.#placeholder(i);
      let id = this.#bufferIds.get(buffer);
      if (id === undefined) this.#bufferIds.set(buffer, id = this.#nextId++);
      if (b?.owner) {
        const size = byteSize(b.length);
        resources.push({ buffer, offset: b.offset, size });
        key += `,${id}@${b.offset}+${size}`;
      } else {
        resources.push({ buffer });
        key += "," + id;
      }
    }
    let group = this.#bindGroups.get(key);
    if (!group) {
      if (this.#bindGroups.size >= MAX_BIND_GROUPS) this.#bindGroups.clear();
      const entries: GPUBindGroupEntry[] = [
        { binding: 0, resource: { buffer: this.#uniforms, offset: 0, size: UNIFORM_SLOT } },
      ];
      for (let i = 0; i < resources.length; i++) entries.push({ binding: i + 1, resource: resources[i]! });
      group = this.#device.createBindGroup({ layout: bgl, entries });
      this.#bindGroups.set(key, group);
    }
    return group;
  }

  /** Record one dispatch of kernel `k`. */
  #dispatch(k: KernelDef, args: DispatchArgs): void {
    const label = `${k.src.file}:${k.entry}`;
    // Workgroup grid.
    let gx: number, gy: number, gz = 1;
    if (typeof args.groups === "number") {
      const n = args.groups;
      if (n === 0) return;
      gy = Math.ceil(n / MAX_GROUPS_PER_DIM);
      gx = Math.ceil(n / gy);
    } else {
      [gx, gy, gz = 1] = args.groups;
      if (gx === 0 || gy === 0 || gz === 0) return;
    }
    if (gx > MAX_GROUPS_PER_DIM || gy > MAX_GROUPS_PER_DIM || gz > MAX_GROUPS_PER_DIM) {
      throw new Error(
        `Cannot dispatch ${label}: ${gx} × ${gy} × ${gz} workgroups exceed ${MAX_GROUPS_PER_DIM} per dimension`,
      );
    }
    // A writable binding may share its GPU buffer only with other writable bindings of disjoint ranges
    // (views of one group): WebGPU rejects a buffer both written and read in one dispatch, and overlap.
    const bufs = args.bufs;
    for (let i = 0; i < bufs.length; i++) {
      const bi = bufs[i];
      if (!bi || k.bindings[i] !== "rw") continue;
      for (let j = 0; j < bufs.length; j++) {
        const bj = bufs[j];
        if (j === i || !bj || bj.buffer !== bi.buffer) continue;
        if (k.bindings[j] !== "rw" || (bj.offset < bi.end && bi.offset < bj.end)) {
          throw new Error(
            bi === bj || sameRange(bi, bj)
              ? `Cannot dispatch ${label}: buffer "${bi.label}" is bound twice and written`
              : `Cannot dispatch ${label}: "${bi.label}" is written while "${bj.label}", in the same GPU buffer, is ` +
                `bound too (${k.bindings[j] === "rw" ? "overlapping" : "read"})`,
          );
        }
      }
    }
    const { pipeline, bgl, layoutId } = this.#pipeline(k, args.constants ?? {});
    // Uniform parameters into this dispatch's slot.
    if (this.#slots >= this.#batchLimit) {
      this.#flush();
      this.#batchLimit = Math.min(2 * this.#batchLimit, this.flushEvery);
    }
    const slot = this.#slots++;
    const view = new DataView(this.#uniformHost, slot * UNIFORM_SLOT, UNIFORM_SLOT);
    for (let i = 0; i < k.params.length; i++) {
      const v = args.params[i] ?? 0;
      const t = k.params[i];
      if (t === "f") view.setFloat32(i * 4, v, true);
      else if (t === "i") view.setInt32(i * 4, v, true);
      else view.setUint32(i * 4, v, true);
    }
    const bindGroup = this.#bindGroup(bgl, layoutId, k.bindings.length, bufs);
    const timer = args.timer ??
      (this.#profiler ? { by: this.#profiler, key: args.profileNote ? `${label} ${args.profileNote}` : label } : null);
    if (timer) {
      // a pass of its own, with its own pair of timestamps
      this.#endPass();
      this.#pass = this.#enc().beginComputePass(timer.by.pass(timer.key));
    }
    this.#pass ??= this.#enc().beginComputePass();
    this.#pass.setPipeline(pipeline);
    this.#pass.setBindGroup(0, bindGroup, [slot * UNIFORM_SLOT]);
    this.#pass.dispatchWorkgroups(gx, gy, gz);
    this.#dispatches++;
    if (args.timer) this.#endPass(); // later dispatches must not fall inside the timed pass
  }
}
