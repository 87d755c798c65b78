/**
 * Choosing a backend: `cpu` (plain TypeScript, the reference, with matmul through OpenBLAS via FFI or
 * WebAssembly SIMD when available: see cpu/fast.ts), `webgpu` (WGSL kernels), or `auto`, which
 * takes WebGPU when a hardware adapter exists and the CPU otherwise (a software adapter such as Mesa's
 * lavapipe is slower than the CPU backend, so `auto` passes it over; name `webgpu` to use it anyway).
 * @module
 */

import type { Backend } from "./backend.ts";
import { CpuBackend, type CpuBackendOptions } from "./cpu.ts";
import { formatProfile, type KernelTime, mergeMatmulRows } from "./profile.ts";
import { formatTuning, type TunedShape } from "./matmul_tuner.ts";
import type { WebGpuBackendOptions } from "./webgpu/options.ts";

export type { Backend, Buf, DType, MatmulArgs } from "./backend.ts";

/** Backend names accepted by `--backend`. */
export const BACKEND_NAMES = ["auto", "cpu", "webgpu"] as const;
/** A backend name. */
export type BackendName = (typeof BACKEND_NAMES)[number];

/** Parse a `--backend` value, with an error that lists the choices. */
export function parseBackendName(value: string | undefined): BackendName {
  const v = value ?? "auto";
  if (!(BACKEND_NAMES as readonly string[]).includes(v)) {
    throw new Error(`Unknown backend: "${v}" (expected one of ${BACKEND_NAMES.join(", ")})`);
  }
  return v as BackendName;
}

/**
 * Options of {@link createBackend}: profiling (either backend) and each backend's own. The front doors take
 * them from the environment (`backendSettings` in src/env.ts) and their flags; unset ones are the defaults.
 */
export interface BackendOptions {
  /** Time every op (CPU) or kernel (WebGPU, on the GPU); default off (`GPT2_SFT_PROFILE=1`). */
  profile?: boolean;
  /** The CPU backend's matmul, threads and BLAS library (`GPT2_SFT_CPU`, `_CPU_THREADS`, `_BLAS_LIB`). */
  cpu?: Omit<CpuBackendOptions, "profile">;
  /** The WebGPU backend's kernels (`GPT2_SFT_MATMUL`, `GPT2_SFT_ATTENTION`) and, for bench/, its submits. */
  webgpu?: Omit<WebGpuBackendOptions, "profile" | "rejectSoftware">;
}

/** A backend's profile, when it was created with profiling on (`GPT2_SFT_PROFILE=1`, either backend). */
export interface OpProfiler {
  /** The times so far, largest first; `reset` starts the totals over. */
  profile(opts?: { reset?: boolean }): Promise<KernelTime[]>;
  /** What the times are: "GPU time by kernel" (WebGPU) or "Time by op on the CPU". */
  what: string;
}

/** The backend's {@link OpProfiler}, or undefined when it is not profiling. */
export function opProfiler(be: Backend): OpProfiler | undefined {
  const p = be as { profiling?: boolean; profile?: (opts?: { reset?: boolean }) => Promise<KernelTime[]> };
  if (!p.profiling || !p.profile) return undefined;
  return { profile: p.profile.bind(be), what: be.name === "cpu" ? "Time by op on the CPU" : "GPU time by kernel" };
}

/**
 * The time per kernel (WebGPU: on the GPU) or per op (CPU) of everything a backend ran, as a table, when it
 * was created with profiling on (`GPT2_SFT_PROFILE=1`), and the matmul tuner's choices under
 * `GPT2_SFT_MATMUL=tune`; undefined when neither applies.
 */
export async function profileReport(be: Backend): Promise<string | undefined> {
  const profiler = opProfiler(be);
  const tuning = (be as { matmulTuning?: TunedShape[] }).matmulTuning;
  const parts: string[] = [];
  if (profiler) {
    // a whole run sees many M (per-batch padding, generation): matmuls merged over M
    const rows = mergeMatmulRows(await profiler.profile());
    const title = `${profiler.what} (GPT2_SFT_PROFILE=1), the whole run, matmuls over all M`;
    parts.push(formatProfile(rows, { title }));
  }
  if (tuning && tuning.length > 0) parts.push(formatTuning(tuning));
  return parts.length > 0 ? parts.join("\n") : undefined;
}

/** Create the named backend. `auto` prefers a hardware WebGPU adapter, then the CPU. */
export async function createBackend(name: BackendName = "auto", opts: BackendOptions = {}): Promise<Backend> {
  const profile = opts.profile ?? false;
  const cpu = () => new CpuBackend({ ...opts.cpu, profile });
  if (name === "cpu") return cpu();
  const { WebGpuBackend } = await import("./webgpu.ts");
  if (name === "webgpu") return await WebGpuBackend.create({ ...opts.webgpu, profile });
  try {
    const gpu = await WebGpuBackend.create({ ...opts.webgpu, rejectSoftware: true, profile });
    return gpu;
  } catch {
    return cpu();
  }
}
