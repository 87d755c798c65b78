/**
 * The CPU backend's fast matmul, chosen once when the backend is made: single-precision GEMM from a native
 * BLAS (OpenBLAS; Accelerate on macOS) through Deno's or Bun's FFI; else a WebAssembly SIMD kernel
 * (wasm_matmul.ts); else the plain TypeScript loops of `reference.ts`.
 *
 * Measured with bench/cpu_matmul.ts at GPT-2 small's shapes with 1024 rows on a 2-core AMD EPYC VM (Zen 4,
 * KVM, 23 GiB, no GPU; not idle, hence ranges): the reference loops 3–5 GFLOP/s, WASM SIMD (1 thread, 128-bit
 * lanes) 15–27, Debian's OpenBLAS 0.3.21 (Cooperlake kernel, 2 threads) through FFI 175–200, numpy 2.4's
 * sgemm (its own OpenBLAS 0.3.31, SkylakeX kernel) 180–205: BLAS through FFI is ~95 % of numpy, WASM SIMD
 * ~10 %. The WASM kernel is a strided GEMM that the backend splits over its helper threads (fast.ts): on a
 * 2-core AMD EPYC VM where OpenBLAS takes its Zen kernel, 25–27 GFLOP/s on one thread, 38–53 on two, ≈ 30 %
 * of numpy there.
 *
 * Choice (`CpuBackend`'s option `matmul`, default "auto"):
 * - "auto": BLAS when it loads, else WASM SIMD, else the reference. The front doors pass the environment
 *   variable `GPT2_SFT_CPU` (auto | blas | wasm | reference) as the option (src/env.ts).
 * - "blas": BLAS or an error that says why not (no library, no FFI permission, Node).
 * - "wasm": the WebAssembly SIMD kernel (or an error when the runtime lacks SIMD).
 * - "reference": the plain loops.
 * The option `blasLib` (`GPT2_SFT_BLAS_LIB`) names a library (path or soname) to try before the defaults.
 * OpenBLAS's own variables (OPENBLAS_NUM_THREADS, OPENBLAS_CORETYPE) apply as usual.
 *
 * Numerics differ from the reference: BLAS and WASM accumulate in float32 (BLAS in its own blocking
 * order), the reference in float64, so results agree to about K·ε·Σ|A·B|, not bit for bit.
 * @module
 */

import process from "node:process";
import type { MatmulArgsOf } from "../backend.ts";
import { CBLAS, type Cblas, openCblas } from "../../runtime.ts";
import { wasmSimdMatmul } from "./wasm_matmul.ts";

/** How the CPU backend does matmul. */
export type CpuMatmulMode = "auto" | "blas" | "wasm" | "reference";
/** The accepted values of {@link CpuMatmulMode}. */
export const CPU_MATMUL_MODES: readonly CpuMatmulMode[] = ["auto", "blas", "wasm", "reference"];

/** Parse a mode (from an option or `GPT2_SFT_CPU`, src/env.ts); `what` names the source in the error. */
export function parseCpuMatmulMode(value: string, what = "matmul mode"): CpuMatmulMode {
  if (!(CPU_MATMUL_MODES as readonly string[]).includes(value)) {
    throw new Error(`Unknown CPU ${what}: "${value}" (expected one of ${CPU_MATMUL_MODES.join(", ")})`);
  }
  return value as CpuMatmulMode;
}

/** A matmul on plain arrays, already checked (sizes, no aliasing) by the caller. Same maths as MatmulArgs. */
export type DenseMatmulArgs = MatmulArgsOf<Float32Array>;

/** A fast matmul implementation and a one-line description of it. */
export interface FastMatmul {
  /** Which one: a helper thread loads the same (threads.ts). */
  readonly kind: "blas" | "wasm";
  /** E.g. "CPU (OpenBLAS 0.3.21 Cooperlake via FFI for matmul, 2 threads)". */
  readonly description: string;
  /**
   * Whether one call may use several cores (OpenBLAS with more than one thread). When not, the backend
   * splits big products over its helper threads itself.
   */
  readonly multithreaded: boolean;
  /** `out[M,N] (=|+=) op(A)·op(B) (+ bias)`, as {@link DenseMatmulArgs}. */
  matmul(args: DenseMatmulArgs): void;
  /** The strided GEMM of {@link StridedGemmArgs}. */
  gemm(args: StridedGemmArgs): void;
  /**
   * Run `fn` with the BLAS on one thread per call (OpenBLAS's `openblas_set_num_threads(1)`, restored after),
   * so that several threads can each call it; undefined when the library cannot be told.
   */
  singleThreaded?<T>(fn: () => T): T;
}

/**
 * `C[M,N] = alpha·op(A)·op(B) + beta·C` on row-major matrices that start at element offsets of larger arrays
 * and have leading dimensions (row strides) lda, ldb, ldc, as `cblas_sgemm` (op(A) is [M,K]: A is stored
 * [M,K] with lda ≥ K, or [K,M] with lda ≥ M when transA). The caller checks the sizes; M, N, K ≥ 1.
 */
export interface StridedGemmArgs {
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  alpha: number;
  a: Float32Array;
  aOffset: number;
  lda: number;
  b: Float32Array;
  bOffset: number;
  ldb: number;
  beta: number;
  c: Float32Array;
  cOffset: number;
  ldc: number;
}

/** Apple's Accelerate framework: a CBLAS every Mac has (its `cblas_sgemm` is what numpy uses there). */
export const ACCELERATE = "/System/Library/Frameworks/Accelerate.framework/Accelerate";

/**
 * The library names tried, in order: `lib` first when given (the `blasLib` option: `GPT2_SFT_BLAS_LIB`),
 * then OpenBLAS by its usual names, then on macOS Accelerate. Whatever loads must pass {@link blasSelfCheck},
 * else the WASM kernel runs.
 */
export function blasCandidates(platform: string = process.platform, lib?: string): string[] {
  const names = ["libopenblas.so.0", "libopenblas.so", "libopenblas.dylib", "libopenblas.dll", "openblas.dll"];
  if (platform === "darwin") names.push(ACCELERATE);
  return lib ? [lib, ...names] : names;
}

let cached: { blas: Cblas } | { reason: string } | undefined;

/**
 * The process's BLAS, opened once (the first call loads it, trying `lib` first when given; later calls
 * reuse it) and checked by {@link blasSelfCheck}; a library that fails the check is closed and reported as
 * unavailable.
 */
export function loadBlas(lib?: string): { blas: Cblas } | { reason: string } {
  if (cached) return cached;
  const r = openCblas(blasCandidates(process.platform, lib));
  const bad = "blas" in r ? blasSelfCheck(r.blas) : undefined;
  if (bad && "blas" in r) r.blas.close();
  cached = bad ? { reason: bad } : r;
  return cached;
}

/** The name or path the process's BLAS was opened by, once {@link loadBlas} loaded one (helper threads load it too). */
export function loadedBlasLib(): string | undefined {
  return cached && "blas" in cached ? cached.blas.path : undefined;
}

/**
 * One small product per transpose combination (sizes past the kernels' tile widths) against a float64
 * loop: returns a description of the first wrong one, or undefined. It guards against a library build
 * whose kernel for this processor computes wrong results (old OpenBLAS builds did on newer CPUs); it
 * takes well under a millisecond.
 */
export function blasSelfCheck(blas: Cblas): string | undefined {
  const M = 19, N = 37, K = 70;
  const a = new Float32Array(M * K), b = new Float32Array(K * N), out = new Float32Array(M * N);
  for (let i = 0; i < a.length; i++) a[i] = ((i * 7919) % 61) / 61 - 0.5;
  for (let i = 0; i < b.length; i++) b[i] = ((i * 104729) % 53) / 53 - 0.5;
  const mm = blasMatmul(blas);
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      mm.matmul({ out, a, b, M, N, K, transA, transB });
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let acc = 0, mag = 0;
          for (let k = 0; k < K; k++) {
            const p = (transA ? a[k * M + i]! : a[i * K + k]!) * (transB ? b[j * K + k]! : b[k * N + j]!);
            acc += p;
            mag += Math.abs(p);
          }
          // float32 summation of K terms: error ≤ K·ε·Σ|p| (ε = 2⁻²³), a bound with a 2× margin
          if (!(Math.abs(out[i * N + j]! - acc) <= K * 2 ** -23 * mag + 1e-30)) {
            return `${blas.config || blas.path} failed a self-check (transA=${transA}, transB=${transB}: ` +
              `[${i},${j}] = ${out[i * N + j]}, expected ${acc})`;
          }
        }
      }
    }
  }
  return undefined;
}

/** A short name of the library from OpenBLAS's config string, e.g. "OpenBLAS 0.3.21 Cooperlake". */
function blasName(blas: Cblas): string {
  if (!blas.config) return blas.path === ACCELERATE ? "Accelerate" : `CBLAS (${blas.path})`;
  const words = blas.config.split(/\s+/);
  // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Cooperlake MAX_THREADS=64": the kernel is the
  // word before MAX_THREADS (a DYNAMIC_ARCH build names the one it picked for this processor).
  const mt = words.findIndex((w) => w.startsWith("MAX_THREADS"));
  const core = mt > 1 ? words[mt - 1] : undefined;
  const parts = words.slice(0, 2);
  if (core && !core.includes("_") && mt > 2) parts.push(core);
  return parts.join(" ");
}

/** The matmul through `cblas_sgemm` (the bias as in {@link matmulViaGemm}). */
export function blasMatmul(blas: Cblas): FastMatmul {
  const gemm = (g: StridedGemmArgs): void => {
    // a subarray hands the FFI a pointer to its first element (Deno "buffer", Bun "ptr")
    blas.sgemm(
      CBLAS.rowMajor,
      g.transA ? CBLAS.trans : CBLAS.noTrans,
      g.transB ? CBLAS.trans : CBLAS.noTrans,
      g.M,
      g.N,
      g.K,
      g.alpha,
      g.aOffset === 0 ? g.a : g.a.subarray(g.aOffset),
      g.lda,
      g.bOffset === 0 ? g.b : g.b.subarray(g.bOffset),
      g.ldb,
      g.beta,
      g.cOffset === 0 ? g.c : g.c.subarray(g.cOffset),
      g.ldc,
    );
  };
  const threads = blas.threads > 0 ? `, ${blas.threads} thread${blas.threads === 1 ? "" : "s"}` : "";
  return {
    description: `CPU (${blasName(blas)} via FFI for matmul${threads})`,
    kind: "blas",
    multithreaded: blas.threads !== 1, // 0: the library cannot say, so assume it threads
    matmul: (args: DenseMatmulArgs) => matmulViaGemm(gemm, args),
    singleThreaded: blas.threads === 1
      ? <T>(fn: () => T): T => fn() // OPENBLAS_NUM_THREADS=1: already one thread per call
      : blas.setThreads && blas.threads > 1
      ? <T>(fn: () => T): T => {
        blas.setThreads!(1);
        try {
          return fn();
        } finally {
          blas.setThreads!(blas.threads);
        }
      }
      : undefined,
    gemm,
  };
}

/** A block of a matmul's output: rows [lo, hi) or columns [lo, hi) (a part of it for one thread). */
export interface MatmulPart {
  cols: boolean;
  lo: number;
  hi: number;
}

/**
 * `out[M,N] (=|+=) op(A)·op(B) (+ bias)` (DenseMatmulArgs) through a strided GEMM, on the whole output or
 * on one block of rows or columns (`part`; with the WASM kernel, the same numbers as the whole, element
 * for element). With a bias and `=`, the output is first filled with the bias and the GEMM adds the product
 * (beta 1): adding it after, row by row in TypeScript, took as long as the product itself at 2100×256×64
 * with BLAS.
 */
export function matmulViaGemm(gemm: (g: StridedGemmArgs) => void, args: DenseMatmulArgs, part?: MatmulPart): void {
  const { out, a, b, bias, M, N, K } = args;
  const acc = args.accumulate ?? false;
  const [m0, m1] = part && !part.cols ? [part.lo, part.hi] : [0, M];
  const [n0, n1] = part?.cols ? [part.lo, part.hi] : [0, N];
  if (m1 <= m0 || n1 <= n0) return;
  if (K === 0) {
    // an empty sum: cblas rejects lda = 0, and the answer is just the bias (or nothing)
    for (let i = m0; i < m1; i++) {
      for (let j = n0; j < n1; j++) out[i * N + j] = (acc ? out[i * N + j]! : 0) + (bias?.[j] ?? 0);
    }
    return;
  }
  const prefill = bias !== undefined && !acc;
  if (prefill) {
    if (n0 === 0 && n1 === N) fillRows(out.subarray(m0 * N, m1 * N), bias, m1 - m0, N);
    else for (let i = m0; i < m1; i++) out.set(bias.subarray(n0, n1), i * N + n0);
  }
  // row-major: A is [M,K] (lda K) or stored [K,M] (lda M); B is [K,N] (ldb N) or stored [N,K] (ldb K)
  gemm({
    transA: args.transA ?? false,
    transB: args.transB ?? false,
    M: m1 - m0,
    N: n1 - n0,
    K,
    alpha: 1,
    a,
    aOffset: args.transA ? m0 : m0 * K,
    lda: args.transA ? M : K,
    b,
    bOffset: args.transB ? n0 * K : n0,
    ldb: args.transB ? K : N,
    beta: acc || prefill ? 1 : 0,
    c: out,
    cOffset: m0 * N + n0,
    ldc: N,
  });
  if (bias && !prefill) {
    for (let i = m0; i < m1; i++) {
      const o = i * N;
      for (let j = n0; j < n1; j++) out[o + j] = out[o + j]! + bias[j]!;
    }
  }
}

/** out[i·N + j] = row[j] for i < M: one row set, then copies that double the filled part (native memmove). */
export function fillRows(out: Float32Array, row: Float32Array, M: number, N: number): void {
  out.set(row.subarray(0, N));
  for (let filled = 1; filled < M; filled *= 2) out.copyWithin(filled * N, 0, Math.min(filled, M - filled) * N);
}

/**
 * The fast matmul for `mode`, or undefined for the reference loops. "auto" (the default) takes BLAS when it
 * loads (`blasLib` tried first), else WebAssembly SIMD when the runtime has it, else the reference; "blas"
 * and "wasm" throw when theirs cannot run.
 */
export function selectCpuMatmul(mode: CpuMatmulMode = "auto", blasLib?: string): FastMatmul | undefined {
  const m = parseCpuMatmulMode(mode);
  if (m === "reference") return undefined;
  if (m !== "wasm") {
    const r = loadBlas(blasLib);
    if ("blas" in r) return blasMatmul(r.blas);
    if (m === "blas") throw new Error(`Cannot use BLAS for the CPU matmul: ${r.reason}`);
  }
  const w = wasmSimdMatmul();
  if ("matmul" in w) return w;
  if (m === "wasm") throw new Error(`Cannot use WebAssembly SIMD for the CPU matmul: ${w.reason}`);
  return undefined;
}
