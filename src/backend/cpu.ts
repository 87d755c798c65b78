/**
 * The CPU backend. Its files are in cpu/:
 * - reference.ts: `CpuReferenceBackend`, every op as plain loops, the spec that the WGSL kernels match
 *   (their "Matches: CpuBackend.op" lines name these loops: `CpuBackend` runs them where it has no fast path);
 * - memory.ts: `CpuBuf` and the buffer pool that the reference extends;
 * - fast.ts: `CpuBackend`, the reference with BLAS (matmul.ts), WebAssembly SIMD (wasm_matmul.ts,
 *   wasm_math.ts) and helper threads (threads.ts) where they load; `matmul: "reference"` or
 *   `GPT2_SFT_CPU=reference` leaves it the loops alone.
 *
 * @example
 * ```ts
 * import { CpuBackend, cpuData } from "./cpu.ts";
 * const be = new CpuBackend();
 * const a = be.upload(new Float32Array([1, 2, 3, 4])); // [2,2]
 * const out = be.alloc(4);
 * be.matmul({ out, a, b: a, M: 2, N: 2, K: 2 });
 * console.log(cpuData(out)); // Float32Array [7, 10, 15, 22]
 * ```
 * @module
 */

export { CpuBuf, cpuData } from "./cpu/memory.ts";
export { CpuReferenceBackend, type CpuReferenceOptions } from "./cpu/reference.ts";
export { CpuBackend, type CpuBackendOptions } from "./cpu/fast.ts";
