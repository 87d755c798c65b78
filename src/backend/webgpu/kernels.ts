/**
 * The kernel registry: every WGSL file of `kernels/` (imported as text, so Deno and Bun read them the same
 * way) and every entry point the WebGPU backend dispatches, with its binding layout.
 * @module
 */

import adamwSrc from "../../../kernels/adamw.wgsl" with { type: "text" };
import addSrc from "../../../kernels/add.wgsl" with { type: "text" };
import attentionBackwardSrc from "../../../kernels/attention_backward.wgsl" with { type: "text" };
import attentionCachedSrc from "../../../kernels/attention_cached.wgsl" with { type: "text" };
import attentionForwardSrc from "../../../kernels/attention_forward.wgsl" with { type: "text" };
import attentionSoftmaxSrc from "../../../kernels/attention_softmax.wgsl" with { type: "text" };
import crossEntropySrc from "../../../kernels/cross_entropy.wgsl" with { type: "text" };
import dropoutSrc from "../../../kernels/dropout.wgsl" with { type: "text" };
import embeddingBackwardSrc from "../../../kernels/embedding_backward.wgsl" with { type: "text" };
import embeddingForwardSrc from "../../../kernels/embedding_forward.wgsl" with { type: "text" };
import geluBackwardSrc from "../../../kernels/gelu_backward.wgsl" with { type: "text" };
import geluForwardSrc from "../../../kernels/gelu_forward.wgsl" with { type: "text" };
import globalNormSrc from "../../../kernels/global_norm.wgsl" with { type: "text" };
import layernormBackwardSrc from "../../../kernels/layernorm_backward.wgsl" with { type: "text" };
import layernormForwardSrc from "../../../kernels/layernorm_forward.wgsl" with { type: "text" };
import matmulNaiveSrc from "../../../kernels/matmul_naive.wgsl" with { type: "text" };
import matmulTiledSrc from "../../../kernels/matmul_tiled.wgsl" with { type: "text" };
import matmulLargeSrc from "../../../kernels/matmul_large.wgsl" with { type: "text" };
import matmulBatchedSrc from "../../../kernels/matmul_batched.wgsl" with { type: "text" };
import attentionFlashForwardSrc from "../../../kernels/attention_flash_forward.wgsl" with { type: "text" };
import attentionFlashBackwardSrc from "../../../kernels/attention_flash_backward.wgsl" with { type: "text" };
import matmulLargeF16Src from "../../../kernels/matmul_large_f16.wgsl" with { type: "text" };
import scaleSrc from "../../../kernels/scale.wgsl" with { type: "text" };
import sumSrc from "../../../kernels/sum.wgsl" with { type: "text" };
import sumRowsSrc from "../../../kernels/sum_rows.wgsl" with { type: "text" };
import splitKReduceSrc from "../../../kernels/split_k_reduce.wgsl" with { type: "text" };

/** One WGSL file. */
export interface KernelFile {
  readonly file: string;
  readonly code: string;
}

/**
 * One entry point of a kernel file with its binding layout: binding 0 is the uniform parameters, laid
 * out as `params` says (one 4-byte field per letter: u = u32, i = i32, f = f32); bindings 1… are storage
 * buffers, read-only ("r") or writable ("rw").
 */
export interface KernelDef {
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
export const K = {
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
