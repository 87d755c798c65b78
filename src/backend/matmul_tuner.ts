/**
 * Matmul autotuning for the WebGPU backend (`GPT2_SFT_MATMUL=tune`): which kernel is fastest for a product
 * depends on the GPU (cores, shared memory, registers) and on the shape, so instead of guessing, measure.
 *
 * The first time a product of a given shape is recorded, the backend also records a few timing runs of
 * every candidate kernel on the same inputs, each into a scratch output in its own compute pass whose
 * timestamps the GPU writes (the profiler's machinery, `gpu_profiler.ts`); meanwhile that product, and any
 * of the same shape recorded before the timings are back, runs with the `auto` choice. Nothing waits: the
 * timings come back with the batch they were submitted in, and from then on that shape runs with the
 * candidate whose fastest run was fastest. Each shape costs its candidates' runs once per process.
 *
 * Shapes are keyed by the layout, the weight's two dimensions and the token dimension (M, or K in the
 * weight gradient Aᵀ·B) rounded up to a power of two, so the varying B·T of per-batch padding does not tune
 * every length anew (B = 4, T ≤ 256: at most 5 buckets).
 * @module
 */

import type { GpuProfiler } from "./gpu_profiler.ts";

/** A way to run a product: a kernel, and for the tiled one a number of K slices (split-K, 1 = none). */
export interface MatmulCandidate {
  /** "tiled", "large" or "tiled split S". */
  name: string;
  kernel: "tiled" | "large";
  slices: number;
}

/** Timing runs per candidate (the fastest counts). */
export const TUNE_RUNS = 3;

/** One tuned shape, for reports. */
export interface TunedShape {
  /** The shape key, e.g. `M≤1024×3072×768 Bᵀ` or `768×3072×K≤1024 Aᵀ`. */
  shape: string;
  /** The candidate chosen, or null while the timings are out. */
  choice: string | null;
  /** GPU milliseconds of each candidate whose runs are back (the fastest of its runs). */
  candidates: { name: string; ms: number }[];
}

interface Entry {
  shape: string;
  candidates: MatmulCandidate[];
  best: MatmulCandidate | null;
}

/**
 * The tuner's key of a product's shape: the layout, the two dimensions that name the weight, and the token
 * dimension rounded up to a power of two (at least 64) — M in the forward and dx layouts, K in the weight
 * gradient Aᵀ·B (xᵀ·dy sums over the B·T tokens).
 */
export function tuneKey(M: number, N: number, K: number, transA: boolean, transB: boolean): string {
  const up = (x: number) => Math.max(64, 2 ** Math.ceil(Math.log2(x)));
  const dims = transA ? `${M}×${N}×K≤${up(K)}` : `M≤${up(M)}×${N}×${K}`;
  return `${dims}${transA ? " Aᵀ" : ""}${transB ? " Bᵀ" : ""}`;
}

/** The tuner's state: candidates, the timings that came back, the choices made. */
export class MatmulTuner {
  readonly #entries = new Map<string, Entry>();
  constructor(readonly timer: GpuProfiler) {}

  /** The key of a product's shape ({@link tuneKey}). */
  key(M: number, N: number, K: number, transA: boolean, transB: boolean): string {
    return tuneKey(M, N, K, transA, transB);
  }

  /**
   * The best candidate for `key` once its timings are in; undefined when it has none yet, in which case
   * the caller records the timing runs of {@link begin}'s candidates (only the first time: `begin` returns
   * an empty list afterwards).
   */
  best(key: string): MatmulCandidate | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    if (!e.best) this.#decide(key, e);
    return e.best ?? undefined;
  }

  /** Start tuning `key`: the candidates to time, or [] when that is already under way. */
  begin(key: string, candidates: MatmulCandidate[]): MatmulCandidate[] {
    if (this.#entries.has(key)) return [];
    this.#entries.set(key, { shape: key, candidates, best: null });
    return candidates;
  }

  /** The timer key of run `r` of one candidate. */
  timerKey(key: string, c: MatmulCandidate, r: number): string {
    return `${key} | ${c.name} | ${r}`;
  }

  /**
   * A candidate's GPU time: the fastest of its runs (the first run of a new pipeline can include work a
   * driver defers to first use), or undefined until all its runs are back.
   */
  #time(key: string, c: MatmulCandidate): number | undefined {
    const perRun = c.slices > 1 ? 2 : 1; // split-K: the product and the reduce
    let min = Infinity;
    for (let r = 0; r < TUNE_RUNS; r++) {
      const t = this.timer.totals(this.timerKey(key, c, r));
      if (!t || t.calls < perRun) return undefined;
      min = Math.min(min, t.ns);
    }
    return min;
  }

  #decide(key: string, e: Entry): void {
    let best: MatmulCandidate | null = null, bestNs = Infinity;
    for (const c of e.candidates) {
      const ns = this.#time(key, c);
      if (ns === undefined) return; // not all back yet
      if (ns < bestNs) [best, bestNs] = [c, ns];
    }
    e.best = best;
  }

  /** Every shape seen, with its candidates' times and the choice. */
  report(): TunedShape[] {
    return [...this.#entries].map(([key, e]) => {
      if (!e.best) this.#decide(key, e);
      const candidates: { name: string; ms: number }[] = [];
      for (const c of e.candidates) {
        const ns = this.#time(key, c);
        if (ns !== undefined) candidates.push({ name: c.name, ms: ns / 1e6 });
      }
      return { shape: e.shape, choice: e.best?.name ?? null, candidates };
    });
  }
}

/**
 * The candidates for a product: the tiled kernel; the large one where it gets at least a few workgroups,
 * and split in K where its 128×128 blocks are fewer than 128 (a big GPU has about that many cores), into
 * enough slices (of at least 256) for about 256 workgroups; and split-K over the tiled kernel where the
 * output has few 64×64 blocks and K is long (`splitSlices`, the rule of `auto`, and twice that).
 */
export function matmulCandidates(M: number, N: number, K: number, splitSlices: number): MatmulCandidate[] {
  const list: MatmulCandidate[] = [{ name: "tiled", kernel: "tiled", slices: 1 }];
  const blocks128 = Math.ceil(M / 128) * Math.ceil(N / 128);
  if (blocks128 >= 4) {
    list.push({ name: "large", kernel: "large", slices: 1 });
    const s = Math.min(Math.ceil(256 / blocks128), Math.floor(K / 256), Math.floor((8 << 20) / (M * N)));
    if (blocks128 < 128 && s >= 2) list.push({ name: `large split ${s}`, kernel: "large", slices: s });
  }
  if (splitSlices > 1) {
    for (const s of new Set([splitSlices, Math.min(2 * splitSlices, Math.floor(K / 256))])) {
      if (s > 1) list.push({ name: `tiled split ${s}`, kernel: "tiled", slices: s });
    }
  }
  return list;
}

/** The tuning results as a text table. */
export function formatTuning(rows: readonly TunedShape[]): string {
  const w = Math.max(5, ...rows.map((r) => r.shape.length));
  const lines = ["Matmul tuning (GPT2_SFT_MATMUL=tune): GPU ms of each candidate (fastest of its runs), * = chosen"];
  for (const r of rows) {
    const c = r.candidates.map((x) => `${x.name === r.choice ? "*" : ""}${x.name} ${x.ms.toFixed(3)}`).join(", ");
    lines.push(`${r.shape.padEnd(w)}  ${r.choice === null ? "(timings not back yet) " : ""}${c}`);
  }
  return lines.join("\n");
}
