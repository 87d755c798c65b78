/**
 * The kernel registry: every WGSL file of `kernels/` (imported as text, so Deno and Bun read them the same
 * way) and every entry point the WebGPU backend dispatches. Each file's uniforms and bindings are read from
 * its WGSL when it is loaded (`layout.ts`), never spelled out a second time here; the helpers it shares with
 * other kernels come from `kernels/common.wgsl` (`common.ts`).
 * @module
 */

import { linkKernel } from "./common.ts";
import { type KernelLayout, parseKernelLayout } from "./layout.ts";

import adamwSrc from "../../../kernels/adamw.wgsl" with { type: "text" };
import addSrc from "../../../kernels/add.wgsl" with { type: "text" };
import attentionBackwardSrc from "../../../kernels/attention_backward.wgsl" with { type: "text" };
import attentionCachedSrc from "../../../kernels/attention_cached.wgsl" with { type: "text" };
import attentionForwardSrc from "../../../kernels/attention_forward.wgsl" with { type: "text" };
import attentionSoftmaxSrc from "../../../kernels/attention_softmax.wgsl" with { type: "text" };
import copyBlockSrc from "../../../kernels/copy_block.wgsl" with { type: "text" };
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

/** One WGSL file and the interface it declares. */
export interface KernelFile {
  readonly file: string;
  /** The source compiled: the file, then the common.wgsl helpers it names (`common.ts`). */
  readonly code: string;
  readonly layout: KernelLayout;
}

/**
 * One entry point of a kernel file. Its uniforms and bindings are the file's ({@link KernelFile.layout}):
 * binding 0 is `struct Params`, bindings 1… the storage buffers, all entry points of a file sharing them.
 */
export interface KernelDef {
  readonly src: KernelFile;
  readonly entry: string;
}

/** A kernel file as the device compiles it: with the common.wgsl helpers it names appended. */
function kernelFile(file: string, code: string): KernelFile {
  return { file, code: linkKernel(file, code), layout: parseKernelLayout(file, code) };
}

/** Entry point `entry` of `src`, which must declare it. */
function kernel(src: KernelFile, entry: string): KernelDef {
  if (!src.layout.entries.has(entry)) {
    throw new Error(`Cannot load kernel ${src.file}: no @compute entry point "${entry}"`);
  }
  return { src, entry };
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
  copyBlock: kernelFile("copy_block.wgsl", copyBlockSrc),
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
  adamw: kernel(F.adamw, "main"),
  add: kernel(F.add, "main"),
  attnBwdDpre: kernel(F.attentionBackward, "dpre_main"),
  attnBwdDq: kernel(F.attentionBackward, "dq_main"),
  attnBwdDkv: kernel(F.attentionBackward, "dkv_main"),
  attnCachedStore: kernel(F.attentionCached, "store_main"),
  attnCachedAttend: kernel(F.attentionCached, "attend_main"),
  attnFwd: kernel(F.attentionForward, "main"),
  attnFlashFwd: kernel(F.attentionFlashForward, "main"),
  attnFlashDq: kernel(F.attentionFlashBackward, "dq_main"),
  attnFlashDkv: kernel(F.attentionFlashBackward, "dkv_main"),
  attnSoftmaxFwd: kernel(F.attentionSoftmax, "forward_main"),
  attnSoftmaxBwd: kernel(F.attentionSoftmax, "backward_main"),
  copyBlock: kernel(F.copyBlock, "main"),
  crossEntropy: kernel(F.crossEntropy, "main"),
  dropoutFwd: kernel(F.dropout, "forward_main"),
  dropoutBwd: kernel(F.dropout, "backward_main"),
  embFwd: kernel(F.embeddingForward, "main"),
  embBwdLink: kernel(F.embeddingBackward, "link_main"),
  embBwdWte: kernel(F.embeddingBackward, "dwte_main"),
  embBwdWpe: kernel(F.embeddingBackward, "dwpe_main"),
  geluBwd: kernel(F.geluBackward, "main"),
  geluFwd: kernel(F.geluForward, "main"),
  normPartial: kernel(F.globalNorm, "partial_main"),
  normFinal: kernel(F.globalNorm, "final_main"),
  lnBwdDinp: kernel(F.layernormBackward, "dinp_main"),
  lnBwdDparams: kernel(F.layernormBackward, "dparams_main"),
  lnFwd: kernel(F.layernormForward, "main"),
  matmulNaive: kernel(F.matmulNaive, "main"),
  matmulTiled: kernel(F.matmulTiled, "main"),
  matmulLarge: kernel(F.matmulLarge, "main"),
  matmulBatched: kernel(F.matmulBatched, "main"),
  matmulLargeF16: kernel(F.matmulLargeF16, "main"),
  scale: kernel(F.scale, "main"),
  sum: kernel(F.sum, "main"),
  sumRows: kernel(F.sumRows, "main"),
  splitKReduce: kernel(F.splitKReduce, "main"),
} as const satisfies Record<string, KernelDef>;
