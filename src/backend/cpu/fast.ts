/**
 * The CPU backend that training, evaluation and the CLI use: the reference loops of reference.ts, with the
 * ops that dominate a step run faster where the runtime allows:
 * - matmul through a native BLAS by FFI, else a WebAssembly SIMD kernel (matmul.ts, wasm_matmul.ts);
 * - attention with its products through that GEMM (attention_blas.ts), and the bias gradient (sumRows) as a
 *   product with a row of ones;
 * - GELU, dropout, layernorm, the attention softmax and AdamW in WebAssembly SIMD (wasm_math.ts);
 * - these ops split over helper threads (threads.ts, worker.ts, parallel.ts), and the WASM kernel's
 *   products too (it does not thread itself).
 * Every op without a fast path, and every op when none loads (`matmul: "reference"`,
 * `GPT2_SFT_CPU=reference`), is the reference's own loop: {@link CpuBackend} extends
 * {@link CpuReferenceBackend} and calls it. The fast paths agree with the loops to float32 rounding (they
 * sum in float32), except dropout, which is bit for bit.
 *
 * @example
 * ```ts
 * import { CpuBackend } from "./fast.ts";
 * const be = new CpuBackend(); // BLAS if it loads, else WebAssembly SIMD, else the loops
 * console.log(be.description);
 * ```
 * @module
 */

import type { DType, MatmulArgs, OpArgs } from "../backend.ts";
import { type DropoutParams, dropoutParams } from "../dropout_hash.ts";
import { f32, i32 } from "./memory.ts";
import {
  adamwScalars,
  attentionDropout,
  cachedAttentionViews,
  CpuReferenceBackend,
  type CpuReferenceOptions,
} from "./reference.ts";
import { type CpuMatmulMode, type DenseMatmulArgs, type FastMatmul, selectCpuMatmul } from "./matmul.ts";
import { cachedAttentionBlas, gemmAttentionBackward, gemmAttentionForward } from "./attention_blas.ts";
import { type FastMath, simdLayernormFits, wasmSimdMath } from "./wasm_math.ts";
import { cpuThreadCount, CpuThreads, splitRange } from "./threads.ts";
import { dropoutNums, type PartJob, runPart } from "./parallel.ts";

/** Elements (of work) below which an op stays on one thread: a split costs ≈ 10–50 µs. */
const PAR_MIN = 65536;
/** Multiply-adds below which a product stays on one thread (2²⁰: ≈ 0.1 ms for the WASM kernel). */
const MATMUL_PAR_MIN = 2 ** 20;

/**
 * Whether a head's products are small enough that OpenBLAS runs each on the calling thread (it threads a
 * product of M·N·K > 4·65536: interface/gemm.c's GEMM_MULTITHREAD_THRESHOLD · SMP_THRESHOLD_MIN). Larger
 * ones (GPT-2's real heads: 64 × 256 × 64) are split only with OpenBLAS held to one thread per call.
 */
function smallHeads(T: number, HS: number): boolean {
  return 64 * T * HS <= 4 * 65536;
}

/**
 * A zeroed array on a SharedArrayBuffer, so that the helper threads of threads.ts can work on it. Shared
 * memory costs something even on one thread: Deno fills it 6× and copies it 1.5–2× slower (element by
 * element, as the memory model asks), so it is only used with helper threads.
 */
function sharedArray(length: number, dtype: DType): Float32Array | Int32Array {
  const buf = new SharedArrayBuffer(4 * length);
  return dtype === "i32" ? new Int32Array(buf) : new Float32Array(buf);
}

/** Zeros, copied into shared arrays (3× faster than `fill` on them under Deno). */
const ZEROS = new Float32Array(16384);

/** arr.fill(0), faster for an array on a SharedArrayBuffer. */
function zeroFill(arr: Float32Array | Int32Array): void {
  if (!(arr.buffer instanceof SharedArrayBuffer) || arr.length < ZEROS.length) {
    arr.fill(0);
    return;
  }
  const zeros = arr instanceof Int32Array ? new Int32Array(ZEROS.buffer) : ZEROS;
  for (let o = 0; o < arr.length; o += zeros.length) {
    arr.set(zeros.subarray(0, Math.min(zeros.length, arr.length - o)), o);
  }
}

/** Options of {@link CpuBackend}. */
export interface CpuBackendOptions extends CpuReferenceOptions {
  /**
   * "auto" (default): OpenBLAS through FFI when it loads, else WebAssembly SIMD, else the reference loops
   * (the front doors pass `GPT2_SFT_CPU`); "blas" / "wasm": that one or an error;
   * "reference": always the reference loops. See matmul.ts.
   */
  matmul?: CpuMatmulMode;
  /** A BLAS library (path or soname) to try before OpenBLAS's usual names (`GPT2_SFT_BLAS_LIB`). */
  blasLib?: string;
  /**
   * Threads for the ops beside the matmul (attention, GELU, dropout, layernorm, AdamW; threads.ts) and,
   * where the matmul does not thread itself (the WASM kernel), for the products too; the calling one
   * included; 1 runs them on the calling thread alone. Default (`GPT2_SFT_CPU_THREADS` unset): the number of
   * cores (at most 16) where there are at least 4 (2 with the WASM matmul), else 1. Only with a fast matmul
   * (the reference loops stay single-threaded).
   */
  threads?: number;
}

/** The CPU backend: the reference loops, with BLAS, WebAssembly SIMD and helper threads where they load. */
export class CpuBackend extends CpuReferenceBackend {
  /** The native matmul, or undefined for the reference loops. */
  readonly #fastMatmul: FastMatmul | undefined;
  /**
   * GELU, the attention softmax, layernorm and AdamW in WebAssembly SIMD (wasm_math.ts) beside a fast
   * matmul; undefined for the reference loops.
   */
  readonly #fastMath: FastMath | undefined;
  /** A row of ones for sumRows through BLAS (grown as needed). */
  #ones = new Float32Array(0);
  /** Threads asked for (main included). */
  readonly #threadCount: number;
  /** Whether arrays go on SharedArrayBuffers (only with helper threads: see sharedArray). */
  readonly #shared: boolean;
  /** The helper threads: undefined until the first op big enough to split; null when there are none. */
  #threads: CpuThreads | null | undefined;
  /** Per helper thread: its layernorm weight and bias gradient accumulators (shared, grown as needed). */
  #partials: Float32Array[] = [];

  constructor(options: CpuBackendOptions = {}) {
    const fastMatmul = selectCpuMatmul(options.matmul, options.blasLib);
    let fastMath: FastMath | undefined;
    let description: string | undefined; // undefined: the reference's
    if (fastMatmul) {
      const g = wasmSimdMath();
      if (!("reason" in g)) fastMath = g;
      const fast = fastMath ? "GELU, softmax, layernorm and AdamW in WebAssembly SIMD, other ops" : "other ops";
      description = fastMatmul.description.replace(/\)$/, `; ${fast} plain TypeScript)`);
    }
    const threadCount = fastMath ? options.threads ?? cpuThreadCount(fastMatmul!.multithreaded) : 1;
    if (!Number.isInteger(threadCount) || threadCount < 1) {
      throw new Error(`CpuBackend: threads must be a whole number ≥ 1, got ${options.threads}`);
    }
    if (threadCount > 1) description = description!.replace(/\)$/, `; ${threadCount} threads)`);
    else if (fastMatmul?.kind === "wasm") description = description!.replace(/\)$/, "; 1 thread)");
    super(options, description);
    this.#fastMatmul = fastMatmul;
    this.#fastMath = fastMath;
    this.#threadCount = threadCount;
    this.#shared = threadCount > 1;
  }

  // ------------------------------------------------------------------------------------------------
  // memory: on SharedArrayBuffers with helper threads
  // ------------------------------------------------------------------------------------------------

  protected override newArray(length: number, dtype: DType): Float32Array | Int32Array {
    return this.#shared ? sharedArray(length, dtype) : super.newArray(length, dtype);
  }

  protected override zeroArray(arr: Float32Array | Int32Array): void {
    zeroFill(arr);
  }

  override dispose(): void {
    super.dispose();
    this.#threads?.close();
    this.#threads = null;
  }

  // ------------------------------------------------------------------------------------------------
  // helper threads (threads.ts): ops split into parts that run at once
  // ------------------------------------------------------------------------------------------------

  /** The helper threads, started on first use; undefined when there are none (1 thread, or they failed). */
  #helpers(): CpuThreads | undefined {
    if (this.#threads === undefined) {
      this.#threads = null;
      if (this.#threadCount > 1) {
        const t = CpuThreads.start(this.#threadCount, this.#fastMatmul?.kind);
        if ("reason" in t) {
          console.warn(`CPU backend: running on one thread (helper threads did not start: ${t.reason})`);
          this.description = this.description.replace(/; \d+ threads\)$/, "; 1 thread)");
        } else this.#threads = t;
      }
    }
    return this.#threads ?? undefined;
  }

  /**
   * Run the parts `jobs()` makes, one per thread, when `work` is worth a split (≥ `min`: PAR_MIN elements,
   * or MATMUL_PAR_MIN multiply-adds for a product) and every array is shared; returns false (nothing done)
   * otherwise, for the single-threaded path.
   */
  #parallel(
    work: number,
    arrays: (Float32Array | Int32Array | undefined)[],
    jobs: () => PartJob[],
    min = PAR_MIN,
  ): boolean {
    if (work < min || this.#threadCount <= 1 || !CpuThreads.shareable(...arrays)) return false;
    const threads = this.#helpers();
    if (!threads) return false;
    const math = this.#fastMath!, gemm = this.#fastMatmul?.gemm;
    threads.run(jobs(), (job) => runPart(job, { math, gemm }));
    this.#splitOps++;
    return true;
  }

  #splitOps = 0;

  /** How many ops ran split over the helper threads so far (for tests and benchmarks). */
  get splitOps(): number {
    return this.#splitOps;
  }

  /**
   * An attention op split by heads over the threads. Where a head's products are big enough for OpenBLAS to
   * thread them itself (see smallHeads), both thread pools on the same cores made attention 3–7× slower:
   * then the BLAS runs one thread per call for the op (`singleThreaded`), or the op is not split when the
   * library cannot be told.
   */
  #splitHeads(
    op: "attention" | "attentionBwd",
    arrays: Record<string, Float32Array | Int32Array | undefined>,
    dims: { B: number; T: number; C: number; NH: number },
    drop: DropoutParams | undefined,
  ): boolean {
    const { B, T, C, NH } = dims;
    if (!this.#fastMath || this.#threadCount <= 1) return false;
    const split = () =>
      splitRange(B * NH, this.#threadCount).map(([lo, hi]) => ({
        op,
        arrays,
        nums: { B, T, C, NH, lo, hi, ...dropoutNums(drop) },
      }));
    const run = () => this.#parallel(B * NH * T * T, Object.values(arrays), split);
    if (smallHeads(T, C / NH)) return run();
    const single = this.#fastMatmul?.singleThreaded;
    return single ? single(run) : false;
  }

  /**
   * A product split over the threads by blocks of the output: columns (multiples of the WASM kernel's 8-wide
   * panels) when N ≥ M, else rows (multiples of 4). Every thread packs the whole of the other operand, which
   * costs O(K·(M + N)) against the product's O(M·N·K / threads). Products under 2²⁰ multiply-adds (≈ 0.1 ms
   * on one thread) stay whole.
   */
  #splitMatmul(d: DenseMatmulArgs): boolean {
    const { M, N, K } = d;
    const cols = N >= M;
    const nums = {
      M,
      N,
      K,
      transA: d.transA ? 1 : 0,
      transB: d.transB ? 1 : 0,
      accumulate: d.accumulate ? 1 : 0,
      cols: cols ? 1 : 0,
    };
    const arrays = { out: d.out, a: d.a, b: d.b, bias: d.bias };
    const split = () =>
      splitRange(cols ? N : M, this.#threadCount, cols ? 8 : 4).map(([lo, hi]) => ({
        op: "matmul" as const,
        arrays,
        nums: { ...nums, lo, hi },
      }));
    return this.#parallel(M * N * K, Object.values(arrays), split, MATMUL_PAR_MIN);
  }

  /**
   * An elementwise op split by ranges of [0, n) (starts at multiples of 16): each part gets every array's
   * slice, and with `offset` its start as `nums.offset` (the dropout mask's flat index).
   */
  #splitElements(
    op: PartJob["op"],
    n: number,
    arrays: Record<string, Float32Array | undefined>,
    nums: Record<string, number>,
    offset = false,
  ): boolean {
    const split = () =>
      splitRange(n, this.#threadCount, 16).map(([lo, hi]) => ({
        op,
        arrays: Object.fromEntries(Object.entries(arrays).map(([k, a]) => [k, a?.subarray(lo, hi)])),
        nums: offset ? { ...nums, offset: lo } : nums,
      }));
    return this.#parallel(n, Object.values(arrays), split);
  }

  // ------------------------------------------------------------------------------------------------
  // elementwise: GELU and dropout in SIMD
  // ------------------------------------------------------------------------------------------------

  /**
   * Beside a fast matmul, geluForward saves gelu'(x) when asked (`deriv`) and geluBackward multiplies by it:
   * recomputing the derivative was a third of GELU's time.
   */
  override get geluSavesDerivative(): boolean {
    return this.#fastMath !== undefined;
  }

  /**
   * The SIMD kernels compute `gelu_new` (the default activation); the others run the reference's loops,
   * which fill `deriv` when asked.
   */
  override geluForward(args: OpArgs<"geluForward">): void {
    if (!this.#fastMath || (args.activation ?? "gelu_new") !== "gelu_new") return super.geluForward(args);
    const { n } = args;
    const out = f32(args.out, "gelu out"), inp = f32(args.inp, "gelu inp");
    const deriv = args.deriv ? f32(args.deriv, "gelu deriv") : undefined;
    if (this.#splitElements("gelu", n, { out, inp, deriv }, {})) return;
    this.#fastMath.forward(out, inp, n, deriv);
  }

  /** From a saved `deriv` the SIMD product serves every activation; without it only `gelu_new` is in SIMD. */
  override geluBackward(args: OpArgs<"geluBackward">): void {
    const simd = args.deriv !== undefined || (args.activation ?? "gelu_new") === "gelu_new";
    if (!this.#fastMath || !simd) return super.geluBackward(args);
    const { n } = args;
    const dinp = f32(args.dinp, "gelu dinp"), inp = f32(args.inp, "gelu inp");
    const dout = f32(args.dout, "gelu dout");
    const deriv = args.deriv ? f32(args.deriv, "gelu deriv") : undefined;
    const accumulate = !!args.accumulate;
    if (this.#splitElements("geluBwd", n, { dinp, inp, dout, deriv }, { acc: accumulate ? 1 : 0 })) return;
    this.#fastMath.backward(dinp, inp, dout, n, accumulate, deriv);
  }

  /** The reference's dropout, the same numbers in SIMD (bit for bit). */
  override dropoutForward(args: OpArgs<"dropoutForward">): void {
    if (!this.#fastMath) return super.dropoutForward(args);
    const { n } = args;
    const d = dropoutParams(args.p, args.seed, "dropoutForward");
    const out = f32(args.out, "dropout out"), inp = f32(args.inp, "dropout inp");
    this.#dropout(out, inp, n, d, false);
  }

  override dropoutBackward(args: OpArgs<"dropoutBackward">): void {
    if (!this.#fastMath) return super.dropoutBackward(args);
    const { n } = args;
    const d = dropoutParams(args.p, args.seed, "dropoutBackward");
    const dinp = f32(args.dinp, "dropout dinp"), dout = f32(args.dout, "dropout dout");
    this.#dropout(dinp, dout, n, d, args.accumulate ?? false);
  }

  /** The SIMD dropout, split over the threads when large. */
  #dropout(out: Float32Array, inp: Float32Array, n: number, d: DropoutParams, accumulate: boolean): void {
    const nums = { ...dropoutNums(d), acc: accumulate ? 1 : 0 };
    if (!this.#splitElements("dropout", n, { out, inp }, nums, true)) {
      this.#fastMath!.dropout(out, inp, n, d, accumulate);
    }
  }

  // ------------------------------------------------------------------------------------------------
  // layernorm in SIMD (C a multiple of 4), split by rows
  // ------------------------------------------------------------------------------------------------

  override layernormForward(args: OpArgs<"layernormForward">): void {
    if (!this.#fastMath) return super.layernormForward(args);
    const { N, C, eps } = args;
    const out = f32(args.out, "layernorm out"), inp = f32(args.inp, "layernorm inp");
    const weight = f32(args.weight, "layernorm weight"), bias = f32(args.bias, "layernorm bias");
    const meanOut = args.mean ? f32(args.mean, "layernorm mean") : undefined;
    const rstdOut = args.rstd ? f32(args.rstd, "layernorm rstd") : undefined;
    const arrays = { out, inp, weight, bias, mean: meanOut, rstd: rstdOut };
    if (simdLayernormFits(C)) {
      const split = () =>
        splitRange(N, this.#threadCount).map(([lo, hi]) => ({
          op: "layernorm" as const,
          arrays: {
            out: out.subarray(lo * C, hi * C),
            inp: inp.subarray(lo * C, hi * C),
            weight,
            bias,
            mean: meanOut?.subarray(lo, hi),
            rstd: rstdOut?.subarray(lo, hi),
          },
          nums: { N: hi - lo, C, eps },
        }));
      if (this.#parallel(N * C, [out, inp, weight, bias, meanOut, rstdOut], split)) return;
    }
    if (this.#fastMath.layernormForward(arrays, N, C, eps)) return; // float32 SIMD
    super.layernormForward(args);
  }

  override layernormBackward(args: OpArgs<"layernormBackward">): void {
    if (!this.#fastMath) return super.layernormBackward(args);
    const { N, C } = args;
    const dinp = f32(args.dinp, "layernorm dinp"), dout = f32(args.dout, "layernorm dout");
    const dweight = f32(args.dweight, "layernorm dweight"), dbias = f32(args.dbias, "layernorm dbias");
    const inp = f32(args.inp, "layernorm inp"), weight = f32(args.weight, "layernorm weight");
    const meanA = f32(args.mean, "layernorm mean"), rstdA = f32(args.rstd, "layernorm rstd");
    const arrays = { dinp, dout, inp, weight, mean: meanA, rstd: rstdA, dweight, dbias };
    if (simdLayernormFits(C) && this.#layernormBackwardSplit(arrays, N, C, args.accumulate)) return;
    if (this.#fastMath.layernormBackward(arrays, N, C, args.accumulate ?? false)) return;
    super.layernormBackward(args);
  }

  /**
   * Layernorm's backward split by rows: the first part adds into dweight and dbias, each other part into
   * its thread's own zeroed accumulators, summed into dweight and dbias after. False when not split.
   */
  #layernormBackwardSplit(
    a: { dinp: Float32Array; dout: Float32Array; inp: Float32Array; weight: Float32Array } & {
      mean: Float32Array;
      rstd: Float32Array;
      dweight: Float32Array;
      dbias: Float32Array;
    },
    N: number,
    C: number,
    accumulate: boolean | undefined,
  ): boolean {
    const ranges = splitRange(N, this.#threadCount);
    for (let k = 1; k < ranges.length; k++) {
      if ((this.#partials[k]?.length ?? 0) < 2 * C) this.#partials[k] = sharedArray(2 * C, "f32") as Float32Array;
      this.#partials[k]!.fill(0, 0, 2 * C);
    }
    const split = () =>
      ranges.map(([lo, hi], k) => ({
        op: "layernormBwd" as const,
        arrays: {
          dinp: a.dinp.subarray(lo * C, hi * C),
          dout: a.dout.subarray(lo * C, hi * C),
          inp: a.inp.subarray(lo * C, hi * C),
          weight: a.weight,
          mean: a.mean.subarray(lo, hi),
          rstd: a.rstd.subarray(lo, hi),
          dweight: k === 0 ? a.dweight : this.#partials[k]!.subarray(0, C),
          dbias: k === 0 ? a.dbias : this.#partials[k]!.subarray(C, 2 * C),
        },
        nums: { N: hi - lo, C, acc: accumulate ? 1 : 0 },
      }));
    const arrays = [a.dinp, a.dout, a.inp, a.weight, a.mean, a.rstd, a.dweight, a.dbias];
    if (!this.#parallel(N * C, arrays, split)) return false;
    for (let k = 1; k < ranges.length; k++) {
      const p = this.#partials[k]!;
      for (let c = 0; c < C; c++) {
        a.dweight[c] = a.dweight[c]! + p[c]!;
        a.dbias[c] = a.dbias[c]! + p[C + c]!;
      }
    }
    return true;
  }

  // ------------------------------------------------------------------------------------------------
  // matmul through BLAS or the WASM kernel
  // ------------------------------------------------------------------------------------------------

  override matmul(args: MatmulArgs): void {
    if (!this.#fastMatmul) return super.matmul(args);
    const out = f32(args.out, "matmul out");
    const a = f32(args.a, "matmul a"), b = f32(args.b, "matmul b");
    const bias = args.bias ? f32(args.bias, "matmul bias") : undefined;
    const dense = { ...args, out, a, b, bias };
    // a matmul that does not thread itself (WASM) gets a block of rows or columns per helper thread
    if (!this.#fastMatmul.multithreaded && this.#splitMatmul(dense)) return;
    this.#fastMatmul.matmul(dense);
  }

  /** The reference's sumRows as the product of a row of ones with inp (float32 sums, as torch's). */
  override sumRows(args: OpArgs<"sumRows">): void {
    const { M, N } = args;
    const gemm = this.#fastMatmul?.gemm;
    if (!gemm || !(M > 0 && N > 0)) return super.sumRows(args);
    const out = f32(args.out, "sumRows out"), inp = f32(args.inp, "sumRows inp");
    if (this.#ones.length < M) this.#ones = new Float32Array(M).fill(1);
    const g = { a: this.#ones, aOffset: 0, lda: M, b: inp, bOffset: 0, ldb: N, c: out, cOffset: 0, ldc: N };
    gemm({ ...g, transA: false, transB: false, M: 1, N, K: M, alpha: 1, beta: args.accumulate ? 1 : 0 });
  }

  // ------------------------------------------------------------------------------------------------
  // attention with its products through the GEMM (attention_blas.ts)
  // ------------------------------------------------------------------------------------------------

  override attentionForward(args: OpArgs<"attentionForward">): void {
    const gemm = this.#fastMatmul?.gemm;
    if (!gemm) return super.attentionForward(args);
    const { B, T, C, NH } = args;
    const drop = attentionDropout(args.dropout, "attentionForward");
    const out = f32(args.out, "attention out"), att = f32(args.att, "attention att");
    const qkv = f32(args.qkv, "attention qkv");
    const mask = args.mask ? i32(args.mask, "attention mask") : undefined;
    const expShift = T <= 16384 ? this.#fastMath?.expShift : undefined; // the softmax's exponentials in SIMD
    // the heads split over the threads, each with its own BLAS and SIMD blocks
    if (this.#splitHeads("attention", { out, att, qkv, mask }, { B, T, C, NH }, drop)) return;
    const scratch = this.#fastMath?.attentionScratch(T); // the whole softmax in SIMD
    gemmAttentionForward({ gemm, expShift, scratch, out, att, qkv, mask, B, T, C, NH, drop });
  }

  override attentionBackward(args: OpArgs<"attentionBackward">): void {
    const gemm = this.#fastMatmul?.gemm;
    if (!gemm) return super.attentionBackward(args);
    const { B, T, C, NH } = args;
    const drop = attentionDropout(args.dropout, "attentionBackward");
    const dqkv = f32(args.dqkv, "attention dqkv"), dout = f32(args.dout, "attention dout");
    const qkv = f32(args.qkv, "attention qkv"), att = f32(args.att, "attention att");
    if (this.#splitHeads("attentionBwd", { dqkv, dout, qkv, att }, { B, T, C, NH }, drop)) return;
    const scratch = this.#fastMath?.attentionScratch(T);
    gemmAttentionBackward({ gemm, scratch, dqkv, dout, qkv, att, B, T, C, NH, drop });
  }

  override attentionCached(args: OpArgs<"attentionCached">): void {
    const gemm = this.#fastMatmul?.gemm;
    if (!gemm) return super.attentionCached(args);
    const { B, Tn, pos0, Tmax, C, NH } = args;
    const { out, qkv, kc, vc, mask } = cachedAttentionViews(args);
    const math = this.#fastMath, scratch = math ? (n: number) => math.attentionScratch(n) : undefined;
    cachedAttentionBlas({ gemm, scratch, out, qkv, kc, vc, mask, B, Tn, pos0, Tmax, C, NH });
  }

  // ------------------------------------------------------------------------------------------------
  // optimizer
  // ------------------------------------------------------------------------------------------------

  /** The reference's AdamW in float32 WebAssembly SIMD (as torch's CPU AdamW, in float32), for β1 > 0.5. */
  override adamw(args: OpArgs<"adamw">): void {
    if (!this.#fastMath || !(1 - args.beta1 < 0.5)) return super.adamw(args);
    const { n } = args;
    const param = f32(args.param, "adamw param"), grad = f32(args.grad, "adamw grad");
    const m = f32(args.m, "adamw m"), v = f32(args.v, "adamw v");
    const c = adamwScalars(args);
    if (this.#splitElements("adamw", n, { param, grad, m, v }, c)) return;
    this.#fastMath.adamw(param, grad, m, v, n, c);
  }
}
