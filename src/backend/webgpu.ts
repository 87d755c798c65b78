/**
 * The WebGPU backend's public names: {@link WebGpuBackend} and its options (the code lives in
 * `src/backend/webgpu/`; `webgpu/backend.ts` describes its parts).
 * @module
 */

export { WebGpuBackend } from "./webgpu/backend.ts";
export {
  ALL_MATMUL_KERNELS,
  type AttentionKernel,
  AUTO_LARGE_MIN_GROUPS,
  MATMUL_KERNELS,
  type MatmulKernel,
  parseAttentionKernel,
  parseFlushEvery,
  parseMatmulKernel,
  splitKSlices,
  type WebGpuBackendOptions,
} from "./webgpu/options.ts";
