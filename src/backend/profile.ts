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

/** A profile as a text table: kernel, calls, total ms, ms per call, share of the total. */
export function formatProfile(rows: readonly KernelTime[], opts: { per?: number; title?: string } = {}): string {
  const per = opts.per ?? 1;
  const total = rows.reduce((s, r) => s + r.ms, 0);
  const w = Math.max(6, ...rows.map((r) => r.kernel.length));
  const lines = [
    opts.title ?? `Time by kernel${per > 1 ? ` (per step, mean of ${per})` : ""}`,
    `${"kernel".padEnd(w)}  ${"calls".padStart(6)}  ${"ms".padStart(9)}  ${"ms/call".padStart(9)}  share`,
  ];
  for (const r of rows) {
    lines.push(
      `${r.kernel.padEnd(w)}  ${String(Math.round(r.calls / per)).padStart(6)}  ${
        (r.ms / per).toFixed(3).padStart(9)
      }  ` +
        `${(r.ms / r.calls).toFixed(4).padStart(9)}  ${
          (total > 0 ? (100 * r.ms) / total : 0).toFixed(1).padStart(5)
        } %`,
    );
  }
  lines.push(`${"total".padEnd(w)}  ${"".padStart(6)}  ${(total / per).toFixed(3).padStart(9)}`);
  return lines.join("\n");
}
