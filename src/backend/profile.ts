/**
 * Where the time goes, per kernel or op: the types and the table shared by the WebGPU profiler
 * (`gpu_profiler.ts`, GPU timestamps) and the CPU backend's op timer ({@link OpTimer}, host clock: the CPU
 * ops run inside the call, so timing the call times the work). Both are switched on by
 * `GPT2_SFT_PROFILE=1` and reported by `profileReport` (`mod.ts`) and `deno task bench --profile`.
 * @module
 */

import type { MatmulArgs, OpName } from "./backend.ts";

/** One kernel's share of the profiled work. */
export interface KernelTime {
  /** `file.wgsl:entry`, plus the shape for matmuls (`M×N×K` and layout). */
  kernel: string;
  /** Dispatches. */
  calls: number;
  /** Total GPU milliseconds. */
  ms: number;
}

/** The shape and layout of a matmul, as profiles key it: `1024×3072×768 Bᵀ +=`. */
export function matmulNote(args: Pick<MatmulArgs, "M" | "N" | "K" | "transA" | "transB" | "accumulate">): string {
  return `${args.M}×${args.N}×${args.K}${args.transA ? " Aᵀ" : ""}${args.transB ? " Bᵀ" : ""}${
    args.accumulate ? " +=" : ""
  }`;
}

/**
 * Host-clock timing of a backend's ops, installed on one backend object: each op method is replaced by
 * one that times the call (matmuls keyed by {@link matmulNote}). Meant for the CPU backend, whose ops run
 * synchronously inside the call.
 */
export class OpTimer {
  readonly #totals = new Map<string, { calls: number; ms: number }>();

  /** Replace `ops` on `target` (an instance) by timed versions. */
  install(target: object, ops: readonly OpName[]): void {
    const t = target as Record<string, unknown>;
    for (const op of ops) {
      const fn = t[op];
      if (typeof fn !== "function") continue;
      const call = fn.bind(target) as (args: unknown) => unknown;
      t[op] = (args: unknown) => {
        const t0 = performance.now();
        try {
          return call(args);
        } finally {
          const key = op === "matmul" ? `matmul ${matmulNote(args as MatmulArgs)}` : op;
          const e = this.#totals.get(key) ?? { calls: 0, ms: 0 };
          e.calls++;
          e.ms += performance.now() - t0;
          this.#totals.set(key, e);
        }
      };
    }
  }

  /** The totals since the last reset, largest first. */
  report(): KernelTime[] {
    return [...this.#totals].map(([kernel, e]) => ({ kernel, calls: e.calls, ms: e.ms })).sort((a, b) => b.ms - a.ms);
  }

  reset(): void {
    this.#totals.clear();
  }
}

/**
 * Matmul rows merged over the token dimension, which per-batch padding and generation change every step
 * while the other two name the weight: M in the forward and dx layouts (`matmul 57×64×256 Bᵀ` and
 * `matmul 60×64×256 Bᵀ` become `matmul M×64×256 Bᵀ`), K in the weight-gradient layout Aᵀ·B
 * (`matmul 64×256×K Aᵀ +=`). Other rows pass through; the result is sorted largest first.
 */
export function mergeMatmulRows(rows: readonly KernelTime[]): KernelTime[] {
  const merged = new Map<string, KernelTime>();
  for (const r of rows) {
    const kernel = r.kernel.replace(
      /^(.*(?:matmul|\.wgsl:main)\S* )(\d+)×(\d+)×(\d+)(.*)$/,
      (_all, head: string, m: string, n: string, k: string, tail: string) =>
        tail.includes("Aᵀ") ? `${head}${m}×${n}×K${tail}` : `${head}M×${n}×${k}${tail}`,
    );
    const e = merged.get(kernel);
    if (e) {
      e.calls += r.calls;
      e.ms += r.ms;
    } else merged.set(kernel, { kernel, calls: r.calls, ms: r.ms });
  }
  return [...merged.values()].sort((a, b) => b.ms - a.ms);
}

/**
 * A profile as a text table: kernel, calls, total ms, ms per call, share of the total; `per` divides calls
 * and ms (a mean per step); beyond `maxRows` rows (default 30) the rest is summed in one line.
 */
export function formatProfile(
  rows: readonly KernelTime[],
  opts: { per?: number; title?: string; maxRows?: number } = {},
): string {
  const per = opts.per ?? 1;
  const total = rows.reduce((s, r) => s + r.ms, 0);
  const max = opts.maxRows ?? 30;
  const shown = rows.slice(0, max);
  const rest = rows.slice(max);
  const w = Math.max(6, ...shown.map((r) => r.kernel.length));
  const lines = [
    opts.title ?? `Time by kernel${per > 1 ? ` (per step, mean of ${per})` : ""}`,
    `${"kernel".padEnd(w)}  ${"calls".padStart(6)}  ${"ms".padStart(9)}  ${"ms/call".padStart(9)}  share`,
  ];
  const share = (ms: number) => (total > 0 ? (100 * ms) / total : 0).toFixed(1).padStart(5);
  for (const r of shown) {
    lines.push(
      `${r.kernel.padEnd(w)}  ${String(Math.round(r.calls / per)).padStart(6)}  ${
        (r.ms / per).toFixed(3).padStart(9)
      }  ` +
        `${(r.ms / r.calls).toFixed(4).padStart(9)}  ${share(r.ms)} %`,
    );
  }
  if (rest.length > 0) {
    const ms = rest.reduce((s, r) => s + r.ms, 0), calls = rest.reduce((s, r) => s + r.calls, 0);
    lines.push(
      `${`(${rest.length} more)`.padEnd(w)}  ${String(Math.round(calls / per)).padStart(6)}  ` +
        `${(ms / per).toFixed(3).padStart(9)}  ${"".padStart(9)}  ${share(ms)} %`,
    );
  }
  lines.push(`${"total".padEnd(w)}  ${"".padStart(6)}  ${(total / per).toFixed(3).padStart(9)}`);
  return lines.join("\n");
}
