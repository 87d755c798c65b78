/**
 * The matmul policy of the WebGPU backend: which kernel runs a product (`MatmulKernel`), when K is split
 * ({@link splitKSlices}), and the tuner that times the candidates per shape (`matmul_tuner.ts`). A product
 * with an operand larger than one binding (the LM head tied to GPT-2's 50257-row token embedding) runs in
 * blocks that fit (`splitMatmul` in `split.ts`), each block as any other product.
 * @module
 */

import type { MatmulArgs } from "../backend.ts";
import type { GpuProfiler } from "../gpu_profiler.ts";
import { type MatmulCandidate, matmulCandidates, MatmulTuner, TUNE_RUNS, type TunedShape } from "../matmul_tuner.ts";
import { matmulNote } from "../profile.ts";
import type { GpuBuf } from "./buffers.ts";
import { K, type KernelDef } from "./kernels.ts";
import { AUTO_LARGE_MIN_GROUPS, type MatmulKernel, splitKSlices } from "./options.ts";
import type { GpuRuntime } from "./runtime.ts";
import { matmulFits, splitMatmul } from "./split.ts";

/** Each matmul kernel's entry point and the output block one workgroup computes. */
const MATMUL_DEFS: Record<Exclude<MatmulKernel, "auto" | "tune">, { def: KernelDef; block: number }> = {
  naive: { def: K.matmulNaive, block: 16 },
  tiled: { def: K.matmulTiled, block: 64 },
  large: { def: K.matmulLarge, block: 128 },
  "large-f16": { def: K.matmulLargeF16, block: 128 },
};

/**
 * The sizes of a product as kernel `def` declares them: M, N, K, and KC (the depth of one slice of K) in the
 * kernels that can split K (tiled, large: KC = K when unsplit).
 */
function matmulParams(def: KernelDef, M: number, N: number, K: number, KC: number): Record<string, number> {
  return def.src.layout.params.some((f) => f.name === "KC") ? { M, N, K, KC } : { M, N, K };
}

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

/** Runs every `matmul` of one backend with the kernel its `MatmulKernel` (or a forced candidate) picks. */
export class Matmuls {
  readonly #rt: GpuRuntime;
  readonly #matmul: { def: KernelDef; block: number } | "auto";
  readonly #tuner: MatmulTuner | null;
  readonly #forced: MatmulCandidate | null;

  /** `tuner` times the candidates with `kernel` "tune"; `forced` runs every product as one candidate. */
  constructor(rt: GpuRuntime, kernel: MatmulKernel, tuner: MatmulTuner | null, forced: MatmulCandidate | null) {
    this.#rt = rt;
    this.#matmul = kernel === "auto" || kernel === "tune" ? "auto" : MATMUL_DEFS[kernel];
    this.#tuner = tuner;
    this.#forced = forced;
  }

  matmul(args: MatmulArgs): void {
    const op = "matmul";
    const { M, N, K: Kd } = args;
    const out = this.#rt.buf(args.out, op), a = this.#rt.buf(args.a, op), b = this.#rt.buf(args.b, op);
    const bias = args.bias ? this.#rt.buf(args.bias, op) : null;
    if (!matmulFits(this.#rt, [a, b, out, bias])) return splitMatmul(this.#rt, args, (block) => this.matmul(block));
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
    // the S partial products [S,M,N] must fit one binding too
    const S = Math.min(slices, Math.floor(this.#rt.maxBindingBytes / 4 / (x.M * x.N)));
    if (S > 1) return this.#matmulSplitK({ ...x, S }, k, timer);
    this.#rt.dispatch(k.def, {
      params: matmulParams(k.def, x.M, x.N, x.Kd, x.Kd),
      bufs: { a: x.a, b: x.b, bias: x.bias, out: x.out },
      groups: [Math.ceil(x.N / k.block), Math.ceil(x.M / k.block)],
      constants: x.constants,
      profileNote: x.note,
      timer,
    });
  }

  /** The tuner's timing runs: each candidate {@link TUNE_RUNS} times into a scratch output. */
  #matmulTimeCandidates(x: MatmulCall, key: string, tuner: MatmulTuner, candidates: MatmulCandidate[]): void {
    const scratch = this.#rt.acquire(x.M * x.N, "f32", "matmul tuning scratch");
    const run = { ...x, bias: null, out: scratch, constants: { ...x.constants, HAS_BIAS: 0, ACCUMULATE: 0 } };
    for (const c of candidates) {
      for (let r = 0; r < TUNE_RUNS; r++) {
        this.#matmulRun(run, MATMUL_DEFS[c.kernel], c.slices, { by: tuner.timer, key: tuner.timerKey(key, c, r) });
      }
    }
    this.#rt.release(scratch);
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
    const part = this.#rt.acquire(S * M * N, "f32", "split-K partial products");
    this.#rt.dispatch(k.def, {
      params: matmulParams(k.def, M, N, Kd, KC),
      bufs: { a: x.a, b: x.b, bias: null, out: part },
      groups: [Math.ceil(N / k.block), Math.ceil(M / k.block), S],
      constants: { ...x.constants, HAS_BIAS: 0, ACCUMULATE: 0, SPLIT_K: 1 },
      profileNote: `${x.note} split ${S}`,
      timer,
    });
    this.#rt.dispatch(K.splitKReduce, {
      params: { MN: M * N, N, S },
      bufs: { part, bias: x.bias, out: x.out },
      groups: Math.ceil((M * N) / 256),
      constants: { HAS_BIAS: x.constants.HAS_BIAS!, ACCUMULATE: x.constants.ACCUMULATE! },
      timer,
    });
    this.#rt.release(part);
  }
}
